import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { InjectedCrashError, withCrashAfterCharge } from '../../functions/adapters/provider/fault-injection';
import { withRateBudget } from '../../functions/adapters/provider/rate-limited-provider';
import { BudgetExhaustedError } from '../../functions/core/ports/rate-budget';
import { CircuitBreaker } from '../../functions/core/circuit-breaker';
import type { Payment } from '../../functions/core/payment';
import type { Logger, TransitionRequest } from '../../functions/core/ports';
import { ProviderError } from '../../functions/core/ports/payment-provider';
import {
  OutcomeUnresolvedError,
  type PaymentProcessorDeps,
  type ProcessorConfig,
  type WorkerMessage,
} from '../../functions/core/processing/context';
import { PaymentProcessor } from '../../functions/core/processing/payment-processor';
import { createWorkerHandler, parseWorkerMessage, PoisonMessageError } from '../../functions/worker/payment-worker';
import { FakeIntentProvider } from '../helpers/fake-intent-provider';
import { FakeClock, FakeQueue, FakeRepository, paymentFixture, T0 } from '../helpers/fakes';

// ---- Fakes and fixtures ---------------------------------------------------------------------------

const silent: Logger = { debug() {}, info() {}, warn() {}, error() {} };

function capturingLogger() {
  const lines: Array<{ level: string; message: string; attrs?: Record<string, unknown> }> = [];
  const at = (level: string) => (message: string, attrs?: Record<string, unknown>) => {
    lines.push({ level, message, attrs });
  };
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } satisfies Logger };
}

const CONFIG: ProcessorConfig = { retryBaseSeconds: 1, retryCapSeconds: 60, leaseSeconds: 30, providerTimeoutMs: 5000, outageDelayMs: 60_000 };

const payment = paymentFixture;

function setup(opts: { payment?: Partial<Payment>; random?: () => number; deps?: Partial<PaymentProcessorDeps>; breaker?: CircuitBreaker } = {}) {
  const clock = new FakeClock();
  const repo = new FakeRepository();
  const provider = new FakeIntentProvider(() => clock.t);
  const queue = new FakeQueue();
  const breaker =
    opts.breaker ?? new CircuitBreaker('test-provider', { failureRateThreshold: 0, now: () => clock.t });
  repo.put(payment(opts.payment));
  const processor = new PaymentProcessor({
    store: repo,
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
  /** Processes every queued message once its time has come, until the queue is empty or `max` steps. */
  const drain = async (max = 50) => {
    for (let i = 0; i < max && queue.sent.length > 0; i++) {
      const { message } = queue.sent.shift()!;
      if (message.notBefore !== undefined && message.notBefore > clock.t) clock.t = message.notBefore;
      await processor.process(message);
    }
  };
  return { clock, repo, provider, queue, breaker, processor, stored, drain };
}

const created: WorkerMessage = { paymentId: 'pay_1', reason: 'created' };

/** A retrying payment whose attempt 1 had no clear outcome, with its intent recorded. */
async function afterUnknownAttempt(s: ReturnType<typeof setup>, behaviour: 'late' | 'timeout_not_committed' | 'commit_then_error') {
  let n = 0;
  s.provider.confirmBehaviour = () => (n++ === 0 ? behaviour : 'succeed');
  await expect(s.processor.process(created)).resolves.toMatchObject({ kind: 'settled', status: 'retrying', attempt: 1 });
  expect(s.stored().lastError).toMatchObject({ retryable: true, details: { attempt: 1, outcome: 'unknown' } });
  expect(s.stored().intentId).toBe('pi_1');
}

// ---- Tests ------------------------------------------------------------------------------------------

describe('PaymentProcessor: first attempt', () => {
  it("creates the payment's one intent with a key from the payment id, confirms it as attempt 1 and records success", async () => {
    const { processor, provider, stored, repo } = setup();
    await expect(processor.process(created)).resolves.toEqual({ kind: 'settled', status: 'success', attempt: 1, via: 'confirm' });

    expect(provider.calls).toEqual([
      { op: 'create', key: 'intent-pay_1' },
      { op: 'confirm', id: 'pi_1', key: 'confirm-pay_1-1' },
    ]);
    const p = stored();
    expect(p).toMatchObject({ status: 'success', attempt: 1, retryCount: 0, intentId: 'pi_1', providerChargeId: 'ch_pi_1', processedAt: new Date(T0).toISOString() });
    expect(p.lastError).toBeUndefined();
    expect(p.leaseUntil).toBeUndefined();
    expect(p.openShard).toBeUndefined();
    expect(repo.history.map((h) => `${h.status}:${h.action}`)).toEqual(['processing:attempt_started', 'success:charge_succeeded']);
    expect(provider.netCaptured('pay_1')).toBe(1250);
  });

  it('claims with attempt+1, a lease of leaseSeconds and, without stuckAfterSeconds, dueAt = leaseUntil', async () => {
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

  describe('the claim keeps the due time when it falls in [lease end, lease end + stuckAfter] (claimDueAt)', () => {
    const STUCK_AFTER_MS = 240_000;
    /** Processes `message` with stuckAfterSeconds set; returns the due time the claim wrote and the payment after it. */
    async function claimOf(payment: Partial<Payment>, message: WorkerMessage, at: number) {
      const s = setup({ payment, deps: { config: { ...CONFIG, stuckAfterSeconds: STUCK_AFTER_MS / 1000 } } });
      s.clock.t = at;
      let claimed: Payment | undefined;
      s.repo.beforeTransition = (p) => {
        if (p.status === 'processing' && !claimed) claimed = structuredClone(s.stored());
      };
      await s.processor.process(message);
      return { claimed: claimed!, stored: s.stored() };
    }

    it("a prompt claim keeps the create's due time: the index entry is not rewritten; a dead claimer is found then", async () => {
      // Created at T0, due at T0 + 240 s (STUCK_AFTER_SECONDS); claimed 1 s later with a 30 s lease.
      const { claimed, stored } = await claimOf({ dueAt: T0 + STUCK_AFTER_MS }, created, T0 + 1000);
      expect(claimed).toMatchObject({ status: 'processing', leaseUntil: T0 + 31_000, dueAt: T0 + STUCK_AFTER_MS });
      expect(stored.status).toBe('success');
    });

    it('keeps a due time exactly at the lease end and exactly stuckAfter past it', async () => {
      expect((await claimOf({ dueAt: T0 + 30_000 }, created, T0)).claimed.dueAt).toBe(T0 + 30_000);
      expect((await claimOf({ dueAt: T0 + 30_000 + STUCK_AFTER_MS }, created, T0)).claimed.dueAt).toBe(T0 + 30_000 + STUCK_AFTER_MS);
    });

    it('moves it to the lease end when it passed (a late claim), falls inside the lease, or lies further than stuckAfter past it', async () => {
      // Claimed 5 min after the create: the create's due time has passed.
      expect((await claimOf({ dueAt: T0 + STUCK_AFTER_MS }, created, T0 + 300_000)).claimed.dueAt).toBe(T0 + 330_000);
      // Due before the lease ends: the reconciler would find a payment it may not touch.
      expect((await claimOf({ dueAt: T0 + 29_999 }, created, T0)).claimed.dueAt).toBe(T0 + 30_000);
      // Due further than stuckAfter past the lease end (a deferral pushed it): a dead claimer would wait too long.
      expect((await claimOf({ dueAt: T0 + 30_001 + STUCK_AFTER_MS }, created, T0)).claimed.dueAt).toBe(T0 + 30_000);
    });

    it("a retry's claim moves it: its due time (nextAttemptAt + grace) falls inside the new lease", async () => {
      const retrying = { status: 'retrying' as const, attempt: 1, retryCount: 1, version: 3, nextAttemptAt: T0 + 2000, dueAt: T0 + 2000 + 30_000 };
      const { claimed, stored } = await claimOf(retrying, { paymentId: 'pay_1', reason: 'retry', notBefore: T0 + 2000, forAttempt: 2 }, T0 + 2100);
      expect(claimed).toMatchObject({ status: 'processing', attempt: 2, leaseUntil: T0 + 32_100, dueAt: T0 + 32_100 });
      expect(stored).toMatchObject({ status: 'success', attempt: 2 });
    });
  });

  it('makes the intent before the claim, and the claim stores it: no second write for the intent id', async () => {
    const { processor, repo, provider, stored } = setup();
    let claim: TransitionRequest | undefined;
    let callsAtClaim = -1;
    repo.beforeTransition = (_p, req) => {
      if (req.to !== 'processing') return;
      claim = req;
      callsAtClaim = provider.calls.length;
    };
    let intentWrites = 0;
    const record = repo.recordIntent.bind(repo);
    repo.recordIntent = async (p, id) => {
      intentWrites++;
      return record(p, id);
    };
    await expect(processor.process(created)).resolves.toMatchObject({ kind: 'settled', status: 'success' });
    expect(claim?.set).toMatchObject({ attempt: 1, intentId: 'pi_1' });
    expect(callsAtClaim).toBe(1); // the create only: nothing is confirmed before the claim
    expect(intentWrites).toBe(0);
    expect(stored()).toMatchObject({ status: 'success', intentId: 'pi_1' });
    expect(provider.netCaptured('pay_1')).toBe(1250);
  });

  it('a claim lost after making the intent confirms nothing; the winner confirms that same intent once', async () => {
    const { processor, repo, provider, stored } = setup();
    const winner = structuredClone(stored());
    repo.beforeTransition = (current, req) => {
      // Another worker claims first (it made the same intent under the same key).
      if (req.to === 'processing' && current.version === 1 && repo.beforeTransition) {
        repo.beforeTransition = undefined;
        repo.put({ ...winner, status: 'processing', version: 2, attempt: 1, intentId: 'pi_1', leaseUntil: T0 + 30_000 });
      }
    };
    await expect(processor.process(created)).resolves.toEqual({ kind: 'ignored', reason: 'concurrent_update' });
    expect(provider.calls.filter((c) => c.op === 'confirm')).toEqual([]);
    expect(provider.calls).toEqual([{ op: 'create', key: 'intent-pay_1' }]);
  });

  it('an intent recorded at the same version after the read (a lookup elsewhere) makes the claim lose: nothing is confirmed, nothing overwritten', async () => {
    const { processor, repo, provider, stored } = setup();
    repo.beforeTransition = (current, req) => {
      if (req.to !== 'processing' || !repo.beforeTransition) return;
      repo.beforeTransition = undefined;
      repo.put({ ...structuredClone(current), intentId: 'pi_found_elsewhere' });
    };
    await expect(processor.process(created)).resolves.toEqual({ kind: 'ignored', reason: 'concurrent_update' });
    expect(provider.calls.filter((c) => c.op === 'confirm')).toEqual([]);
    expect(stored()).toMatchObject({ status: 'pending', version: 1, intentId: 'pi_found_elsewhere' });
  });

  it('our own failure before the claim claims nothing: the payment stays pending and the message is retried', async () => {
    const { processor, provider, stored } = setup();
    provider.failCreates = new Error('rate budget table unavailable') as never;
    await expect(processor.process(created)).rejects.toThrow('rate budget table unavailable');
    expect(stored()).toMatchObject({ status: 'pending', version: 1, attempt: 0 });
    expect(stored().intentId).toBeUndefined();
  });

  it('an unclear answer to the create before the claim: the claimed attempt makes it again and confirms that intent once', async () => {
    const { processor, provider, stored } = setup();
    let creates = 0;
    provider.failCreates = undefined;
    const create = provider.createIntent.bind(provider);
    provider.createIntent = async (req) => {
      if (creates++ === 0) {
        provider.calls.push({ op: 'create', key: 'intent-pay_1' });
        // As the Stripe adapter maps a 409 idempotency_key_in_use: a throttle, not a refusal of this payment.
        throw new ProviderError('throttled', 'idempotency_key_in_use', 'another request with this key is in flight', { httpStatus: 409 });
      }
      return create(req);
    };
    await expect(processor.process(created)).resolves.toMatchObject({ kind: 'settled', status: 'success', attempt: 1 });
    expect(provider.calls.map((c) => c.op)).toEqual(['create', 'create', 'confirm']);
    expect(stored()).toMatchObject({ status: 'success', retryCount: 0, intentId: 'pi_1' });
    expect(provider.netCaptured('pay_1')).toBe(1250);
  });

  it('a clear refusal of the create before the claim is settled by the claimed attempt without asking again', async () => {
    const { processor, provider, stored } = setup();
    provider.failCreates = new ProviderError('outage', 'authentication_error', 'invalid API key', { httpStatus: 401 });
    await processor.process(created);
    expect(provider.calls).toEqual([{ op: 'create', key: 'intent-pay_1' }]);
    expect(stored()).toMatchObject({ status: 'retrying', attempt: 1, retryCount: 0, lastError: { code: 'PROVIDER_AUTH_ERROR', details: { outcome: 'outage' } } });
  });

  it('our fleet rate budget keeping the create back before the claim: the claimed attempt waits its turn without asking again or spending a retry', async () => {
    const { processor, provider, stored } = setup();
    provider.failCreates = new ProviderError('throttled', 'RATE_BUDGET', 'fleet provider budget spent', { retryAfterMs: 1000 });
    await processor.process(created);
    expect(provider.calls).toEqual([{ op: 'create', key: 'intent-pay_1' }]);
    expect(stored()).toMatchObject({ status: 'retrying', attempt: 1, retryCount: 0 });
  });

  it('passes amount, currency and metadata to the intent and the token to the confirmation', async () => {
    const { processor, provider } = setup();
    let confirm: unknown;
    provider.confirmBehaviour = (req) => {
      confirm = req;
      return 'succeed';
    };
    await processor.process(created);
    expect(provider.intents.get('pi_1')!.intent).toMatchObject({ paymentId: 'pay_1', amountMinor: 1250, currency: 'EUR' });
    expect(confirm).toEqual({ paymentId: 'pay_1', attempt: 1, paymentMethod: 'tok_success' });
  });

  it('a decline cancels the intent, then fails the payment after one attempt with our own non-retryable error', async () => {
    const { processor, provider, stored, queue } = setup();
    provider.confirmBehaviour = () => 'decline';
    await expect(processor.process(created)).resolves.toMatchObject({ kind: 'settled', status: 'failed' });
    expect(stored()).toMatchObject({
      status: 'failed',
      attempt: 1,
      retryCount: 0,
      intentId: 'pi_1',
      lastError: { code: 'CARD_DECLINED', message: 'The card was declined', retryable: false, timestamp: new Date(T0).toISOString() },
      lastChange: { action: 'charge_declined', actor: 'worker' },
    });
    expect(provider.intents.get('pi_1')!.intent.status).toBe('canceled');
    expect(provider.calls.map((c) => c.op)).toEqual(['create', 'confirm', 'cancel']);
    expect(queue.sent).toHaveLength(0);
  });

  it('insufficient funds is its own decline code', async () => {
    const { processor, provider, stored } = setup();
    provider.confirmBehaviour = () => 'insufficient_funds';
    await processor.process(created);
    expect(stored().lastError).toMatchObject({ code: 'INSUFFICIENT_FUNDS', retryable: false });
  });
});

describe('PaymentProcessor: duplicates and stale messages', () => {
  it('a duplicate message after success does not confirm again', async () => {
    const { processor, provider } = setup();
    await processor.process(created);
    await expect(processor.process(created)).resolves.toEqual({ kind: 'ignored', reason: 'terminal', status: 'success' });
    await expect(processor.process({ paymentId: 'pay_1', reason: 'retry', forAttempt: 2 })).resolves.toMatchObject({ reason: 'terminal' });
    expect(provider.count('confirm')).toBe(1);
    expect(provider.captures('pay_1')).toBe(1);
  });

  it('two copies of the message processed at the same time make one confirmation', async () => {
    const { processor, provider, stored } = setup();
    const results = await Promise.all([processor.process(created), processor.process(created), processor.process(created)]);
    expect(results.filter((r) => r.kind === 'settled')).toHaveLength(1);
    expect(results.filter((r) => r.kind === 'ignored').map((r) => (r.kind === 'ignored' ? r.reason : ''))).toEqual(['concurrent_update', 'concurrent_update']);
    expect(provider.count('confirm')).toBe(1);
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
    expect(provider.calls.filter((c) => c.op === 'confirm').map((c) => c.key)).toEqual(['confirm-pay_1-3']);
  });

  it('a message sent by the operator (no forAttempt) runs a retrying payment now', async () => {
    const { processor, provider, stored } = setup({ payment: { status: 'retrying', attempt: 1, retryCount: 1, version: 3, nextAttemptAt: T0 + 600_000 } });
    await processor.process({ paymentId: 'pay_1', reason: 'operator_retry' });
    expect(provider.calls.filter((c) => c.op === 'confirm').map((c) => c.key)).toEqual(['confirm-pay_1-2']);
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
    expect(provider.count('confirm')).toBe(1);
  });

  it('a notBefore within the clock-skew tolerance is processed now', async () => {
    const { processor, provider } = setup();
    await processor.process({ paymentId: 'pay_1', reason: 'retry', notBefore: T0 + 200 });
    expect(provider.count('confirm')).toBe(1);
  });

  it('a final payment ends the chain', async () => {
    const { processor, queue } = setup({ payment: { status: 'success', version: 3 } });
    await expect(processor.process({ paymentId: 'pay_1', reason: 'retry', notBefore: T0 + 5_000_000 })).resolves.toMatchObject({ reason: 'terminal' });
    expect(queue.sent).toHaveLength(0);
  });
});

describe('PaymentProcessor: the fleet at the provider rate budget', () => {
  it('a call the budget kept back spends no retry: five refusals in a row, then one capture; no breaker vote', async () => {
    let refusals = 5;
    const budget = {
      async take() {
        if (refusals-- > 0) throw new BudgetExhaustedError(1500);
      },
      async pauseUntil() {},
    };
    const votes: string[] = [];
    const breaker = { acquire: () => ({ allowed: true as const, probe: false, success: () => votes.push('success'), failure: () => votes.push('failure'), release: () => votes.push('release') }) };
    const s = setup({ random: () => 0 });
    const limited = new PaymentProcessor({
      store: s.repo,
      provider: withRateBudget(s.provider, budget, () => s.clock.t),
      queue: s.queue,
      breaker,
      config: CONFIG,
      clock: s.clock.now,
      random: () => 0,
      logger: silent,
    });
    await limited.process(created);
    expect(s.stored()).toMatchObject({
      status: 'retrying',
      retryCount: 0,
      lastError: { code: 'RATE_BUDGET', retryable: true, details: { outcome: 'not_sent', delayMs: 1500 } },
      lastChange: { action: 'rate_budget_wait' },
    });
    for (let i = 0; i < 10 && s.queue.sent.length > 0; i++) {
      const { message } = s.queue.sent.shift()!;
      if (message.notBefore !== undefined && message.notBefore > s.clock.t) s.clock.t = message.notBefore;
      await limited.process(message);
    }
    expect(s.stored()).toMatchObject({ status: 'success', retryCount: 0 });
    expect(s.provider.captures('pay_1')).toBe(1);
    expect(votes).not.toContain('failure');
  });
});

describe('PaymentProcessor: retries and exhaustion', () => {
  it('a provider error schedules a retry: retrying, retryCount+1, nextAttemptAt, dueAt = nextAttemptAt + grace, delayed message', async () => {
    const { processor, provider, queue, stored, clock } = setup({ random: () => 0.5 });
    provider.confirmBehaviour = (_r, n) => (n === 0 ? 'rate_limited' : 'succeed');
    await expect(processor.process(created)).resolves.toMatchObject({ kind: 'settled', status: 'retrying', attempt: 1 });

    const p = stored();
    expect(p).toMatchObject({
      status: 'retrying',
      attempt: 1,
      retryCount: 1,
      intentId: 'pi_1',
      nextAttemptAt: T0 + 2000, // the provider's Retry-After (2 s) beats the jittered 500 ms
      dueAt: T0 + 2000 + 30_000,
      lastError: { code: 'RATE_LIMITED', retryable: true, details: { attempt: 1, outcome: 'error', retry: 1, delayMs: 2000, backoffCapMs: 1000 } },
      lastChange: { action: 'retry_scheduled', actor: 'worker' },
    });
    expect(p.leaseUntil).toBeUndefined();
    expect(queue.sent).toEqual([{ message: { paymentId: 'pay_1', reason: 'retry', notBefore: T0 + 2000, forAttempt: 2 }, delaySeconds: 2 }]);

    clock.advance(2000);
    await expect(processor.process(queue.take())).resolves.toMatchObject({ status: 'success', attempt: 2 });
    expect(provider.calls.filter((c) => c.op === 'confirm').map((c) => c.key)).toEqual(['confirm-pay_1-1', 'confirm-pay_1-2']);
    expect(provider.count('create')).toBe(1);
    expect(stored()).toMatchObject({ status: 'success', attempt: 2, retryCount: 1 });
    expect(stored().lastError).toBeUndefined();
  });

  it('with maxRetries 3 a card failing forever makes 4 attempts with growing delays, then cancels the intent and fails (retryable)', async () => {
    const { processor, provider, queue, stored, clock } = setup({ random: () => 0.999 });
    provider.confirmBehaviour = () => 'error';
    await processor.process(created);
    const delays: number[] = [];
    for (let i = 0; i < 3; i++) {
      const m = queue.take();
      delays.push(m.notBefore! - clock.t);
      clock.t = m.notBefore!;
      await processor.process(m);
    }
    expect(delays).toEqual([999, 1998, 3996]);
    expect(queue.sent).toHaveLength(0);
    expect(stored()).toMatchObject({ status: 'failed', attempt: 4, retryCount: 3, lastError: { retryable: true }, lastChange: { action: 'retries_exhausted' } });
    expect(provider.intents.get('pi_1')!.intent.status).toBe('canceled');
    expect(provider.count('confirm')).toBe(4);
    expect(provider.netCaptured('pay_1')).toBe(0);
  });

  it('maxRetries 0 fails on the first retryable error', async () => {
    const { processor, provider, stored } = setup({ payment: { maxRetries: 0 } });
    provider.confirmBehaviour = () => 'rate_limited';
    await processor.process(created);
    expect(stored()).toMatchObject({ status: 'failed', retryCount: 0, lastError: { code: 'RATE_LIMITED', retryable: true } });
  });

  it('a failed retry-message send still leaves the payment retrying (the reconciler re-queues it) and logs', async () => {
    const log = capturingLogger();
    const { processor, provider, queue, stored } = setup({ deps: { logger: log.logger } });
    provider.confirmBehaviour = () => 'rate_limited';
    queue.failSends = true;
    await expect(processor.process(created)).resolves.toMatchObject({ status: 'retrying' });
    expect(stored().status).toBe('retrying');
    expect(log.lines.some((l) => l.level === 'error' && l.message.includes('reconciler will re-queue'))).toBe(true);
  });
});

describe('PaymentProcessor: never charged twice (each case failed on the per-attempt charge design)', () => {
  it('late commit: attempt 1 lands after the client gave up; attempt 2 cannot charge again and the payment ends success, one capture', async () => {
    const s = setup();
    await afterUnknownAttempt(s, 'late');
    // Attempt 2 comes while attempt 1 is still in flight at the provider: the intent is locked.
    s.clock.t = s.queue.sent[0]!.message.notBefore!;
    await s.processor.process(s.queue.take());
    expect(s.stored().status).toBe('retrying');
    s.provider.landLate();
    await s.drain();
    expect(s.stored()).toMatchObject({ status: 'success', intentId: 'pi_1' });
    expect(s.provider.captures('pay_1')).toBe(1);
    expect(s.provider.count('create')).toBe(1);
  });

  it('every attempt lands late: still one capture, and the payment ends success, never failed', async () => {
    const s = setup();
    s.provider.confirmBehaviour = () => 'late';
    await s.processor.process(created);
    for (let i = 0; i < 10 && s.queue.sent.length > 0; i++) {
      s.provider.landLate();
      await s.drain(1);
    }
    // A lapsed lease left by a refused cancel is settled from the intent.
    s.clock.advance(60_000);
    if (s.stored().status === 'processing') await s.processor.process({ paymentId: 'pay_1', reason: 'reconcile_lease' });
    expect(s.stored().status).toBe('success');
    expect(s.provider.captures('pay_1')).toBe(1);
  });

  it('a 5xx after commit is unknown, resolved by retrieving the intent: success with no second confirmation', async () => {
    const { processor, provider, stored } = setup();
    provider.confirmBehaviour = () => 'commit_then_error';
    await expect(processor.process(created)).resolves.toMatchObject({ status: 'success', via: 'confirm' });
    expect(provider.calls.map((c) => c.op)).toEqual(['create', 'confirm', 'retrieve']);
    expect(stored()).toMatchObject({ status: 'success', retryCount: 0 });
    expect(provider.captures('pay_1')).toBe(1);
  });

  it('a reset after commit with a lagging retrieve: the next attempt is refused by the intent, and the payment ends success, one capture', async () => {
    const s = setup();
    s.provider.lagMs = 10_000;
    s.provider.confirmBehaviour = () => 'reset_after_commit';
    await s.processor.process(created);
    expect(s.stored()).toMatchObject({ status: 'retrying', lastError: { code: 'NETWORK_ERROR', details: { outcome: 'unknown' } } });
    await s.drain();
    expect(s.stored().status).toBe('success');
    expect(s.provider.captures('pay_1')).toBe(1);
  });

  it('a timeout without a commit: the next attempt retrieves the intent first, then confirms it, one capture', async () => {
    const s = setup();
    await afterUnknownAttempt(s, 'timeout_not_committed');
    s.provider.calls.length = 0;
    await s.drain();
    expect(s.provider.calls.map((c) => c.op)).toEqual(['retrieve', 'confirm']);
    expect(s.stored()).toMatchObject({ status: 'success', attempt: 2 });
    expect(s.provider.captures('pay_1')).toBe(1);
  });

  it('an unknown outcome that cannot be retrieved decides nothing: no confirmation, payment untouched, message redelivered', async () => {
    const s = setup();
    await afterUnknownAttempt(s, 'timeout_not_committed');
    const before = structuredClone(s.stored());
    s.provider.failReads = new ProviderError('unknown', 'HTTP_503', 'down');
    s.provider.calls.length = 0;
    s.clock.t = s.queue.sent[0]!.message.notBefore!;
    await expect(s.processor.process(s.queue.take())).rejects.toBeInstanceOf(OutcomeUnresolvedError);
    expect(s.provider.calls.map((c) => c.op)).toEqual(['retrieve']);
    expect(s.stored()).toEqual(before);
  });

  it('a 401 from a rotated credential is an outage: retrying without spending a retry, never a decline, and counted for the alarm', async () => {
    const counted: string[] = [];
    const s = setup({ deps: { metrics: { count: (name) => void counted.push(name) } } });
    s.provider.confirmBehaviour = (_r, n) => (n < 2 ? 'auth_error' : 'succeed');
    await s.processor.process(created);
    // The ProviderAuthFailures alarm pages on this metric: creates still answer 201 meanwhile.
    expect(counted.filter((n) => n === 'ProviderAuthFailures')).toHaveLength(1);
    expect(s.stored()).toMatchObject({
      status: 'retrying',
      retryCount: 0,
      nextAttemptAt: T0 + 60_000,
      lastError: { code: 'PROVIDER_AUTH_ERROR', retryable: true, details: { outcome: 'outage' } },
      lastChange: { action: 'provider_outage' },
    });
    expect(s.provider.intents.get('pi_1')!.intent.status).toBe('requires_payment_method');
    await s.drain();
    expect(s.stored()).toMatchObject({ status: 'success', retryCount: 0, attempt: 3 });
  });

  it('budget spent while the last confirmation is still in flight: the cancel is refused, nothing is written, and the payment ends success', async () => {
    const s = setup({ payment: { maxRetries: 0 } });
    s.provider.confirmBehaviour = () => 'late';
    await expect(s.processor.process(created)).rejects.toBeInstanceOf(OutcomeUnresolvedError);
    expect(s.stored()).toMatchObject({ status: 'processing', attempt: 1 });
    s.provider.landLate();
    s.clock.advance(31_000); // the lease lapses; redelivery or the reconciler settles from the intent
    await expect(s.processor.process(created)).resolves.toMatchObject({ status: 'success', via: 'retrieve' });
    expect(s.provider.captures('pay_1')).toBe(1);
    expect(s.provider.netCaptured('pay_1')).toBe(1250);
  });

  it('a failed payment is final at the provider too: a late confirmation after the cancel cannot capture', async () => {
    const s = setup();
    s.provider.confirmBehaviour = () => 'decline';
    await s.processor.process(created);
    expect(s.stored().status).toBe('failed');
    s.provider.confirmBehaviour = () => 'succeed';
    await expect(s.provider.confirmIntent('pi_1', { paymentId: 'pay_1', attempt: 9, paymentMethod: 'tok_success' })).rejects.toMatchObject({
      kind: 'rejected',
      code: 'payment_intent_unexpected_state',
    });
    expect(s.provider.netCaptured('pay_1')).toBe(0);
  });
  it('an operator re-open moves to a new intent: the cancelled one is never confirmed again, one capture in all', async () => {
    const s = setup({ payment: { maxRetries: 0 } });
    s.provider.confirmBehaviour = (r) => (r.attempt === 1 ? 'error' : 'succeed');
    await s.processor.process(created);
    expect(s.stored()).toMatchObject({ status: 'failed', intentId: 'pi_1', lastError: { retryable: true } });
    expect(s.provider.intents.get('pi_1')!.intent.status).toBe('canceled');
    // What POST /retry writes for an operator re-open (see PaymentsService.retryNow).
    const p = s.stored();
    s.repo.put({ ...p, status: 'retrying', version: p.version + 1, maxRetries: 3, intentSeq: 1, intentId: undefined, openShard: 'open#03', dueAt: T0 });
    await s.processor.process({ paymentId: 'pay_1', reason: 'operator_retry' });
    expect(s.provider.calls.filter((c) => c.op === 'create').map((c) => c.key)).toEqual(['intent-pay_1', 'intent-pay_1-r1']);
    expect(s.stored()).toMatchObject({ status: 'success', intentId: 'pi_2' });
    expect(s.provider.captures('pay_1')).toBe(1);
  });

  it('a re-opened payment that fails again cancels its new intent (a key per cancel call) and ends failed', async () => {
    const s = setup({ payment: { maxRetries: 0 } });
    s.provider.confirmBehaviour = () => 'error';
    await s.processor.process(created);
    const p = s.stored();
    s.repo.put({ ...p, status: 'retrying', version: p.version + 1, maxRetries: 0, intentSeq: 1, intentId: undefined, openShard: 'open#03', dueAt: T0 });
    await expect(s.processor.process({ paymentId: 'pay_1', reason: 'operator_retry' })).resolves.toMatchObject({ status: 'failed' });
    expect(s.provider.intents.get('pi_2')!.intent.status).toBe('canceled');
    expect(s.provider.calls.filter((c) => c.op === 'cancel').map((c) => c.key)).toEqual(['cancel-pi_1-1', 'cancel-pi_2-2']);
  });
});

describe('PaymentProcessor: lapsed leases and crashes', () => {
  const lapsed = { status: 'processing' as const, attempt: 1, version: 2, leaseUntil: T0 - 1, intentId: 'pi_1' };

  async function withIntent(s: ReturnType<typeof setup>, behaviour?: 'succeed' | 'decline') {
    await s.provider.createIntent({ paymentId: 'pay_1', amountMinor: 1250, currency: 'EUR' });
    if (behaviour) {
      s.provider.confirmBehaviour = () => behaviour;
      await s.provider.confirmIntent('pi_1', { paymentId: 'pay_1', attempt: 1, paymentMethod: 'tok' }).catch(() => undefined);
      s.provider.confirmBehaviour = () => 'succeed';
    }
    s.provider.calls.length = 0;
  }

  it('a lapsed lease whose intent succeeded is settled by retrieving it: success, no confirmation', async () => {
    const s = setup({ payment: lapsed });
    await withIntent(s, 'succeed');
    await expect(s.processor.process(created)).resolves.toMatchObject({ kind: 'settled', status: 'success', via: 'retrieve' });
    expect(s.provider.calls.map((c) => c.op)).toEqual(['retrieve']);
  });

  it('a lapsed lease whose intent was declined cancels it and fails the payment', async () => {
    const s = setup({ payment: lapsed });
    await withIntent(s, 'decline');
    await expect(s.processor.process(created)).resolves.toMatchObject({ kind: 'settled', status: 'failed' });
    expect(s.stored().lastError).toMatchObject({ code: 'CARD_DECLINED', retryable: false });
    expect(s.provider.intents.get('pi_1')!.intent.status).toBe('canceled');
  });

  it('a lapsed lease without a confirmation schedules a retry, never a confirmation in the same message', async () => {
    const s = setup({ payment: lapsed });
    await withIntent(s);
    await expect(s.processor.process(created)).resolves.toMatchObject({ kind: 'settled', status: 'retrying' });
    expect(s.provider.calls.map((c) => c.op)).toEqual(['retrieve']);
    expect(s.stored()).toMatchObject({ retryCount: 1, lastError: { code: 'ATTEMPT_ABANDONED', details: { outcome: 'unknown' } } });
  });

  it('a lapsed lease with no recorded intent id finds the intent again by its key', async () => {
    const s = setup({ payment: { ...lapsed, intentId: undefined } });
    await withIntent(s, 'succeed');
    await expect(s.processor.process(created)).resolves.toMatchObject({ status: 'success' });
    expect(s.provider.calls.map((c) => c.op)).toEqual(['create', 'retrieve']);
    expect(s.stored().intentId).toBe('pi_1');
  });

  it('crash right after a successful confirmation, then redelivery: one capture and success', async () => {
    const s = setup();
    const crashing = new PaymentProcessor({
      store: s.repo,
      provider: withCrashAfterCharge(s.provider, () => true),
      queue: s.queue,
      breaker: s.breaker,
      config: CONFIG,
      clock: s.clock.now,
      logger: silent,
    });
    await expect(crashing.process(created)).rejects.toBeInstanceOf(InjectedCrashError);
    // The intent was stored on the payment before it was confirmed: recovery reads it, never makes another.
    expect(s.stored()).toMatchObject({ status: 'processing', attempt: 1, intentId: 'pi_1' });
    await expect(s.processor.process(created)).resolves.toMatchObject({ reason: 'leased' });
    s.clock.advance(30_001);
    await expect(s.processor.process(created)).resolves.toMatchObject({ status: 'success', via: 'retrieve' });
    expect(s.provider.captures('pay_1')).toBe(1);
    expect(s.provider.count('confirm')).toBe(1);
  });

  it('an intent not stored on the payment (a payment from before it was stored) past the key retention is found by its payment id, never created again', async () => {
    const s = setup({ payment: { ...lapsed, intentId: undefined } });
    await withIntent(s, 'succeed');
    s.clock.advance(25 * 3_600_000); // the provider forgot the create key
    await expect(s.processor.process(created)).resolves.toMatchObject({ kind: 'settled', status: 'success' });
    expect(s.provider.count('create')).toBe(0);
    expect(s.provider.count('search')).toBe(1);
    expect(s.stored()).toMatchObject({ status: 'success', intentId: 'pi_1' });
    expect(s.provider.captures('pay_1')).toBe(1);
  });

  it('a concurrent recovery of the same lapsed lease settles once', async () => {
    const s = setup({ payment: lapsed });
    await withIntent(s, 'succeed');
    const results = await Promise.all([s.processor.process(created), s.processor.process(created)]);
    expect(results.filter((r) => r.kind === 'settled')).toHaveLength(1);
    expect(s.repo.history.filter((h) => h.status === 'success')).toHaveLength(1);
  });

  it('if another writer moves the payment between confirmation and settle, the result is dropped, not overwritten', async () => {
    const s = setup();
    s.repo.beforeTransition = (current, req) => {
      if (req.to === 'success') s.repo.put({ ...current, version: current.version + 1, status: 'retrying' });
    };
    await expect(s.processor.process(created)).resolves.toEqual({ kind: 'ignored', reason: 'concurrent_update' });
    expect(s.stored().status).toBe('retrying');
  });

  it('a repository failure propagates (the worker reports the message as failed)', async () => {
    const s = setup();
    s.repo.failNextGet = new Error('DynamoDB unavailable');
    await expect(s.processor.process(created)).rejects.toThrow('DynamoDB unavailable');
  });

  it('refuses a provider timeout that does not fit three times into the lease', () => {
    expect(() => setup({ deps: { config: { ...CONFIG, providerTimeoutMs: 10_000 } } })).toThrow(RangeError);
  });
});

describe('PaymentProcessor: expiry', () => {
  const error = { code: 'PAYMENT_EXPIRED', message: 'late', retryable: false, timestamp: new Date(T0).toISOString() };

  it('a payment never attempted has no intent: expired directly, no provider call', async () => {
    const s = setup();
    await expect(s.processor.expire(s.stored(), error, 'reconciler', 'deadline')).resolves.toMatchObject({ status: 'expired' });
    expect(s.provider.calls).toHaveLength(0);
    expect(s.stored()).toMatchObject({ status: 'expired', lastChange: { action: 'expired', actor: 'reconciler' } });
  });

  it('a retrying payment is expired only after its intent is cancelled', async () => {
    const s = setup();
    await afterUnknownAttempt(s, 'timeout_not_committed');
    await expect(s.processor.expire(s.stored(), error, 'reconciler', 'deadline')).resolves.toMatchObject({ status: 'expired' });
    expect(s.provider.intents.get('pi_1')!.intent.status).toBe('canceled');
  });

  it('if the cancel says the intent succeeded, the payment becomes success, not expired', async () => {
    const s = setup();
    await afterUnknownAttempt(s, 'late');
    s.provider.landLate();
    await expect(s.processor.expire(s.stored(), error, 'reconciler', 'deadline')).resolves.toMatchObject({ status: 'success', via: 'cancel' });
    expect(s.repo.history.slice(-2).map((h) => h.status)).toEqual(['processing', 'success']);
    expect(s.provider.captures('pay_1')).toBe(1);
  });

  it('if the provider cannot cancel now, nothing is written', async () => {
    const s = setup();
    await afterUnknownAttempt(s, 'timeout_not_committed');
    const before = structuredClone(s.stored());
    s.provider.failCancels = new ProviderError('unknown', 'HTTP_500', 'down');
    await expect(s.processor.expire(s.stored(), error, 'reconciler', 'deadline')).rejects.toBeInstanceOf(OutcomeUnresolvedError);
    expect(s.stored()).toEqual(before);
  });
});

describe('PaymentProcessor: circuit breaker', () => {
  function withBreaker() {
    let t = T0;
    const breaker = new CircuitBreaker('p', { minFailingPayments: 2, openMs: 10_000, halfOpenProbes: 1, successesToClose: 1, now: () => t });
    const s = setup({ breaker, deps: { config: { ...CONFIG, deferJitterMs: 1000 } } });
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
    provider.confirmBehaviour = () => 'error';
    provider.failReads = new ProviderError('unknown', 'HTTP_503', 'down');
    await processor.process({ paymentId: 'pay_1', reason: 'created' });
    await processor.process({ paymentId: 'pay_2', reason: 'created' });
    expect(breaker.state).toBe('open');
    queue.sent.length = 0;

    const before = structuredClone(repo.items.get('pay_3')!);
    const r = await processor.process({ paymentId: 'pay_3', reason: 'created' });
    expect(r).toEqual({ kind: 'deferred', notBefore: T0 + 10_000 + 500, delaySeconds: 11 });
    expect(repo.items.get('pay_3')).toEqual(before);
    expect(provider.calls.filter((c) => c.key?.includes('pay_3'))).toHaveLength(0);
    expect(queue.sent).toEqual([{ message: { paymentId: 'pay_3', reason: 'deferred', notBefore: T0 + 10_500 }, delaySeconds: 11 }]);

    // After the open period the deferred message is the half-open probe; success closes the breaker.
    provider.confirmBehaviour = () => 'succeed';
    provider.failReads = undefined;
    clock.advance(11_000);
    sync();
    await expect(processor.process(queue.take())).resolves.toMatchObject({ status: 'success', attempt: 1 });
    expect(repo.items.get('pay_3')).toMatchObject({ retryCount: 0, attempt: 1 });
    expect(breaker.state).toBe('closed');
  });

  it('lapsed-lease recovery is deferred too while the breaker is open (no retrieve, no change)', async () => {
    let t: number = T0;
    const breaker = new CircuitBreaker('p', { minFailingPayments: 1, openMs: 5000, now: () => t });
    const s = setup({ breaker, payment: { status: 'processing', attempt: 1, version: 2, leaseUntil: T0 - 1 } });
    const p = breaker.acquire();
    if (p.allowed) p.failure();
    expect(breaker.state).toBe('open');
    await expect(s.processor.process(created)).resolves.toMatchObject({ kind: 'deferred' });
    expect(s.provider.calls).toHaveLength(0);
    expect(s.stored().version).toBe(2);
    t += 5000;
    await expect(s.processor.process(created)).resolves.toMatchObject({ kind: 'settled', via: 'retrieve' });
  });

  it('a deferral re-sends once past the open period plus a spread, moves dueAt past it, and logs nothing', async () => {
    let t: number = T0;
    const logged: string[] = [];
    const log: Logger = { debug: (m) => logged.push(m), info: (m) => logged.push(m), warn: (m) => logged.push(m), error: (m) => logged.push(m) };
    const breaker = new CircuitBreaker('p', { minFailingPayments: 1, openMs: 30_000, now: () => t });
    // Created long ago enough that its due time would come before the deferred message.
    const s = setup({ breaker, random: () => 0.25, payment: { dueAt: T0 + 20_000 }, deps: { logger: log, config: { ...CONFIG, deferJitterMs: 20_000 } } });
    const p = breaker.acquire();
    if (p.allowed) p.failure();
    expect(breaker.state).toBe('open');
    t += 10_000;
    s.clock.t = t;
    const before = s.stored();
    const r = await s.processor.process(created);
    // Open until T0 + 30 s, then a quarter of the 20 s spread: one message, not a loop of short delays.
    expect(r).toEqual({ kind: 'deferred', notBefore: T0 + 35_000, delaySeconds: 25 });
    expect(s.queue.sent).toEqual([{ message: { ...created, reason: 'deferred', notBefore: T0 + 35_000 }, delaySeconds: 25 }]);
    // Due for the reconciler only a grace (the lease) after the deferred message: it is not re-queued meanwhile.
    expect(s.stored()).toEqual({ ...before, dueAt: T0 + 35_000 + 30_000 });
    expect(logged).toEqual([]);
    // A payment already due later keeps its due time.
    s.queue.sent.length = 0;
    s.repo.put({ ...s.stored(), dueAt: T0 + 500_000 });
    await s.processor.process(created);
    expect(s.stored().dueAt).toBe(T0 + 500_000);
    expect(s.repo.postponed).toBe(1);
  });

  it("one tenant's failing cards do not defer another tenant's payments", async () => {
    let t: number = T0;
    const breaker = new CircuitBreaker('p', { minFailingPayments: 3, minTenantPayments: 3, now: () => t });
    const s = setup({ breaker });
    s.clock.t = t;
    s.provider.confirmBehaviour = (req) => (req.paymentId.startsWith('pay_t2') ? 'error' : 'succeed');
    for (let i = 0; i < 3; i++) s.repo.put(payment({ id: `pay_t1_${i}` }));
    for (let i = 0; i < 20; i++) s.repo.put(payment({ id: `pay_t2_${i}`, tenantId: 'tenant-2' }));
    for (let i = 0; i < 3; i++) await s.processor.process({ paymentId: `pay_t1_${i}`, reason: 'created' });
    for (let i = 0; i < 20; i++) await s.processor.process({ paymentId: `pay_t2_${i}`, reason: 'created' });
    expect(breaker.state).toBe('closed');
    s.repo.put(payment({ id: 'pay_t1_next' }));
    await expect(s.processor.process({ paymentId: 'pay_t1_next', reason: 'created' })).resolves.toMatchObject({ kind: 'settled', status: 'success' });
  });

  it('payments that keep failing on retries do not open the breaker; new payments failing do', async () => {
    let t = T0;
    const breaker = new CircuitBreaker('p', { minFailingPayments: 3, failureRateThreshold: 0.5, openMs: 10_000, now: () => t });
    const s = setup({ breaker });
    s.provider.confirmBehaviour = () => 'error';
    s.provider.failReads = new ProviderError('unknown', 'HTTP_503', 'down');
    // Five payments already on their retries (attempt > 0): their failures are their own.
    for (const id of ['r1', 'r2', 'r3', 'r4', 'r5']) {
      s.repo.put(paymentFixture({ id, status: 'retrying', attempt: 1, retryCount: 1, version: 3 }));
      await s.processor.process({ paymentId: id, reason: 'retry' });
    }
    expect(breaker.state).toBe('closed');
    // Three new payments failing on their first attempt: provider-wide failure.
    for (const id of ['n1', 'n2', 'n3']) {
      s.repo.put(paymentFixture({ id }));
      await s.processor.process({ paymentId: id, reason: 'created' });
    }
    t = s.clock.t;
    expect(breaker.state).toBe('open');
  });

  it('a declined card counts as a healthy provider', async () => {
    const { processor, provider, repo, breaker } = withBreaker();
    provider.confirmBehaviour = () => 'decline';
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

  it('a refund message moves that refund on (the same queue carries payments and refunds); without a refund processor it is poison', async () => {
    expect(parseWorkerMessage('{"refundId":"rf_1","reason":"owed"}')).toEqual({ refundId: 'rf_1', reason: 'owed' });
    expect(() => parseWorkerMessage('{"refundId":""}')).toThrow(PoisonMessageError);
    const moved: string[] = [];
    const { processor } = setup();
    const handler = createWorkerHandler({
      processor,
      refunds: { process: async (id) => (moved.push(id), { kind: 'not_found' as const }) },
      logger: silent,
    });
    await expect(handler(sqsEvent([JSON.stringify({ refundId: 'rf_1', reason: 'owed' })]))).resolves.toEqual({ batchItemFailures: [] });
    expect(moved).toEqual(['rf_1']);
    const without = createWorkerHandler({ processor, logger: silent });
    await expect(without(sqsEvent([JSON.stringify({ refundId: 'rf_2', reason: 'owed' })]))).resolves.toMatchObject({ batchItemFailures: [expect.anything()] });
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
