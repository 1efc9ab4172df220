import { describe, expect, it } from 'vitest';
import {
  CircuitBreaker,
  CircuitBreakerRegistry,
  CircuitOpenError,
  type BreakerCaller,
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
    minFailingPayments: 3,
    failureRateThreshold: 0.5,
    windowMs: 10_000,
    openMs: 10_000,
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

const permit = (b: CircuitBreaker, caller?: BreakerCaller): BreakerPermit => {
  const p = b.acquire(caller);
  if (!p.allowed) throw new Error('expected a permit');
  return p;
};
let seq = 0;
/** n results, each for a new payment of `tenantId` (or for `paymentId` every time when given). */
const fail = (b: CircuitBreaker, n = 1, tenantId = 't1', paymentId?: string) => {
  for (let i = 0; i < n; i++) permit(b, { paymentId: paymentId ?? `pay_f${++seq}`, tenantId }).failure();
};
const succeed = (b: CircuitBreaker, n = 1, tenantId = 't1') => {
  for (let i = 0; i < n; i++) permit(b, { paymentId: `pay_s${++seq}`, tenantId }).success();
};

describe('circuit breaker: what counts as provider-wide failure', () => {
  it('opens once K distinct payments failed and the failure rate over the window reaches the threshold', () => {
    const { breaker, changes, now } = setup();
    succeed(breaker, 2);
    fail(breaker, 2);
    expect(breaker.state).toBe('closed'); // 2 failing payments < K = 3
    fail(breaker);
    expect(breaker.state).toBe('open'); // 3 of 5 payments failed
    expect(changes).toEqual([
      expect.objectContaining({ name: 'provider-a', from: 'closed', to: 'open', reason: '3 of 5 payments failed within 10000 ms', failingPayments: 3, failingTenants: 1 }),
    ]);
    expect(breaker.acquire()).toEqual({ allowed: false, state: 'open', retryAt: now() + 10_000 });
  });

  it('one card failing again and again is one failing payment, however many times it fails', () => {
    const { breaker } = setup();
    fail(breaker, 50, 't1', 'pay_bad_card');
    expect(breaker.state).toBe('closed');
    expect(breaker.snapshot()).toMatchObject({ windowPayments: 1, failingPayments: 1 });
  });

  it('stays closed while the failure rate is below the threshold, however many payments fail (a 25% fault rate)', () => {
    const { breaker } = setup({ minFailingPayments: 3 });
    for (let i = 0; i < 40; i++) {
      succeed(breaker, 3);
      fail(breaker);
    }
    expect(breaker.state).toBe('closed');
    expect(breaker.snapshot()).toMatchObject({ windowPayments: 160, failingPayments: 40 });
  });

  it('counts only the window: failures older than windowMs are forgotten', () => {
    const { breaker, advance } = setup();
    fail(breaker, 2);
    advance(10_000);
    fail(breaker);
    expect(breaker.state).toBe('closed');
    expect(breaker.snapshot()).toMatchObject({ windowPayments: 1, failingPayments: 1 });
  });

  it("a payment's latest result is the one that counts: a retry that succeeds takes its failure back", () => {
    const { breaker } = setup();
    fail(breaker, 1, 't1', 'pay_a');
    fail(breaker, 1, 't1', 'pay_b');
    permit(breaker, { paymentId: 'pay_a', tenantId: 't1' }).success();
    fail(breaker, 1, 't1', 'pay_c');
    expect(breaker.state).toBe('closed'); // failing: b, c
    fail(breaker, 1, 't1', 'pay_d');
    expect(breaker.state).toBe('open'); // b, c, d of a, b, c, d
  });

  it("tenant fairness: one tenant's always-failing cards do not open the breaker while another tenant's payments succeed", () => {
    const { breaker } = setup({ minTenantPayments: 5 });
    succeed(breaker, 5, 'tenant-1');
    fail(breaker, 100, 'tenant-2');
    expect(breaker.state).toBe('closed');
    expect(breaker.snapshot()).toMatchObject({ failingPayments: 100, failingTenants: 1 });
    // Both tenants failing is the provider failing.
    fail(breaker, 5, 'tenant-1');
    expect(breaker.state).toBe('open');
  });

  it('a tenant with too few payments in the window does not keep the breaker closed', () => {
    const { breaker } = setup({ minTenantPayments: 5 });
    succeed(breaker, 4, 'tenant-1');
    fail(breaker, 4, 'tenant-2');
    expect(breaker.state).toBe('open'); // 4 of 8 failed and tenant-1's 4 successes are too few to vouch for the provider
  });

  it('a failure rate threshold of 0 never opens', () => {
    const { breaker } = setup({ failureRateThreshold: 0 });
    fail(breaker, 100);
    expect(breaker.state).toBe('closed');
  });

  it('calls without a caller count as a payment each', () => {
    const { breaker } = setup();
    for (let i = 0; i < 3; i++) permit(breaker).failure();
    expect(breaker.state).toBe('open');
  });
});

describe('circuit breaker: open and half-open', () => {
  const openBreaker = (opts: CircuitBreakerOptions = {}) => {
    const s = setup({ openMs: 1000, ...opts });
    fail(s.breaker, 3);
    expect(s.breaker.state).toBe('open');
    s.advance(1000);
    return s;
  };

  it('refuses calls until the open time is over, then admits probes', () => {
    const { breaker, advance, now } = setup({ openMs: 10_000 });
    fail(breaker, 3);
    const opened = now();
    advance(9_999);
    expect(breaker.acquire()).toEqual({ allowed: false, state: 'open', retryAt: opened + 10_000 });
    advance(1);
    expect(breaker.state).toBe('half_open');
    expect(permit(breaker, { paymentId: 'pay_x', tenantId: 't1' }).probe).toBe(true);
  });

  it('probes are ordinary payments with a bounded number in flight; callers beyond that come back after halfOpenRetryMs', () => {
    const { breaker, now } = openBreaker({ halfOpenProbes: 3, halfOpenRetryMs: 2000 });
    const probes = [1, 2, 3].map((i) => permit(breaker, { paymentId: `pay_p${i}` }));
    expect(probes.every((p) => p.probe)).toBe(true);
    expect(breaker.acquire({ paymentId: 'pay_p4' })).toEqual({ allowed: false, state: 'half_open', retryAt: now() + 2000 });
    probes[0]!.release();
    expect(permit(breaker, { paymentId: 'pay_p4' }).probe).toBe(true);
  });

  it('successesToClose successful probes close the breaker', () => {
    const { breaker, changes } = openBreaker({ successesToClose: 2 });
    const a = permit(breaker);
    const b = permit(breaker);
    a.success();
    expect(breaker.state).toBe('half_open');
    b.success();
    expect(breaker.state).toBe('closed');
    expect(changes.at(-1)).toMatchObject({ from: 'half_open', to: 'closed', reason: '2 probe(s) succeeded' });
    // Closed starts from an empty window: the failures that opened it are gone.
    expect(breaker.snapshot()).toMatchObject({ windowPayments: 0, failingPayments: 0 });
  });

  it('failed probes of two payments open it again for another open period; one bad card drawn as a probe does not', () => {
    const { breaker, changes, now } = openBreaker();
    permit(breaker, { paymentId: 'pay_bad_card' }).failure();
    expect(breaker.state).toBe('half_open');
    permit(breaker, { paymentId: 'pay_bad_card' }).failure();
    expect(breaker.state).toBe('half_open');
    permit(breaker, { paymentId: 'pay_other' }).failure();
    expect(breaker.state).toBe('open');
    const d = breaker.acquire();
    expect(d).toEqual({ allowed: false, state: 'open', retryAt: now() + 1000 });
    expect(changes.map((c) => `${c.from}->${c.to}`)).toEqual(['closed->open', 'open->half_open', 'half_open->open']);
    expect(changes[2]!.reason).toBe('2 half-open probe(s) failed');
  });

  it('a probe that never reports frees its slot after probeTimeoutMs', () => {
    const { breaker, advance } = openBreaker({ halfOpenProbes: 1, probeTimeoutMs: 2000, successesToClose: 1 });
    permit(breaker); // crashed caller, never reports
    expect(breaker.acquire().allowed).toBe(false);
    advance(2000);
    const p = permit(breaker);
    expect(p.probe).toBe(true);
    p.success();
    expect(breaker.state).toBe('closed');
  });

  it('ignores late results of calls admitted before the last state change; reporting twice counts once', () => {
    const { breaker } = setup();
    const slow = permit(breaker, { paymentId: 'pay_slow' });
    fail(breaker, 3);
    expect(breaker.state).toBe('open');
    slow.success();
    expect(breaker.state).toBe('open');

    const s2 = setup();
    const p = permit(s2.breaker);
    p.failure();
    p.failure();
    fail(s2.breaker, 1);
    expect(s2.breaker.snapshot().failingPayments).toBe(2);
  });
});

describe('circuit breaker: quiet accounting', () => {
  it('refusals are counted and reported once, with the state change that ends them', () => {
    const { breaker, changes, advance } = setup({ openMs: 1000 });
    fail(breaker, 3);
    for (let i = 0; i < 250; i++) expect(breaker.acquire().allowed).toBe(false);
    expect(breaker.snapshot().refused).toBe(250);
    advance(1000);
    expect(breaker.state).toBe('half_open');
    expect(changes.map((c) => [c.to, c.refused, c.transitions])).toEqual([
      ['open', 0, 1],
      ['half_open', 250, 2],
    ]);
    expect(breaker.snapshot().refused).toBe(0);
  });
});

describe('circuit breaker: call helper, registry, validation', () => {
  it('call() records thrown errors and classified results, and throws CircuitOpenError when open', async () => {
    const { breaker } = setup({ minFailingPayments: 2 });
    await expect(breaker.call(async () => 'ok')).resolves.toBe('ok');
    await expect(breaker.call(async () => 'bad', (r) => r === 'bad')).resolves.toBe('bad');
    await expect(breaker.call(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(breaker.call(async () => 'never')).rejects.toBeInstanceOf(CircuitOpenError);
  });

  it('registry keeps one breaker per key and exposes snapshots for metrics', () => {
    const reg = new CircuitBreakerRegistry({ minFailingPayments: 1, onStateChange: () => {} });
    expect(reg.get('a')).toBe(reg.get('a'));
    fail(reg.get('b'));
    expect(reg.snapshots().map((s) => [s.name, s.state])).toEqual([
      ['a', 'closed'],
      ['b', 'open'],
    ]);
    expect(reg.snapshots()[1]).toMatchObject({ transitions: 1 });
  });

  it('a throwing state listener does not break the breaker', () => {
    const b = new CircuitBreaker('x', {
      minFailingPayments: 1,
      onStateChange: () => {
        throw new Error('listener');
      },
    });
    fail(b);
    expect(b.state).toBe('open');
  });

  it('rejects invalid options', () => {
    expect(() => new CircuitBreaker('x', { minFailingPayments: 0 })).toThrow(RangeError);
    expect(() => new CircuitBreaker('x', { failureRateThreshold: 2 })).toThrow(RangeError);
    expect(() => new CircuitBreaker('x', { windowMs: 0 })).toThrow(RangeError);
    expect(() => new CircuitBreaker('x', { openMs: 0 })).toThrow(RangeError);
    expect(() => new CircuitBreaker('x', { halfOpenProbes: 0 })).toThrow(RangeError);
  });
});
