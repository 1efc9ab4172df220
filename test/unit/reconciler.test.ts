import { describe, expect, it } from 'vitest';
import { CircuitBreaker } from '../../functions/core/circuit-breaker';
import type { Payment } from '../../functions/core/payment';
import { silentLogger } from '../../functions/core/ports';
import { PaymentProcessor } from '../../functions/core/processing/payment-processor';
import { Reconciler } from '../../functions/core/reconciler';
import { FakeIntentProvider, OUR_TAG } from '../helpers/fake-intent-provider';
import { FakeClock, FakeQueue, FakeRefundStore, FakeRepository, paymentFixture, T0 } from '../helpers/fakes';

const HOUR = 3_600_000;

const payment = (id: string, over: Partial<Payment> = {}): Payment =>
  paymentFixture({ id, idempotencyKey: `key-${id}`, amountMinor: 500, currency: 'USD', metadata: {}, openShard: 'open#00', ...over });

function setup() {
  const clock = new FakeClock();
  const repo = new FakeRepository();
  const queue = new FakeQueue();
  const provider = new FakeIntentProvider(() => clock.t);
  const refunds = new FakeRefundStore();
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
  const reconciler = (pageSize?: number, hasTime?: () => boolean) =>
    new Reconciler({
      ...(hasTime ? { hasTime } : {}),
      store: repo,
      queue,
      processor,
      provider,
      refunds,
      logger: silentLogger,
      clock: clock.now,
      config: { stuckAfterSeconds: 120, openDeadlineSeconds: 86_400, settleGraceMs: 60_000, providerWindowMinutes: 120, tag: OUR_TAG, ...(pageSize ? { pageSize } : {}) },
    });
  /** An intent for a payment, captured at the provider. */
  const capturedIntent = async (paymentId: string, intentSeq = 0) => {
    const intent = await provider.createIntent({ paymentId, amountMinor: 500, currency: 'USD', intentSeq });
    provider.forceCapture(intent.id);
    return intent.id;
  };
  return { clock, repo, queue, provider, refunds, processor, reconciler, capturedIntent };
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

describe('Reconciler: a due payment whose lease is live', () => {
  it('is left to its claimer and postponed to its lease end (no version, no provider call), then settled once the lease lapsed', async () => {
    const s = setup();
    const id = await s.capturedIntent('pay_leased');
    // Due now, claimed with a lease that ends 2 min from now (hosts' clocks apart, or an item from before claimDueAt).
    const leaseUntil = T0 + 7 * 60_000;
    s.repo.put(payment('pay_leased', { status: 'processing', attempt: 1, version: 2, intentId: id, leaseUntil, dueAt: T0 + 60_000 }));
    s.provider.calls.length = 0;
    s.clock.advance(5 * 60_000);
    const r = await s.reconciler().run();
    expect(r.counts).toMatchObject({ postponed_leased: 1 });
    expect(s.repo.items.get('pay_leased')).toMatchObject({ status: 'processing', version: 2, dueAt: leaseUntil });
    expect(s.provider.calls.filter((c) => c.op !== 'list')).toEqual([]);
    // Not due again before the lease ends: the next run does not read it.
    s.clock.advance(60_000);
    const again = await s.reconciler().run();
    expect(again.itemsRead).toBe(0);
    expect(again.counts.postponed_leased ?? 0).toBe(0);
    // Lease lapsed: settled from its intent, never confirmed.
    s.clock.advance(2 * 60_000);
    const after = await s.reconciler().run();
    expect(after.counts.lease_resolved_success).toBe(1);
    expect(s.provider.count('confirm')).toBe(0);
  });
});

describe('Reconciler: within its budget, resuming across runs', () => {
  /** A budget of `pages` page reads per run (the check before each page). */
  const budget = (pages: number) => {
    let left = pages;
    return () => left-- > 0;
  };

  it('stops when its time is up, hands back a cursor, and the next runs resume there until every due payment is handled once', async () => {
    const s = setup();
    for (let i = 0; i < 25; i++) s.repo.put(payment(`pay_a${String(i).padStart(2, '0')}`, { dueAt: T0, openShard: 'open#00' }));
    for (let i = 0; i < 15; i++) s.repo.put(payment(`pay_b${String(i).padStart(2, '0')}`, { dueAt: T0, openShard: 'open#03' }));
    s.clock.advance(5 * 60_000);

    const first = await s.reconciler(10, budget(2)).run();
    expect(first).toMatchObject({ truncated: true, itemsRead: 20, counts: { requeued_pending: 20 } });
    expect(first.cursor).toMatchObject({ openPartition: 0, openStartKey: expect.anything() });
    // No time was left for the provider comparison: no mark was saved, so the next run compares from the start.
    expect(first.cursor.checkedUntil).toBeUndefined();

    const asked: Array<Record<string, unknown> | undefined> = [];
    const openDue = s.repo.openDue.bind(s.repo);
    s.repo.openDue = (partition, dueBefore, startKey, limit) => (asked.push(startKey), openDue(partition, dueBefore, startKey, limit));
    // Two pages: the rest of open#00 (5) and a page of open#03 (10).
    const second = await s.reconciler(10, budget(2)).run(first.cursor);
    expect(asked[0]).toEqual(first.cursor.openStartKey);
    expect(second).toMatchObject({ truncated: true, itemsRead: 15 });
    expect(second.cursor).toMatchObject({ openPartition: 1, openStartKey: expect.anything() });

    const third = await s.reconciler(10, budget(10)).run(second.cursor);
    expect(third).toMatchObject({ truncated: false, itemsRead: 5 });
    // Finished (it started at partition 1): the next run starts one partition on, at 0, and the
    // comparison's mark is saved.
    expect(third.cursor).toMatchObject({ openPartition: 0, checkedUntil: s.clock.t - 60_000 });
    expect(third.cursor.captures).toBeUndefined();
    const sent = s.queue.sent.map((m) => m.message.paymentId);
    expect(sent).toHaveLength(40);
    expect(new Set(sent).size).toBe(40);
  });

  it('rotates its starting partition: a finished run hands the next one the partition after the one it started at', async () => {
    const s = setup();
    s.repo.put(payment('pay_a', { dueAt: T0, openShard: 'open#00' }));
    s.repo.put(payment('pay_b', { dueAt: T0, openShard: 'open#03' }));
    s.clock.advance(5 * 60_000);
    const fromZero = await s.reconciler().run({ openPartition: 0 });
    expect(fromZero.cursor).toMatchObject({ openPartition: 1 });
    expect(s.queue.sent.map((m) => m.message.paymentId)).toEqual(['pay_a', 'pay_b']);
    s.queue.sent.length = 0;
    s.clock.advance(5 * 60_000);
    const fromOne = await s.reconciler().run(fromZero.cursor);
    expect(fromOne.cursor).toMatchObject({ openPartition: 0 });
    expect(s.queue.sent.map((m) => m.message.paymentId)).toEqual(['pay_b', 'pay_a']);
  });

  it('the provider comparison stops within budget and resumes in the same window from the last intent listed', async () => {
    const s = setup();
    for (let i = 0; i < 250; i++) await s.capturedIntent(`pay_${i}`);
    s.clock.advance(5 * 60_000);
    // The open phase reads one empty page per partition (2), the refund sweep one (1); then one provider
    // window is started (1) and one page of it read (1) before the time is up.
    const first = await s.reconciler(undefined, budget(5)).run();
    expect(first).toMatchObject({ truncated: true, intentsRead: 100, refundsIssued: 100 });
    expect(first.cursor.captures).toMatchObject({ after: expect.any(String) });
    expect(first.cursor.checkedUntil).toBeUndefined();
    s.clock.advance(60 * 60_000);
    // The unfinished window goes first, from the last intent listed: one page within this budget.
    const second = await s.reconciler(undefined, budget(1)).run(first.cursor);
    expect(second).toMatchObject({ intentsRead: 100, refundsIssued: 100 });
    const third = await s.reconciler(undefined, budget(10)).run(second.cursor);
    expect(third).toMatchObject({ intentsRead: 50, refundsIssued: 50 });
    expect(third.cursor.captures).toBeUndefined();
    // The finished window's end is the mark; the rest (the hour since) was compared after it.
    expect(third.cursor.checkedUntil).toBe(s.clock.t - 60_000);
    for (let i = 0; i < 250; i++) expect(s.provider.netCaptured(`pay_${i}`)).toBe(0);
  });
});
