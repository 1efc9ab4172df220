/**
 * Issue 17, "money safety against Stripe as it really behaves": one test per way money went wrong when
 * the provider behaves as Stripe documents (rows R1..R10 of the table; R7 and R8 need the real
 * adapter and live in test/integration/stripe-adapter.test.ts, the create-time refusals in
 * test/e2e/payments-api.test.ts). Each runs the real processor and reconciler over the in-memory fakes,
 * with time moving on a fake clock: a worker that delivers queued messages when they come due (an
 * unresolved one comes back after the visibility timeout) and a reconciler run every minute.
 *
 * The verdict is the provider's ledger (money that moved) and the stored payment, never a status code.
 */
import { describe, expect, it } from 'vitest';
import { withCrashAfterCharge, InjectedCrashError } from '../../functions/adapters/provider/fault-injection';
import { CircuitBreaker } from '../../functions/core/circuit-breaker';
import type { Payment } from '../../functions/core/payment';
import { silentLogger, type PaymentMessage, type PaymentQueue } from '../../functions/core/ports';
import { ProviderError, type PaymentProvider } from '../../functions/core/ports/payment-provider';
import { PaymentProcessor } from '../../functions/core/processing/payment-processor';
import { Reconciler, type ReconcilerCursor } from '../../functions/core/reconciler';
import { ConfigError, loadConfig } from '../../functions/shared/env';
import { FakeIntentProvider, OUR_TAG } from '../helpers/fake-intent-provider';
import { FakeClock, FakeRefundStore, FakeRepository, paymentFixture } from '../helpers/fakes';

const MIN = 60_000;
const HOUR = 60 * MIN;
/** The payments queue's visibility timeout: a message whose processing failed comes back after it. */
const VISIBILITY_MS = 180_000;

/** A queue on the fake clock: each message is delivered once its delay has passed. */
class TimedQueue implements PaymentQueue {
  readonly waiting: Array<{ message: PaymentMessage; at: number; receives: number }> = [];
  constructor(private readonly clock: FakeClock) {}
  async send(message: PaymentMessage, delaySeconds = 0): Promise<void> {
    this.waiting.push({ message, at: this.clock.t + delaySeconds * 1000, receives: 0 });
  }
}

interface Options {
  readonly deadlineHours?: number;
  readonly provider?: (p: FakeIntentProvider) => PaymentProvider;
}

function setup(o: Options = {}) {
  const clock = new FakeClock();
  const repo = new FakeRepository();
  const queue = new TimedQueue(clock);
  const provider = new FakeIntentProvider(() => clock.t);
  const refunds = new FakeRefundStore();
  const openDeadlineSeconds = (o.deadlineHours ?? 24) * 3600;
  const processorFor = (p: PaymentProvider) =>
    new PaymentProcessor({
      store: repo,
      provider: p,
      queue,
      breaker: new CircuitBreaker('p', { failureRateThreshold: 0 }),
      config: { retryBaseSeconds: 1, retryCapSeconds: 60, leaseSeconds: 30, providerTimeoutMs: 5000, openDeadlineSeconds, providerKeyRetentionSeconds: 86_400 },
      clock: clock.now,
      random: () => 0.5,
      logger: silentLogger,
    });
  const processor = processorFor(o.provider ? o.provider(provider) : provider);
  let cursor: ReconcilerCursor | undefined;
  const reconcile = async () => {
    const r = await new Reconciler({
      store: repo,
      queue,
      processor,
      provider,
      refunds,
      logger: silentLogger,
      clock: clock.now,
      config: { stuckAfterSeconds: 120, openDeadlineSeconds, settleGraceMs: MIN, providerWindowMinutes: 120, tag: OUR_TAG },
    } as ConstructorParameters<typeof Reconciler>[0]).run(cursor);
    cursor = r.cursor;
    return r;
  };
  /** The worker: every message that is due is processed; one that throws comes back after the visibility timeout (5 receives, then the DLQ). */
  const deliver = async (p: PaymentProcessor = processor) => {
    for (let round = 0; round < 20; round++) {
      const due = queue.waiting.filter((w) => w.at <= clock.t);
      if (due.length === 0) return;
      for (const w of due) {
        queue.waiting.splice(queue.waiting.indexOf(w), 1);
        try {
          await p.process(w.message);
        } catch {
          if (++w.receives < 5) queue.waiting.push({ ...w, at: clock.t + VISIBILITY_MS });
        }
      }
    }
  };
  /** Runs the system for `ms` of fake time: due messages, and a reconciler run every `every`. */
  const runFor = async (ms: number, every = MIN) => {
    for (let t = 0; t < ms; t += every) {
      await deliver();
      // A run that fails is recorded as failed by its handler; the next one starts from the saved cursor.
      await reconcile().catch(() => undefined);
      await deliver();
      clock.advance(every);
    }
  };
  const put = (p: Partial<Payment> = {}) => repo.put(paymentFixture({ amountMinor: 1250, currency: 'EUR', ...p }));
  const stored = (id = 'pay_1') => repo.items.get(id)!;
  const created = (id = 'pay_1') => queue.send({ paymentId: id, reason: 'created' });
  return { clock, repo, queue, provider, refunds, processor, processorFor, reconcile, deliver, runFor, put, stored, created };
}

/** The worker dies right after the provider answered its confirmation, whatever the answer. */
const crashAfterConfirm = (p: FakeIntentProvider): PaymentProvider =>
  new Proxy(p, {
    get(target, k) {
      if (k === 'confirmIntent') {
        return async (...args: Parameters<PaymentProvider['confirmIntent']>) => {
          await target.confirmIntent(...args);
          throw new Error('worker crashed after the confirmation');
        };
      }
      const v = (target as unknown as Record<string | symbol, unknown>)[k];
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });

const unreadable = new ProviderError('unknown', 'HTTP_503', 'provider returned 503', { httpStatus: 503 });

describe('issue 17: money against Stripe as it really behaves', () => {
  it('R1: a crash after capture, then a provider unreadable past key retention: recovery reads the intent it recorded, never creates a second', async () => {
    const s = setup();
    s.put();
    const crashing = s.processorFor(withCrashAfterCharge(s.provider, () => true));
    await s.created();
    s.queue.waiting.shift();
    await expect(crashing.process({ paymentId: 'pay_1', reason: 'created' })).rejects.toThrow(InjectedCrashError);
    expect(s.provider.captures('pay_1')).toBe(1);

    // The provider cannot be read for 25 h; meanwhile its idempotency keys expire (24 h).
    s.provider.failReads = unreadable;
    await s.runFor(25 * HOUR, 30 * MIN);
    s.provider.failReads = undefined;
    await s.runFor(2 * HOUR);

    expect(s.provider.captures('pay_1')).toBe(1);
    expect(s.provider.intents.size).toBe(1);
    expect(s.stored()).toMatchObject({ status: 'success', intentId: 'pi_1' });
  });

  it('R2: a refund answered with a saved 500 is retried under a new key until the provider confirms it, long after its intent left the window', async () => {
    const s = setup();
    // A capture on one of our intents that no payment accounts for.
    const orphan = s.provider.createForeignIntent({ paymentId: 'pay_ghost', ...OUR_TAG, amountMinor: 700 });
    // The first refund fails with a 500 that Stripe saves under its key (and replays for 24 h).
    s.provider.refundBehaviour = (_req, n) => (n === 0 ? 'error' : 'ok');
    s.clock.advance(5 * MIN);
    await s.runFor(6 * HOUR, 10 * MIN);

    expect(s.provider.netOfIntent(orphan)).toBe(0);
    expect(s.provider.ledger.filter((e) => e.status === 'refunded')).toHaveLength(1);
  });

  it('R3: captures by other integrations on the account (no tag, another stage, another service) are reported, never refunded', async () => {
    const s = setup();
    const checkout = s.provider.createForeignIntent({ amountMinor: 2000 });
    const otherStage = s.provider.createForeignIntent({ paymentId: 'pay_x', service: OUR_TAG.service, stage: 'staging' });
    const otherService = s.provider.createForeignIntent({ paymentId: 'pay_y', service: 'billing', stage: OUR_TAG.stage });
    const ours = s.provider.createForeignIntent({ paymentId: 'pay_ghost', ...OUR_TAG });
    s.clock.advance(5 * MIN);
    const r = await s.reconcile();

    for (const id of [checkout, otherStage, otherService]) expect(s.provider.netOfIntent(id)).toBe(2000);
    // Our own unaccounted capture is still refunded: the tag decides, not the absence of a payment.
    expect(s.provider.netOfIntent(ours)).toBe(0);
    expect(r.refundsIssued).toBe(1);
  });

  it('R4: a processing payment past the open deadline leaves processing: a stuck 3-D Secure intent is cancelled and the payment ends; a processing intent is waited for and its success wins', async () => {
    const s = setup({ deadlineHours: 2, provider: crashAfterConfirm });
    s.put({ id: 'pay_3ds', idempotencyKey: 'k-3ds' });
    s.put({ id: 'pay_slow', idempotencyKey: 'k-slow' });
    s.provider.confirmBehaviour = (req) => (req.paymentId === 'pay_3ds' ? 'requires_action' : 'processing');
    await s.created('pay_3ds');
    await s.created('pay_slow');
    await s.deliver(); // both confirmations reach the provider; the worker dies after each
    await s.runFor(3 * HOUR, 10 * MIN);

    const slowIntent = [...s.provider.intents.values()].find((r) => r.intent.paymentId === 'pay_slow')!.intent.id;
    expect(s.stored('pay_3ds').status).toMatch(/^(failed|expired)$/);
    expect(s.provider.netCaptured('pay_3ds')).toBe(0);
    expect([...s.provider.intents.values()].find((r) => r.intent.paymentId === 'pay_3ds')!.intent.status).toBe('canceled');
    // Still processing at the provider (it refuses a cancel): visibly waiting, not a lapsed lease; the
    // checks are queued messages, not an audited version each time.
    expect(s.stored('pay_slow')).toMatchObject({ status: 'retrying', lastError: { code: 'INTENT_PROCESSING', retryable: true } });
    expect(s.queue.waiting.some((w) => w.message.paymentId === 'pay_slow')).toBe(true);
    expect(s.repo.history.filter((h) => h.id === 'pay_slow').map((h) => h.action)).toEqual(['attempt_started', 'awaiting_provider']);

    s.provider.endProcessing(slowIntent, 'succeed');
    await s.runFor(30 * MIN);
    expect(s.stored('pay_slow')).toMatchObject({ status: 'success', intentId: slowIntent });
    expect(s.provider.captures('pay_slow')).toBe(1);
  });

  it('R5: requires_action after a server-side confirm: the intent is cancelled and the payment fails AUTHENTICATION_REQUIRED after one attempt', async () => {
    const s = setup();
    s.put();
    s.provider.confirmBehaviour = () => 'requires_action';
    await s.created();
    await s.runFor(30 * MIN);

    expect(s.stored()).toMatchObject({ status: 'failed', attempt: 1, retryCount: 0, lastError: { code: 'AUTHENTICATION_REQUIRED', retryable: false } });
    expect(s.provider.intents.get('pi_1')!.intent.status).toBe('canceled');
    expect(s.provider.count('confirm')).toBe(1);
    expect(s.repo.history.map((h) => `${h.status}:${h.action}`)).toEqual(['processing:attempt_started', 'failed:charge_declined']);
  });

  it('R6: intents created while the reconciler was down for 3 h are still compared (a saved mark, no gap)', async () => {
    const s = setup();
    await s.reconcile();
    s.clock.advance(10 * MIN);
    const orphan = s.provider.createForeignIntent({ paymentId: 'pay_gap', ...OUR_TAG });
    s.clock.advance(3 * HOUR); // no reconciler runs meanwhile
    await s.runFor(10 * MIN);

    expect(s.provider.netOfIntent(orphan)).toBe(0);
  });

  it('R9: a 500 saved under the create key neither blocks the payment (the intent is looked up, or made under a new key) nor its expiry', async () => {
    const s = setup({ deadlineHours: 12 });
    s.put({ id: 'pay_made', idempotencyKey: 'k-made' });
    s.put({ id: 'pay_none', idempotencyKey: 'k-none' });
    // pay_made: Stripe made the intent, then answered 500 (saved); pay_none: 500 saved, nothing made.
    s.provider.createBehaviour = (req, n) => (n > 0 ? 'ok' : req.paymentId === 'pay_made' ? 'commit_then_error' : 'error');
    await s.created('pay_made');
    await s.created('pay_none');
    await s.runFor(HOUR);

    for (const id of ['pay_made', 'pay_none']) {
      expect(s.stored(id).status).toBe('success');
      expect(s.provider.captures(id)).toBe(1);
    }
    expect(s.stored('pay_made').intentId).toBe('pi_1');

    // Expiry: a payment past its deadline whose create key holds a saved 500 is still expired.
    s.put({ id: 'pay_old', idempotencyKey: 'k-old', status: 'retrying', attempt: 1, retryCount: 1, createdAt: new Date(s.clock.t - 13 * HOUR).toISOString(), dueAt: s.clock.t, nextAttemptAt: s.clock.t, lastError: { code: 'PROVIDER_UNAVAILABLE', message: 'x', retryable: true, timestamp: '', details: { attempt: 1, outcome: 'unknown' } } });
    s.provider.createBehaviour = () => 'error';
    await expect(s.provider.createIntent({ paymentId: 'pay_old', amountMinor: 1250, currency: 'EUR' })).rejects.toThrow();
    await s.runFor(30 * MIN);
    expect(s.stored('pay_old').status).toBe('expired');
    expect(s.provider.netCaptured('pay_old')).toBe(0);
  });

  it('R10: past the open deadline nothing is confirmed (holds and deferrals do not move it), and the idempotency key outlives the payment', async () => {
    const s = setup();
    s.put();
    let n = 0;
    s.provider.confirmBehaviour = () => (n++ === 0 ? 'error' : 'succeed');
    await s.created();
    await s.deliver();
    expect(s.stored()).toMatchObject({ status: 'retrying', attempt: 1 });
    // The retry message is held (breaker deferrals, outage holds) until the payment is 30 h old.
    const retry = s.queue.waiting.splice(0);
    s.clock.advance(30 * HOUR);
    for (const w of retry) await s.processor.process({ ...w.message, notBefore: s.clock.t });
    await s.runFor(10 * MIN);

    expect(s.provider.count('confirm')).toBe(1);
    expect(s.provider.netCaptured('pay_1')).toBe(0);
    expect(s.stored().status).toBe('expired');

    // A client re-sending its request must find this payment while it can still move money.
    const c = loadConfig({});
    expect(c.idempotencyTtlSeconds).toBeGreaterThan(c.openDeadlineSeconds + c.leaseSeconds);
    expect(() => loadConfig({ IDEMPOTENCY_TTL_SECONDS: '86400', OPEN_DEADLINE_SECONDS: '86400' })).toThrow(ConfigError);
  });
});

