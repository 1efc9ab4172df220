import { describe, expect, it } from 'vitest';
import { CircuitBreaker } from '../../functions/core/circuit-breaker';
import type { Payment } from '../../functions/core/payment';
import { silentLogger } from '../../functions/core/ports';
import { PaymentProcessor } from '../../functions/core/processing/payment-processor';
import { Reconciler } from '../../functions/core/reconciler';
import { FakeIntentProvider } from '../helpers/fake-intent-provider';
import { FakeClock, FakeQueue, FakeRepository, T0 } from '../helpers/fakes';

const HOUR = 3_600_000;

function payment(id: string, over: Partial<Payment> = {}): Payment {
  return {
    id,
    tenantId: 'tenant-1',
    idempotencyKey: `key-${id}`,
    generation: 0,
    requestHash: 'h',
    amountMinor: 500,
    currency: 'USD',
    paymentMethod: { type: 'card', token: 'tok_success' },
    metadata: {},
    status: 'pending',
    version: 1,
    attempt: 0,
    retryCount: 0,
    maxRetries: 3,
    createdAt: new Date(T0).toISOString(),
    updatedAt: new Date(T0).toISOString(),
    openShard: 'open#00',
    dueAt: T0 + 120_000,
    lastChange: { action: 'created', actor: 'api:tenant-1' },
    ...over,
  };
}

function setup() {
  const clock = new FakeClock();
  const repo = new FakeRepository();
  const queue = new FakeQueue();
  const provider = new FakeIntentProvider(() => clock.t);
  const processor = new PaymentProcessor({
    store: repo,
    provider,
    queue,
    breaker: new CircuitBreaker('p', { failureRateThreshold: 0 }),
    config: { retryBaseSeconds: 1, retryCapSeconds: 60, leaseSeconds: 30, providerTimeoutMs: 5000 },
    clock: clock.now,
    random: () => 0.5,
    logger: silentLogger,
  });
  const reconciler = (pageSize?: number) =>
    new Reconciler({
      store: repo,
      queue,
      processor,
      provider,
      logger: silentLogger,
      clock: clock.now,
      config: { stuckAfterSeconds: 120, openDeadlineSeconds: 86_400, settleGraceMs: 60_000, providerWindowMinutes: 120, ...(pageSize ? { pageSize } : {}) },
    });
  /** An intent for a payment, captured at the provider. */
  const capturedIntent = async (paymentId: string, intentSeq = 0) => {
    const intent = await provider.createIntent({ paymentId, amountMinor: 500, currency: 'USD', intentSeq });
    provider.forceCapture(intent.id);
    return intent.id;
  };
  return { clock, repo, queue, provider, processor, reconciler, capturedIntent };
}

describe('Reconciler: captures no payment accounts for are refunded', () => {
  it('refunds a capture with no payment, a capture of a failed payment and a second intent of a successful one; leaves the good one', async () => {
    const s = setup();
    const orphan = await s.capturedIntent('pay_ghost');
    const failedIntent = await s.capturedIntent('pay_failed');
    const good = await s.capturedIntent('pay_ok');
    const second = await s.capturedIntent('pay_ok', 1);
    s.repo.put(payment('pay_failed', { status: 'failed', intentId: failedIntent, openShard: undefined, dueAt: undefined, lastError: { code: 'CARD_DECLINED', message: 'x', retryable: false, timestamp: '' } }));
    s.repo.put(payment('pay_ok', { status: 'success', intentId: good, openShard: undefined, dueAt: undefined }));
    s.clock.advance(5 * 60_000);

    const r = await s.reconciler().run();
    expect(r.refundsIssued).toBe(3);
    expect(r.discrepancies.map((d) => `${d.kind}:${d.paymentId}:${d.intentId}:${d.status}`).sort()).toEqual([
      `UNACCOUNTED_CAPTURE_REFUNDED:pay_failed:${failedIntent}:failed`,
      `UNACCOUNTED_CAPTURE_REFUNDED:pay_ghost:${orphan}:missing`,
      `UNACCOUNTED_CAPTURE_REFUNDED:pay_ok:${second}:success`,
    ]);
    expect(s.provider.netCaptured('pay_ghost')).toBe(0);
    expect(s.provider.netCaptured('pay_failed')).toBe(0);
    expect(s.provider.netCaptured('pay_ok')).toBe(500);
    // The refund is an audited version of the payment; its status does not change.
    expect(s.repo.items.get('pay_failed')).toMatchObject({ status: 'failed', version: 2, lastChange: { action: 'refund_issued', actor: 'reconciler' } });
    expect(s.repo.items.get('pay_failed')!.refunds).toEqual([expect.objectContaining({ intentId: failedIntent, amountMinor: 500 })]);
  });

  it('a second run refunds nothing more (the refund key is derived from the intent), even when the listing lags', async () => {
    const s = setup();
    await s.capturedIntent('pay_ghost');
    s.clock.advance(5 * 60_000);
    await s.reconciler().run();
    s.provider.lagMs = 10 * 60_000; // the listing still shows the intent before its refund
    const again = await s.reconciler().run();
    expect(s.provider.ledger.filter((e) => e.status === 'refunded')).toHaveLength(1);
    expect(again.discrepancies.every((d) => d.kind === 'UNACCOUNTED_CAPTURE_REFUNDED')).toBe(true);
    expect(s.provider.netCaptured('pay_ghost')).toBe(0);
  });

  it('an open payment whose intent succeeded is settled as success, not refunded', async () => {
    const s = setup();
    const id = await s.capturedIntent('pay_open');
    s.repo.put(payment('pay_open', { status: 'retrying', attempt: 1, retryCount: 1, version: 3, intentId: id, dueAt: T0 + 10 * HOUR, nextAttemptAt: T0 + 10 * HOUR }));
    s.clock.advance(5 * 60_000);
    const r = await s.reconciler().run();
    expect(r.refundsIssued).toBe(0);
    expect(s.repo.items.get('pay_open')).toMatchObject({ status: 'success', intentId: id });
    expect(s.provider.netCaptured('pay_open')).toBe(500);
  });

  it('pages through the provider listing: 250 orphan captures, pages of 100, all refunded once', async () => {
    const s = setup();
    for (let i = 0; i < 250; i++) await s.capturedIntent(`pay_${i}`);
    s.clock.advance(5 * 60_000);
    const r = await s.reconciler().run();
    expect(r.intentsRead).toBe(250);
    expect(r.refundsIssued).toBe(250);
    expect(s.provider.count('list')).toBe(3);
  });

  it('a young capture (inside the settle grace) is left for the worker', async () => {
    const s = setup();
    await s.capturedIntent('pay_young');
    s.clock.advance(10_000);
    const r = await s.reconciler().run();
    expect(r.intentsRead).toBe(0);
    expect(s.provider.netCaptured('pay_young')).toBe(500);
  });
});

describe('Reconciler: open payments', () => {
  it('expires a payment past its deadline only after cancelling its intent; a late confirmation cannot capture afterwards', async () => {
    const s = setup();
    const intent = await s.provider.createIntent({ paymentId: 'pay_old', amountMinor: 500, currency: 'USD' });
    s.repo.put(payment('pay_old', { status: 'retrying', attempt: 2, retryCount: 2, version: 5, intentId: intent.id, dueAt: T0 }));
    s.clock.advance(25 * HOUR);
    const r = await s.reconciler().run();
    expect(r.counts.expired).toBe(1);
    expect(s.repo.items.get('pay_old')).toMatchObject({ status: 'expired', lastError: { code: 'PAYMENT_EXPIRED' } });
    expect(s.provider.intents.get(intent.id)!.intent.status).toBe('canceled');
    await expect(s.provider.confirmIntent(intent.id, { paymentId: 'pay_old', attempt: 3, paymentMethod: 'tok_success' })).rejects.toMatchObject({ kind: 'rejected' });
  });

  it('a payment past its deadline whose intent succeeded becomes success', async () => {
    const s = setup();
    const id = await s.capturedIntent('pay_old');
    s.repo.put(payment('pay_old', { status: 'retrying', attempt: 1, retryCount: 1, version: 3, intentId: id, dueAt: T0 }));
    s.clock.advance(25 * HOUR);
    const r = await s.reconciler().run();
    expect(r.counts.deadline_success).toBe(1);
    expect(s.repo.items.get('pay_old')!.status).toBe('success');
  });

  it('re-queues a pending payment never picked up, as an audited version that moves its due time', async () => {
    const s = setup();
    s.repo.put(payment('pay_stuck', { dueAt: T0 }));
    s.clock.advance(5 * 60_000);
    const r = await s.reconciler().run();
    expect(r.counts.requeued_pending).toBe(1);
    expect(s.queue.sent.map((m) => m.message)).toEqual([{ paymentId: 'pay_stuck', reason: 'requeue' }]);
    expect(s.repo.items.get('pay_stuck')).toMatchObject({ version: 2, dueAt: s.clock.t + 120_000, lastChange: { action: 'requeued' } });
  });

  it('a processing payment with a lapsed lease is settled from its intent, never confirmed', async () => {
    const s = setup();
    const id = await s.capturedIntent('pay_lapsed');
    s.repo.put(payment('pay_lapsed', { status: 'processing', attempt: 1, version: 2, intentId: id, leaseUntil: T0 + 1000, dueAt: T0 + 1000 }));
    s.provider.calls.length = 0;
    s.clock.advance(5 * 60_000);
    const r = await s.reconciler().run();
    expect(r.counts.lease_resolved_success).toBe(1);
    expect(s.provider.count('confirm')).toBe(0);
  });
});
