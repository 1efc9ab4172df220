import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import type { TransitionRequest } from '../../functions/adapters/dynamo/payment-repository';
import type { PaymentMessage, PaymentQueue } from '../../functions/adapters/sqs/payment-queue';
import { CircuitBreaker } from '../../functions/core/circuit-breaker';
import { ConcurrentUpdateError } from '../../functions/core/errors';
import { isOpen, type Payment } from '../../functions/core/payment';
import {
  InjectedCrashError,
  OutcomeUnresolvedError,
  PaymentProcessor,
  type PaymentProcessorDeps,
  type ProcessorConfig,
  type ProcessorLogger,
  type ProcessorRepository,
  type WorkerMessage,
} from '../../functions/core/payment-processor';
import {
  ProviderLookupError,
  type ChargeRequest,
  type ChargeResult,
  type LookupResult,
  type PaymentProvider,
  type RecordedChargeResult,
} from '../../functions/core/provider';
import { assertTransition } from '../../functions/core/state-machine';
import { createWorkerHandler, parseWorkerMessage, PoisonMessageError } from '../../functions/worker/payment-worker';

// ---- In-memory fakes --------------------------------------------------------------------------------

const T0 = Date.parse('2030-01-01T00:00:00.000Z');

class FakeClock {
  t = T0;
  now = (): Date => new Date(this.t);
  advance(ms: number): void {
    this.t += ms;
  }
}

/** Same contract as PaymentRepository.get/transition: conditional on version + status. */
class FakeRepository implements ProcessorRepository {
  readonly items = new Map<string, Payment>();
  readonly history: Array<{ id: string; version: number; status: string; action: string }> = [];
  failNextGet?: Error;
  /** Runs before a transition is applied; may change the stored item to simulate another writer. */
  beforeTransition?: (current: Payment, req: TransitionRequest) => void;

  put(p: Payment): void {
    this.items.set(p.id, structuredClone(p));
  }

  async get(id: string): Promise<Payment | undefined> {
    await Promise.resolve();
    if (this.failNextGet) {
      const e = this.failNextGet;
      this.failNextGet = undefined;
      throw e;
    }
    const p = this.items.get(id);
    return p ? structuredClone(p) : undefined;
  }

  async transition(current: Payment, req: TransitionRequest): Promise<Payment> {
    await Promise.resolve();
    assertTransition(current, req.to, { operator: req.operator });
    this.beforeTransition?.(current, req);
    const stored = this.items.get(current.id);
    if (!stored || stored.version !== current.version || stored.status !== current.status) {
      throw new ConcurrentUpdateError(stored ? structuredClone(stored) : undefined);
    }
    const next: Record<string, unknown> = { ...stored };
    for (const [k, v] of Object.entries(req.set ?? {})) if (v !== undefined) next[k] = structuredClone(v);
    for (const k of req.remove ?? []) delete next[k];
    next.status = req.to;
    next.version = stored.version + 1;
    next.updatedAt = req.now.toISOString();
    next.lastChange = req.change;
    if (isOpen(req.to)) {
      next.openShard = stored.openShard ?? 'open#00';
      next.dueAt = req.dueAt ?? req.now.getTime();
    } else {
      delete next.openShard;
      delete next.dueAt;
      delete next.leaseUntil;
    }
    const p = next as unknown as Payment;
    this.items.set(p.id, p);
    this.history.push({ id: p.id, version: p.version, status: p.status, action: req.change.action });
    return structuredClone(p);
  }
}

type ChargeBehaviour =
  | 'succeed'
  | 'decline'
  | 'error'
  /** Records the charge, then the answer is lost (timeout): outcome unknown. */
  | 'timeout_charged'
  /** Times out without charging. */
  | 'timeout_not_charged'
  /** Never answers (until the test ends). */
  | 'hang'
  | { retryAfterMs: number };

/** A provider with an idempotent ledger keyed by idempotency key, like the real one. */
class FakeProvider implements PaymentProvider {
  readonly ledger = new Map<string, RecordedChargeResult>();
  readonly calls: Array<{ op: 'charge' | 'lookup'; key: string }> = [];
  behaviour: (req: ChargeRequest, n: number) => ChargeBehaviour = () => 'succeed';
  lookupFails = false;
  private n = 0;

  async charge(req: ChargeRequest): Promise<ChargeResult> {
    this.calls.push({ op: 'charge', key: req.idempotencyKey });
    await Promise.resolve();
    const recorded = this.ledger.get(req.idempotencyKey);
    if (recorded) return recorded;
    const b = this.behaviour(req, this.n++);
    if (b === 'hang') return new Promise<ChargeResult>(() => {});
    if (b === 'succeed' || b === 'timeout_charged') {
      const r: RecordedChargeResult = { outcome: 'succeeded', chargeId: `ch_${this.ledger.size + 1}` };
      this.ledger.set(req.idempotencyKey, r);
      return b === 'succeed' ? r : { outcome: 'unknown', code: 'PROVIDER_TIMEOUT', message: 'timed out' };
    }
    if (b === 'decline') {
      const r: RecordedChargeResult = { outcome: 'declined', code: 'CARD_DECLINED', message: 'The card was declined' };
      this.ledger.set(req.idempotencyKey, r);
      return r;
    }
    if (b === 'timeout_not_charged') return { outcome: 'unknown', code: 'PROVIDER_TIMEOUT', message: 'timed out' };
    if (typeof b === 'object') return { outcome: 'retryable_error', code: 'RATE_LIMITED', message: 'slow down', retryAfterMs: b.retryAfterMs };
    return { outcome: 'retryable_error', code: 'PROVIDER_UNAVAILABLE', message: 'provider returned 503' };
  }

  async lookup(key: string): Promise<LookupResult> {
    this.calls.push({ op: 'lookup', key });
    await Promise.resolve();
    if (this.lookupFails) throw new ProviderLookupError('PROVIDER_UNAVAILABLE', 'lookup failed with status 503');
    const r = this.ledger.get(key);
    return r ? { found: true, result: r } : { found: false };
  }

  get succeededCharges(): number {
    return [...this.ledger.values()].filter((r) => r.outcome === 'succeeded').length;
  }
  get chargeCalls(): number {
    return this.calls.filter((c) => c.op === 'charge').length;
  }
}

class FakeQueue implements PaymentQueue {
  readonly sent: Array<{ message: WorkerMessage; delaySeconds: number }> = [];
  failSends = false;
  async send(message: PaymentMessage, delaySeconds = 0): Promise<void> {
    if (this.failSends) throw new Error('SQS unavailable');
    this.sent.push({ message: message as WorkerMessage, delaySeconds });
  }
  take(): WorkerMessage {
    const m = this.sent.shift();
    if (!m) throw new Error('queue is empty');
    return m.message;
  }
}

const silent: ProcessorLogger = { debug() {}, info() {}, warn() {}, error() {} };

function capturingLogger() {
  const lines: Array<{ level: string; message: string; attrs?: Record<string, unknown> }> = [];
  const at = (level: string) => (message: string, attrs?: Record<string, unknown>) => {
    lines.push({ level, message, attrs });
  };
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } satisfies ProcessorLogger };
}

const CONFIG: ProcessorConfig = { retryBaseSeconds: 1, retryCapSeconds: 60, leaseSeconds: 30, providerTimeoutMs: 5000 };

function payment(over: Partial<Payment> = {}): Payment {
  return {
    id: 'pay_1',
    tenantId: 'tenant-1',
    idempotencyKey: 'key-1',
    generation: 0,
    requestHash: 'h',
    amountMinor: 1250,
    currency: 'EUR',
    paymentMethod: { type: 'card', token: 'tok_success' },
    metadata: { orderId: 'o-1' },
    status: 'pending',
    version: 1,
    attempt: 0,
    retryCount: 0,
    maxRetries: 3,
    createdAt: new Date(T0).toISOString(),
    updatedAt: new Date(T0).toISOString(),
    openShard: 'open#03',
    dueAt: T0 + 120_000,
    lastChange: { action: 'created', actor: 'api:tenant-1' },
    ...over,
  };
}

function setup(opts: { payment?: Partial<Payment>; random?: () => number; deps?: Partial<PaymentProcessorDeps>; breaker?: CircuitBreaker } = {}) {
  const clock = new FakeClock();
  const repo = new FakeRepository();
  const provider = new FakeProvider();
  const queue = new FakeQueue();
  const breaker =
    opts.breaker ??
    new CircuitBreaker('test-provider', { consecutiveFailures: 100, failureRateThreshold: 0, now: () => clock.t, onStateChange: () => {} });
  repo.put(payment(opts.payment));
  const processor = new PaymentProcessor({
    repository: repo,
    provider,
    queue,
    breaker,
    config: CONFIG,
    clock: clock.now,
    random: opts.random ?? (() => 0.5),
    logger: silent,
    ...opts.deps,
  });
  const stored = (id = 'pay_1') => repo.items.get(id)!;
  return { clock, repo, provider, queue, breaker, processor, stored };
}

const created: WorkerMessage = { paymentId: 'pay_1', reason: 'created' };

// ---- Tests ------------------------------------------------------------------------------------------

describe('PaymentProcessor: first attempt', () => {
  it('charges a pending payment with key <id>:1 and records success', async () => {
    const { processor, provider, stored, repo } = setup();
    await expect(processor.process(created)).resolves.toEqual({ kind: 'settled', status: 'success', attempt: 1, via: 'charge' });

    expect(provider.calls).toEqual([{ op: 'charge', key: 'pay_1:1' }]);
    const p = stored();
    expect(p).toMatchObject({ status: 'success', attempt: 1, retryCount: 0, providerChargeId: 'ch_1', processedAt: new Date(T0).toISOString() });
    expect(p.lastError).toBeUndefined();
    expect(p.leaseUntil).toBeUndefined();
    expect(p.openShard).toBeUndefined();
    expect(p.dueAt).toBeUndefined();
    expect(repo.history.map((h) => `${h.status}:${h.action}`)).toEqual(['processing:attempt_started', 'success:charge_succeeded']);
  });

  it('claims with attempt+1, a lease of leaseSeconds and dueAt = leaseUntil', async () => {
    const { processor, repo } = setup();
    let claim: TransitionRequest | undefined;
    repo.beforeTransition = (_p, req) => {
      if (req.to === 'processing') claim = req;
    };
    await processor.process(created);
    expect(claim).toMatchObject({
      to: 'processing',
      change: { action: 'attempt_started', actor: 'worker' },
      set: { attempt: 1, leaseUntil: T0 + 30_000 },
      dueAt: T0 + 30_000,
    });
  });

  it('passes amount, currency, token and metadata to the provider', async () => {
    const { processor, provider } = setup();
    let req: ChargeRequest | undefined;
    provider.behaviour = (r) => {
      req = r;
      return 'succeed';
    };
    await processor.process(created);
    expect(req).toEqual({
      idempotencyKey: 'pay_1:1',
      paymentId: 'pay_1',
      amountMinor: 1250,
      currency: 'EUR',
      token: 'tok_success',
      metadata: { orderId: 'o-1' },
    });
  });

  it('a decline fails the payment after one attempt with a non-retryable lastError', async () => {
    const { processor, provider, stored, queue } = setup();
    provider.behaviour = () => 'decline';
    await expect(processor.process(created)).resolves.toMatchObject({ kind: 'settled', status: 'failed' });
    expect(stored()).toMatchObject({
      status: 'failed',
      attempt: 1,
      retryCount: 0,
      lastError: { code: 'CARD_DECLINED', message: 'The card was declined', retryable: false, timestamp: new Date(T0).toISOString() },
      lastChange: { action: 'charge_declined', actor: 'worker' },
    });
    expect(queue.sent).toHaveLength(0);
  });
});

describe('PaymentProcessor: duplicates and stale messages', () => {
  it('a duplicate message after success does not charge again', async () => {
    const { processor, provider } = setup();
    await processor.process(created);
    await expect(processor.process(created)).resolves.toEqual({ kind: 'ignored', reason: 'terminal', status: 'success' });
    await expect(processor.process({ paymentId: 'pay_1', reason: 'retry', forAttempt: 2 })).resolves.toMatchObject({ reason: 'terminal' });
    expect(provider.chargeCalls).toBe(1);
    expect(provider.succeededCharges).toBe(1);
  });

  it('two copies of the message processed at the same time make one charge', async () => {
    const { processor, provider, stored } = setup();
    const results = await Promise.all([processor.process(created), processor.process(created), processor.process(created)]);
    expect(results.filter((r) => r.kind === 'settled')).toHaveLength(1);
    expect(results.filter((r) => r.kind === 'ignored').map((r) => (r.kind === 'ignored' ? r.reason : ''))).toEqual([
      'concurrent_update',
      'concurrent_update',
    ]);
    expect(provider.chargeCalls).toBe(1);
    expect(stored()).toMatchObject({ status: 'success', attempt: 1 });
  });

  it('a message for an unknown payment is dropped', async () => {
    const { processor, provider } = setup();
    await expect(processor.process({ paymentId: 'nope', reason: 'created' })).resolves.toEqual({ kind: 'ignored', reason: 'not_found' });
    expect(provider.calls).toHaveLength(0);
  });

  it('a processing payment with a live lease belongs to another worker: ack, no provider call', async () => {
    const { processor, provider, stored } = setup({ payment: { status: 'processing', attempt: 1, version: 2, leaseUntil: T0 + 1 } });
    await expect(processor.process(created)).resolves.toEqual({ kind: 'ignored', reason: 'leased', status: 'processing' });
    expect(provider.calls).toHaveLength(0);
    expect(stored().version).toBe(2);
  });

  it('a retry message for an attempt that already started is stale', async () => {
    const { processor, provider } = setup({ payment: { status: 'retrying', attempt: 2, retryCount: 1, version: 5 } });
    await expect(processor.process({ paymentId: 'pay_1', reason: 'retry', forAttempt: 2 })).resolves.toMatchObject({ reason: 'stale' });
    expect(provider.calls).toHaveLength(0);
    await expect(processor.process({ paymentId: 'pay_1', reason: 'retry', forAttempt: 3 })).resolves.toMatchObject({ kind: 'settled' });
    expect(provider.calls).toEqual([{ op: 'charge', key: 'pay_1:3' }]);
  });

  it('a message sent by the operator (no forAttempt) runs a retrying payment now', async () => {
    const { processor, provider, stored } = setup({
      payment: { status: 'retrying', attempt: 1, retryCount: 1, version: 3, nextAttemptAt: T0 + 600_000 },
    });
    await processor.process({ paymentId: 'pay_1', reason: 'operator_retry' });
    expect(provider.calls).toEqual([{ op: 'charge', key: 'pay_1:2' }]);
    expect(stored()).toMatchObject({ status: 'success', attempt: 2, retryCount: 1 });
    expect(stored().nextAttemptAt).toBeUndefined();
  });
});

describe('PaymentProcessor: notBefore', () => {
  it('an early message is re-sent with the remaining delay and nothing else happens', async () => {
    const { processor, queue, provider, stored } = setup();
    const msg: WorkerMessage = { paymentId: 'pay_1', reason: 'retry', notBefore: T0 + 12_300, forAttempt: 1 };
    await expect(processor.process(msg)).resolves.toEqual({ kind: 'rescheduled', notBefore: T0 + 12_300, delaySeconds: 13 });
    expect(queue.sent).toEqual([{ message: msg, delaySeconds: 13 }]);
    expect(provider.calls).toHaveLength(0);
    expect(stored().version).toBe(1);
  });

  it('a wait over 900 s is a chain of re-sends of at most 900 s each', async () => {
    const { processor, queue, clock, provider } = setup();
    const notBefore = T0 + 2_000_000;
    let msg: WorkerMessage = { paymentId: 'pay_1', reason: 'retry', notBefore };
    const delays: number[] = [];
    for (let hop = 0; hop < 5; hop++) {
      const r = await processor.process(msg);
      if (r.kind !== 'rescheduled') break;
      const sent = queue.sent.shift()!;
      delays.push(sent.delaySeconds);
      expect(sent.message.notBefore).toBe(notBefore);
      clock.advance(sent.delaySeconds * 1000);
      msg = sent.message;
    }
    expect(delays).toEqual([900, 900, 200]);
    expect(provider.chargeCalls).toBe(1);
  });

  it('a notBefore within the clock-skew tolerance is processed now', async () => {
    const { processor, provider } = setup();
    await processor.process({ paymentId: 'pay_1', reason: 'retry', notBefore: T0 + 200 });
    expect(provider.chargeCalls).toBe(1);
  });

  it('a final payment ends the chain', async () => {
    const { processor, queue } = setup({ payment: { status: 'success', version: 3 } });
    await expect(processor.process({ paymentId: 'pay_1', reason: 'retry', notBefore: T0 + 5_000_000 })).resolves.toMatchObject({
      reason: 'terminal',
    });
    expect(queue.sent).toHaveLength(0);
  });
});

describe('PaymentProcessor: retries and exhaustion', () => {
  it('a retryable error schedules a retry: retrying, retryCount+1, nextAttemptAt, dueAt = nextAttemptAt + grace, delayed message', async () => {
    const { processor, provider, queue, stored, clock } = setup({ random: () => 0.5 });
    provider.behaviour = (_r, n) => (n === 0 ? 'error' : 'succeed');
    await expect(processor.process(created)).resolves.toMatchObject({ kind: 'settled', status: 'retrying', attempt: 1 });

    const p = stored();
    expect(p).toMatchObject({
      status: 'retrying',
      attempt: 1,
      retryCount: 1,
      nextAttemptAt: T0 + 500, // random 0.5 × cap 1000 ms
      dueAt: T0 + 500 + 30_000,
      lastError: {
        code: 'PROVIDER_UNAVAILABLE',
        retryable: true,
        details: { attempt: 1, outcome: 'error', retry: 1, delayMs: 500, backoffCapMs: 1000 },
      },
      lastChange: { action: 'retry_scheduled', actor: 'worker' },
    });
    expect(p.leaseUntil).toBeUndefined();
    expect(queue.sent).toEqual([{ message: { paymentId: 'pay_1', reason: 'retry', notBefore: T0 + 500, forAttempt: 2 }, delaySeconds: 1 }]);

    clock.advance(500);
    await expect(processor.process(queue.take())).resolves.toMatchObject({ status: 'success', attempt: 2 });
    expect(provider.calls.map((c) => c.key)).toEqual(['pay_1:1', 'pay_1:2']);
    expect(stored()).toMatchObject({ status: 'success', attempt: 2, retryCount: 1 });
    expect(stored().lastError).toBeUndefined();
    expect(stored().nextAttemptAt).toBeUndefined();
  });

  it('with maxRetries 3 a card failing forever makes 4 attempts with growing delays, then fails with a retryable lastError', async () => {
    const { processor, provider, queue, clock, stored } = setup({ random: () => 0.999 });
    provider.behaviour = () => 'error';
    await processor.process(created);
    const delays: number[] = [];
    const caps: number[] = [];
    for (let i = 0; i < 10 && stored().status === 'retrying'; i++) {
      const e = stored().lastError!.details!;
      delays.push(e.delayMs as number);
      caps.push(e.backoffCapMs as number);
      const { message, delaySeconds } = queue.sent.shift()!;
      clock.advance(delaySeconds * 1000);
      await processor.process(message);
    }
    expect(provider.calls.map((c) => c.key)).toEqual(['pay_1:1', 'pay_1:2', 'pay_1:3', 'pay_1:4']);
    expect(caps).toEqual([1000, 2000, 4000]);
    expect(delays).toEqual([999, 1998, 3996]);
    expect(stored()).toMatchObject({
      status: 'failed',
      attempt: 4,
      retryCount: 3,
      lastError: { code: 'PROVIDER_UNAVAILABLE', retryable: true, details: { attempt: 4 } },
      lastChange: { action: 'retries_exhausted' },
    });
    expect(queue.sent).toHaveLength(0);
    expect(provider.succeededCharges).toBe(0);
  });

  it('maxRetries 0 fails on the first retryable error', async () => {
    const { processor, provider, stored } = setup({ payment: { maxRetries: 0 } });
    provider.behaviour = () => 'error';
    await processor.process(created);
    expect(stored()).toMatchObject({ status: 'failed', attempt: 1, retryCount: 0, lastError: { retryable: true } });
  });

  it("honours the provider's Retry-After when longer than the jittered delay", async () => {
    const { processor, provider, queue, stored } = setup({ random: () => 0.1 });
    provider.behaviour = () => ({ retryAfterMs: 7000 });
    await processor.process(created);
    expect(stored()).toMatchObject({ nextAttemptAt: T0 + 7000, lastError: { code: 'RATE_LIMITED', details: { delayMs: 7000 } } });
    expect(queue.sent[0]!.delaySeconds).toBe(7);
  });

  it('a failed retry-message send still leaves the payment retrying (the reconciler re-queues it) and logs', async () => {
    const log = capturingLogger();
    const { processor, provider, queue, stored } = setup({ deps: { logger: log.logger } });
    provider.behaviour = () => 'error';
    queue.failSends = true;
    await expect(processor.process(created)).resolves.toMatchObject({ status: 'retrying' });
    expect(stored().status).toBe('retrying');
    expect(log.lines.some((l) => l.level === 'error' && l.message.includes('reconciler'))).toBe(true);
  });
});

describe('PaymentProcessor: unknown outcomes (timeouts)', () => {
  it('a timeout whose charge went through is resolved by an immediate lookup: success, one charge', async () => {
    const { processor, provider, stored } = setup();
    provider.behaviour = () => 'timeout_charged';
    await expect(processor.process(created)).resolves.toMatchObject({ status: 'success', via: 'lookup' });
    expect(provider.calls).toEqual([
      { op: 'charge', key: 'pay_1:1' },
      { op: 'lookup', key: 'pay_1:1' },
    ]);
    expect(stored()).toMatchObject({ status: 'success', providerChargeId: 'ch_1', lastChange: { action: 'charge_succeeded' } });
    expect(stored().lastChange.reason).toContain('found by lookup');
  });

  it('a timeout without a charge is a retryable failure marked unknown; the next attempt looks the old key up first', async () => {
    const { processor, provider, queue, clock, stored } = setup();
    provider.behaviour = (_r, n) => (n === 0 ? 'timeout_not_charged' : 'succeed');
    await processor.process(created);
    expect(stored()).toMatchObject({
      status: 'retrying',
      retryCount: 1,
      lastError: { code: 'PROVIDER_TIMEOUT', retryable: true, details: { attempt: 1, outcome: 'unknown' } },
    });
    clock.advance(1000);
    await processor.process(queue.take());
    expect(provider.calls).toEqual([
      { op: 'charge', key: 'pay_1:1' },
      { op: 'lookup', key: 'pay_1:1' },
      { op: 'lookup', key: 'pay_1:1' }, // before attempt 2 is claimed
      { op: 'charge', key: 'pay_1:2' },
    ]);
    expect(stored()).toMatchObject({ status: 'success', attempt: 2 });
    expect(provider.succeededCharges).toBe(1);
  });

  it('a charge of attempt 1 that landed late is found before attempt 2 charges: success without a second charge', async () => {
    const { processor, provider, queue, clock, stored, repo } = setup();
    provider.behaviour = () => 'timeout_not_charged';
    await processor.process(created);
    // The provider records attempt 1's charge after the immediate lookup said "not found".
    provider.ledger.set('pay_1:1', { outcome: 'succeeded', chargeId: 'ch_late' });
    clock.advance(1000);
    await expect(processor.process(queue.take())).resolves.toMatchObject({ status: 'success', via: 'lookup' });
    expect(provider.calls.filter((c) => c.op === 'charge').map((c) => c.key)).toEqual(['pay_1:1']);
    expect(stored()).toMatchObject({ status: 'success', attempt: 1, providerChargeId: 'ch_late' });
    expect(repo.history.map((h) => h.action)).toEqual(['attempt_started', 'retry_scheduled', 'attempt_recovered', 'charge_succeeded']);
  });

  it('if the provider cannot be asked about the unknown attempt, nothing is charged and the message fails (redelivery)', async () => {
    const { processor, provider, queue, clock, stored } = setup();
    provider.behaviour = () => 'timeout_not_charged';
    await processor.process(created);
    const before = structuredClone(stored());
    provider.lookupFails = true;
    clock.advance(1000);
    await expect(processor.process(queue.take())).rejects.toBeInstanceOf(OutcomeUnresolvedError);
    expect(stored()).toEqual(before);
    expect(provider.chargeCalls).toBe(1);
  });

  it('a provider that never answers is cut off at the charge deadline and treated as unknown', async () => {
    const { processor, provider, stored } = setup({ deps: { config: { ...CONFIG, chargeDeadlineMs: 30 } } });
    provider.behaviour = () => 'hang';
    await expect(processor.process(created)).resolves.toMatchObject({ status: 'retrying' });
    expect(stored().lastError).toMatchObject({ code: 'PROVIDER_TIMEOUT', details: { outcome: 'unknown' } });
    expect(provider.calls.map((c) => c.op)).toEqual(['charge', 'lookup']);
  });

  it('refuses a charge deadline that does not fit twice into the lease', () => {
    expect(() => setup({ deps: { config: { ...CONFIG, leaseSeconds: 10, chargeDeadlineMs: 5000 } } })).toThrow(RangeError);
    expect(() => setup({ deps: { config: { ...CONFIG, leaseSeconds: 10, providerTimeoutMs: 4500 } } })).toThrow(RangeError);
  });
});

describe('PaymentProcessor: lapsed leases and crashes', () => {
  const lapsed = { status: 'processing' as const, attempt: 1, version: 2, leaseUntil: T0 - 1 };

  it('an expired lease whose charge exists is resolved by lookup before anything else: success, no new charge', async () => {
    const { processor, provider, stored } = setup({ payment: lapsed });
    provider.ledger.set('pay_1:1', { outcome: 'succeeded', chargeId: 'ch_x' });
    await expect(processor.process(created)).resolves.toEqual({ kind: 'settled', status: 'success', attempt: 1, via: 'lookup' });
    expect(provider.calls).toEqual([{ op: 'lookup', key: 'pay_1:1' }]);
    expect(stored()).toMatchObject({ status: 'success', providerChargeId: 'ch_x' });
  });

  it('an expired lease whose charge was declined fails the payment', async () => {
    const { processor, provider, stored } = setup({ payment: lapsed });
    provider.ledger.set('pay_1:1', { outcome: 'declined', code: 'INSUFFICIENT_FUNDS', message: 'no funds' });
    await processor.process(created);
    expect(provider.chargeCalls).toBe(0);
    expect(stored()).toMatchObject({ status: 'failed', lastError: { code: 'INSUFFICIENT_FUNDS', retryable: false } });
  });

  it('an expired lease without a charge is a failed attempt (retry scheduled), never a new charge in the same message', async () => {
    const { processor, provider, queue, stored, clock } = setup({ payment: lapsed });
    await expect(processor.process(created)).resolves.toMatchObject({ status: 'retrying', via: 'lookup' });
    expect(provider.calls).toEqual([{ op: 'lookup', key: 'pay_1:1' }]);
    expect(stored()).toMatchObject({
      status: 'retrying',
      attempt: 1,
      retryCount: 1,
      lastError: { code: 'ATTEMPT_ABANDONED', retryable: true, details: { attempt: 1, outcome: 'unknown' } },
    });
    expect(stored().leaseUntil).toBeUndefined();
    clock.advance(1000);
    await processor.process(queue.take());
    expect(provider.calls.map((c) => `${c.op}:${c.key}`)).toEqual(['lookup:pay_1:1', 'lookup:pay_1:1', 'charge:pay_1:2']);
  });

  it('an expired lease on the last allowed attempt without a charge fails the payment (retryable)', async () => {
    const { processor, stored } = setup({ payment: { ...lapsed, attempt: 4, retryCount: 3 } });
    await processor.process(created);
    expect(stored()).toMatchObject({ status: 'failed', lastError: { code: 'ATTEMPT_ABANDONED', retryable: true } });
  });

  it('an expired lease whose lookup fails leaves the payment alone and fails the message', async () => {
    const { processor, provider, stored } = setup({ payment: lapsed });
    provider.lookupFails = true;
    await expect(processor.process(created)).rejects.toBeInstanceOf(OutcomeUnresolvedError);
    expect(stored().version).toBe(2);
    expect(provider.chargeCalls).toBe(0);
  });

  it('crash right after a successful charge, then redelivery: exactly one charge and success', async () => {
    let crashes = 0;
    const { processor, provider, stored, clock } = setup({
      deps: { faults: { crashAfterCharge: () => crashes++ === 0 } },
    });
    await expect(processor.process(created)).rejects.toBeInstanceOf(InjectedCrashError);
    expect(stored()).toMatchObject({ status: 'processing', attempt: 1, leaseUntil: T0 + 30_000, dueAt: T0 + 30_000 });
    expect(provider.succeededCharges).toBe(1);

    // Redelivered while the dead worker's lease still holds: nothing happens.
    clock.advance(10_000);
    await expect(processor.process(created)).resolves.toMatchObject({ kind: 'ignored', reason: 'leased' });
    // Redelivered after the lease ran out (SQS visibility timeout > lease): lookup, success.
    clock.advance(20_000);
    await expect(processor.process(created)).resolves.toMatchObject({ status: 'success', via: 'lookup' });

    expect(provider.chargeCalls).toBe(1);
    expect(provider.succeededCharges).toBe(1);
    expect(provider.calls.map((c) => c.op)).toEqual(['charge', 'lookup']);
    expect(stored()).toMatchObject({ status: 'success', attempt: 1, providerChargeId: 'ch_1' });
  });

  it('the crash hook also takes a plain boolean', async () => {
    const { processor } = setup({ deps: { faults: { crashAfterCharge: true } } });
    await expect(processor.process(created)).rejects.toThrow(/injected crash/);
  });

  it('a concurrent recovery of the same lapsed lease settles once', async () => {
    const { processor, provider, repo } = setup({ payment: lapsed });
    provider.ledger.set('pay_1:1', { outcome: 'succeeded', chargeId: 'ch_x' });
    const rs = await Promise.all([processor.process(created), processor.process(created)]);
    expect(rs.map((r) => r.kind).sort()).toEqual(['ignored', 'settled']);
    expect(repo.history).toHaveLength(1);
    expect(provider.chargeCalls).toBe(0);
  });

  it('if another writer moves the payment between charge and settle, the result is dropped, not overwritten', async () => {
    const { processor, repo, stored } = setup();
    repo.beforeTransition = (_p, req) => {
      if (req.to === 'success') {
        const s = repo.items.get('pay_1')!;
        repo.items.set('pay_1', { ...s, version: s.version + 1, lastChange: { action: 'someone_else', actor: 'x' } });
      }
    };
    await expect(processor.process(created)).resolves.toEqual({ kind: 'ignored', reason: 'concurrent_update' });
    expect(stored().lastChange.action).toBe('someone_else');
  });

  it('a repository failure propagates (the worker reports the message as failed)', async () => {
    const { processor, repo } = setup();
    repo.failNextGet = new Error('DynamoDB unavailable');
    await expect(processor.process(created)).rejects.toThrow('DynamoDB unavailable');
  });
});

describe('PaymentProcessor: circuit breaker', () => {
  function withBreaker() {
    let t = T0;
    const breaker = new CircuitBreaker('p', { consecutiveFailures: 2, failureRateThreshold: 0, openMs: 10_000, now: () => t, onStateChange: () => {} });
    const s = setup({ breaker });
    s.clock.t = T0;
    const sync = () => {
      t = s.clock.t;
    };
    return { ...s, sync };
  }

  it('opens after provider failures; an attempt while open is deferred: re-sent later, payment untouched, no retry consumed', async () => {
    const { processor, provider, queue, repo, breaker, clock, sync } = withBreaker();
    repo.put(payment({ id: 'pay_2' }));
    repo.put(payment({ id: 'pay_3' }));
    provider.behaviour = () => 'error';
    await processor.process({ paymentId: 'pay_1', reason: 'created' });
    await processor.process({ paymentId: 'pay_2', reason: 'created' });
    expect(breaker.state).toBe('open');
    queue.sent.length = 0;

    const before = structuredClone(repo.items.get('pay_3')!);
    const r = await processor.process({ paymentId: 'pay_3', reason: 'created' });
    expect(r).toEqual({ kind: 'deferred', notBefore: T0 + 10_000 + 500, delaySeconds: 11 });
    expect(repo.items.get('pay_3')).toEqual(before);
    expect(provider.calls.filter((c) => c.key.startsWith('pay_3'))).toHaveLength(0);
    expect(queue.sent).toEqual([{ message: { paymentId: 'pay_3', reason: 'deferred', notBefore: T0 + 10_500 }, delaySeconds: 11 }]);

    // After the open period the deferred message is the half-open probe; success closes the breaker.
    provider.behaviour = () => 'succeed';
    clock.advance(11_000);
    sync();
    await expect(processor.process(queue.take())).resolves.toMatchObject({ status: 'success', attempt: 1 });
    expect(repo.items.get('pay_3')).toMatchObject({ retryCount: 0, attempt: 1 });
    expect(breaker.state).toBe('closed');
  });

  it('a deferred retry keeps its forAttempt and the retry budget', async () => {
    const { processor, provider, queue, repo, breaker, clock, sync } = withBreaker();
    provider.behaviour = () => 'error';
    repo.put(payment({ id: 'pay_2' }));
    await processor.process({ paymentId: 'pay_1', reason: 'created' }); // retrying, retryCount 1
    const retryMsg = queue.take();
    await processor.process({ paymentId: 'pay_2', reason: 'created' }); // opens
    expect(breaker.state).toBe('open');
    clock.advance(1000);
    sync();
    const r = await processor.process(retryMsg);
    expect(r.kind).toBe('deferred');
    const deferred = queue.sent.find((s) => s.message.paymentId === 'pay_1' && s.message.reason === 'deferred')!;
    expect(deferred.message.forAttempt).toBe(2);
    expect(repo.items.get('pay_1')).toMatchObject({ status: 'retrying', retryCount: 1, attempt: 1 });
  });

  it('lapsed-lease recovery is deferred too while the breaker is open (no lookup, no change)', async () => {
    let t: number = T0;
    const breaker = new CircuitBreaker('p', { consecutiveFailures: 1, failureRateThreshold: 0, openMs: 5000, now: () => t, onStateChange: () => {} });
    const { processor, provider, stored } = setup({ breaker, payment: { status: 'processing', attempt: 1, version: 2, leaseUntil: T0 - 1 } });
    const p = breaker.acquire();
    if (p.allowed) p.failure();
    expect(breaker.state).toBe('open');
    await expect(processor.process(created)).resolves.toMatchObject({ kind: 'deferred' });
    expect(provider.calls).toHaveLength(0);
    expect(stored().version).toBe(2);
    t += 5000;
    await expect(processor.process(created)).resolves.toMatchObject({ kind: 'settled', via: 'lookup' });
  });

  it('a declined charge counts as a healthy provider', async () => {
    const { processor, provider, repo, breaker } = withBreaker();
    provider.behaviour = () => 'decline';
    for (const id of ['pay_2', 'pay_3', 'pay_4']) repo.put(payment({ id }));
    for (const id of ['pay_1', 'pay_2', 'pay_3', 'pay_4']) await processor.process({ paymentId: id, reason: 'created' });
    expect(breaker.state).toBe('closed');
  });
});

// ---- Worker handler -----------------------------------------------------------------------------------

function sqsEvent(bodies: string[]): SQSEvent {
  return {
    Records: bodies.map(
      (body, i) =>
        ({
          messageId: `m-${i}`,
          receiptHandle: `rh-${i}`,
          body,
          attributes: { ApproximateReceiveCount: '1' },
          messageAttributes: {},
          md5OfBody: '',
          eventSource: 'aws:sqs',
          eventSourceARN: 'arn:aws:sqs:us-east-1:000000000000:q',
          awsRegion: 'us-east-1',
        }) as unknown as SQSRecord,
    ),
  };
}

describe('worker handler', () => {
  it('parses messages and rejects poison bodies', () => {
    expect(parseWorkerMessage('{"paymentId":"p","reason":"retry","notBefore":5,"forAttempt":2}')).toEqual({
      paymentId: 'p',
      reason: 'retry',
      notBefore: 5,
      forAttempt: 2,
    });
    expect(parseWorkerMessage('{"paymentId":"p"}')).toEqual({ paymentId: 'p', reason: 'unknown' });
    for (const bad of ['not json', '[]', 'null', '{}', '{"paymentId":""}', '{"paymentId":3}', '{"paymentId":"p","notBefore":"x"}', '{"paymentId":"p","forAttempt":0}']) {
      expect(() => parseWorkerMessage(bad), bad).toThrow(PoisonMessageError);
    }
  });

  it('reports poison messages and thrown errors as batch item failures, the rest as done', async () => {
    const { processor, repo } = setup();
    repo.put(payment({ id: 'pay_2' }));
    const log = capturingLogger();
    const handler = createWorkerHandler({
      processor: {
        process: async (m) => {
          if (m.paymentId === 'boom') throw new Error('DynamoDB unavailable');
          return processor.process(m);
        },
      },
      logger: log.logger,
    });
    const res = await handler(
      sqsEvent([
        JSON.stringify({ paymentId: 'pay_1', reason: 'created' }),
        'not json',
        JSON.stringify({ paymentId: 'boom', reason: 'created' }),
        JSON.stringify({ reason: 'created' }),
        JSON.stringify({ paymentId: 'pay_2', reason: 'created' }),
      ]),
    );
    expect(res.batchItemFailures.map((f) => f.itemIdentifier).sort()).toEqual(['m-1', 'm-2', 'm-3']);
    expect(repo.items.get('pay_1')!.status).toBe('success');
    expect(repo.items.get('pay_2')!.status).toBe('success');
    expect(log.lines.filter((l) => l.level === 'error' && l.message.startsWith('poison'))).toHaveLength(2);
  });

  it('a batch where every record fails is reported, not thrown', async () => {
    const handler = createWorkerHandler({ processor: { process: async () => Promise.reject(new Error('down')) }, logger: silent });
    const res = await handler(sqsEvent(['x', JSON.stringify({ paymentId: 'p' })]));
    expect(res.batchItemFailures).toHaveLength(2);
  });
});
