import { describe, expect, it } from 'vitest';
import {
  CircuitBreaker,
  CircuitBreakerRegistry,
  CircuitOpenError,
  type BreakerPermit,
  type BreakerStateChange,
  type CircuitBreakerOptions,
} from '../../functions/core/circuit-breaker';

function setup(opts: CircuitBreakerOptions = {}) {
  let t = 1_000_000;
  const changes: BreakerStateChange[] = [];
  const breaker = new CircuitBreaker('provider-a', {
    now: () => t,
    onStateChange: (c) => changes.push(c),
    ...opts,
  });
  return {
    breaker,
    changes,
    advance: (ms: number) => {
      t += ms;
    },
    now: () => t,
  };
}

const permit = (b: CircuitBreaker): BreakerPermit => {
  const p = b.acquire();
  if (!p.allowed) throw new Error('expected a permit');
  return p;
};
const fail = (b: CircuitBreaker, n = 1) => {
  for (let i = 0; i < n; i++) permit(b).failure();
};
const succeed = (b: CircuitBreaker, n = 1) => {
  for (let i = 0; i < n; i++) permit(b).success();
};

describe('circuit breaker: consecutive failures', () => {
  it('opens after N consecutive failures and refuses calls until the open time is over', () => {
    const { breaker, changes, advance, now } = setup({ consecutiveFailures: 3, failureRateThreshold: 0, openMs: 10_000 });
    fail(breaker, 2);
    expect(breaker.state).toBe('closed');
    fail(breaker);
    expect(breaker.state).toBe('open');
    expect(changes).toEqual([expect.objectContaining({ name: 'provider-a', from: 'closed', to: 'open', reason: '3 consecutive failures' })]);

    const denied = breaker.acquire();
    expect(denied).toEqual({ allowed: false, state: 'open', retryAt: now() + 10_000 });
    advance(9_999);
    expect(breaker.acquire().allowed).toBe(false);
    advance(1);
    expect(breaker.state).toBe('half_open');
  });

  it('a success resets the consecutive count', () => {
    const { breaker } = setup({ consecutiveFailures: 3, failureRateThreshold: 0 });
    fail(breaker, 2);
    succeed(breaker);
    fail(breaker, 2);
    expect(breaker.state).toBe('closed');
    expect(breaker.snapshot().consecutiveFailures).toBe(2);
  });
});

describe('circuit breaker: failure rate', () => {
  it('opens when the failure share of the window reaches the threshold, once minimumCalls are seen', () => {
    const { breaker } = setup({ consecutiveFailures: 0, failureRateThreshold: 0.5, windowSize: 10, minimumCalls: 6 });
    // F S F S F : 3/5 failures but below minimumCalls
    for (const f of [true, false, true, false, true]) (f ? fail : succeed)(breaker);
    expect(breaker.state).toBe('closed');
    succeed(breaker); // 3/6 = 0.5 but the rule is checked on failures only
    expect(breaker.state).toBe('closed');
    fail(breaker); // 4/7
    expect(breaker.state).toBe('open');
  });

  it('only the last windowSize results count', () => {
    const { breaker } = setup({ consecutiveFailures: 0, failureRateThreshold: 0.5, windowSize: 4, minimumCalls: 4 });
    fail(breaker);
    succeed(breaker, 3); // window: F S S S
    succeed(breaker); // window: S S S S
    fail(breaker); // window: S S S F → 0.25
    expect(breaker.state).toBe('closed');
    expect(breaker.snapshot()).toMatchObject({ windowCalls: 4, windowFailures: 1 });
  });

  it('a 10% error rate never trips the default rules on a long run of spread failures', () => {
    const { breaker } = setup();
    for (let i = 0; i < 1000; i++) (i % 10 === 0 ? fail : succeed)(breaker);
    expect(breaker.state).toBe('closed');
  });
});

describe('circuit breaker: half-open probes', () => {
  const openBreaker = (opts: CircuitBreakerOptions = {}) => {
    const s = setup({ consecutiveFailures: 1, failureRateThreshold: 0, openMs: 1000, ...opts });
    fail(s.breaker);
    s.advance(1000);
    return s;
  };

  it('admits one probe; others are refused while it is in flight', () => {
    const { breaker, now } = openBreaker({ probeTimeoutMs: 5000 });
    const probe = permit(breaker);
    expect(probe.probe).toBe(true);
    const other = breaker.acquire();
    expect(other).toEqual({ allowed: false, state: 'half_open', retryAt: now() + 5000 });
    probe.success();
    expect(breaker.state).toBe('closed');
    expect(permit(breaker).probe).toBe(false);
  });

  it('a failed probe opens again for another open period', () => {
    const { breaker, changes, now } = openBreaker();
    permit(breaker).failure();
    expect(breaker.state).toBe('open');
    const d = breaker.acquire();
    expect(d.allowed).toBe(false);
    if (!d.allowed) expect(d.retryAt).toBe(now() + 1000);
    expect(changes.map((c) => `${c.from}->${c.to}`)).toEqual(['closed->open', 'open->half_open', 'half_open->open']);
    expect(changes[2]!.reason).toBe('half-open probe failed');
  });

  it('needs successesToClose probes to close', () => {
    const { breaker } = openBreaker({ successesToClose: 2, halfOpenProbes: 2 });
    const a = permit(breaker);
    const b = permit(breaker);
    expect(breaker.acquire().allowed).toBe(false);
    a.success();
    expect(breaker.state).toBe('half_open');
    b.success();
    expect(breaker.state).toBe('closed');
  });

  it('a released probe frees its slot without deciding anything', () => {
    const { breaker } = openBreaker();
    permit(breaker).release();
    expect(breaker.state).toBe('half_open');
    permit(breaker).success();
    expect(breaker.state).toBe('closed');
  });

  it('a probe that never reports frees its slot after probeTimeoutMs', () => {
    const { breaker, advance } = openBreaker({ probeTimeoutMs: 2000 });
    permit(breaker); // crashed caller, never reports
    expect(breaker.acquire().allowed).toBe(false);
    advance(2000);
    const p = permit(breaker);
    expect(p.probe).toBe(true);
    p.success();
    expect(breaker.state).toBe('closed');
  });

  it('ignores late results of calls admitted before the last state change', () => {
    const { breaker } = setup({ consecutiveFailures: 2, failureRateThreshold: 0, openMs: 1000 });
    const slow = permit(breaker);
    fail(breaker, 2);
    expect(breaker.state).toBe('open');
    slow.success(); // admitted while closed; must not close the open breaker
    expect(breaker.state).toBe('open');
  });

  it('reporting twice counts once', () => {
    const { breaker } = setup({ consecutiveFailures: 2, failureRateThreshold: 0 });
    const p = permit(breaker);
    p.failure();
    p.failure();
    expect(breaker.state).toBe('closed');
  });
});

describe('circuit breaker: call helper, registry, validation', () => {
  it('call() records thrown errors and classified results, and throws CircuitOpenError when open', async () => {
    const { breaker } = setup({ consecutiveFailures: 2, failureRateThreshold: 0 });
    await expect(breaker.call(async () => 'ok')).resolves.toBe('ok');
    await expect(breaker.call(async () => 'bad', (r) => r === 'bad')).resolves.toBe('bad');
    await expect(breaker.call(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(breaker.call(async () => 'never')).rejects.toBeInstanceOf(CircuitOpenError);
  });

  it('registry keeps one breaker per key and exposes snapshots for metrics', () => {
    const reg = new CircuitBreakerRegistry({ consecutiveFailures: 1, failureRateThreshold: 0, onStateChange: () => {} });
    expect(reg.get('a')).toBe(reg.get('a'));
    fail(reg.get('b'));
    expect(reg.snapshots().map((s) => [s.name, s.state])).toEqual([
      ['a', 'closed'],
      ['b', 'open'],
    ]);
    expect(reg.snapshots()[1]).toMatchObject({ transitions: 1, consecutiveFailures: 1 });
  });

  it('a throwing state listener does not break the breaker', () => {
    const b = new CircuitBreaker('x', {
      consecutiveFailures: 1,
      failureRateThreshold: 0,
      onStateChange: () => {
        throw new Error('listener');
      },
    });
    fail(b);
    expect(b.state).toBe('open');
  });

  it('rejects invalid options', () => {
    expect(() => new CircuitBreaker('x', { consecutiveFailures: 0, failureRateThreshold: 0 })).toThrow(RangeError);
    expect(() => new CircuitBreaker('x', { failureRateThreshold: 2 })).toThrow(RangeError);
    expect(() => new CircuitBreaker('x', { windowSize: 0 })).toThrow(RangeError);
    expect(() => new CircuitBreaker('x', { openMs: 0 })).toThrow(RangeError);
  });
});
