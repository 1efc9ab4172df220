/**
 * Tenant refunds are counted like payments (Powertools metrics): made, replayed, refused for more than
 * what remains, and ended succeeded or failed by the provider. The counts are what the dashboard and the
 * RefundsFailed alarm read.
 */
import { describe, expect, it } from 'vitest';
import type { Metrics } from '../../functions/core/ports';
import { silentLogger } from '../../functions/core/ports';
import { RefundProcessor } from '../../functions/core/refund-processor';
import { RefundsService } from '../../functions/core/refunds-service';
import { FakeIntentProvider, OUR_TAG } from '../helpers/fake-intent-provider';
import { FakeClock, FakeQueue, FakeRefundStore, FakeRepository, FakeTenantRefundStore, paymentFixture } from '../helpers/fakes';

function setup() {
  const clock = new FakeClock();
  const counted: string[] = [];
  const metrics: Metrics = { count: (name) => void counted.push(name) };
  const payments = new FakeRepository();
  const provider = new FakeIntentProvider(() => clock.t);
  const intentId = provider.createForeignIntent({ paymentId: 'pay_m', ...OUR_TAG, amountMinor: 1000 });
  payments.put(paymentFixture({ id: 'pay_m', status: 'success', amountMinor: 1000, currency: 'USD', intentId }));
  const tenantRefunds = new FakeTenantRefundStore(payments);
  const service = new RefundsService({ payments, refunds: tenantRefunds, queue: new FakeQueue(), clock: clock.now, metrics, idempotencyTtlSeconds: 86_400, stuckAfterSeconds: 120 });
  // The worker's side: the refund records it follows (filled from what the API made).
  const records = new FakeRefundStore();
  const processor = new RefundProcessor({ refunds: records, provider, logger: silentLogger, metrics, clock: clock.now });
  const follow = async (id: string) => {
    const r = tenantRefunds.refunds.get(id)!;
    await records.create({ ...r, dueAt: clock.t });
    return processor.process(id);
  };
  return { service, payments, provider, processor, clock, follow, counted };
}

describe('refund metrics', () => {
  it('counts a refund made, its replay, a refusal over the remainder, and its end at the provider', async () => {
    const s = setup();
    const p = (await s.payments.get('pay_m'))!;
    const made = await s.service.create('tenant-1', p, { idempotencyKey: 'k1', amountMinor: 600 });
    expect(s.counted).toEqual(['RefundsCreated']);
    await s.service.create('tenant-1', p, { idempotencyKey: 'k1', amountMinor: 600 });
    expect(s.counted).toEqual(['RefundsCreated', 'RefundsReplayed']);
    await expect(s.service.create('tenant-1', (await s.payments.get('pay_m'))!, { idempotencyKey: 'k2', amountMinor: 500 })).rejects.toMatchObject({ code: 'REFUND_EXCEEDS_CAPTURED' });
    expect(s.counted).toEqual(['RefundsCreated', 'RefundsReplayed', 'RefundsExceedingCapture']);
    await expect(s.follow(made.refund.id)).resolves.toMatchObject({ kind: 'final', refund: { status: 'succeeded' } });
    expect(s.counted).toEqual(['RefundsCreated', 'RefundsReplayed', 'RefundsExceedingCapture', 'RefundsSucceeded']);
  });

  it('counts a refund the provider ends failed after pending', async () => {
    const s = setup();
    s.provider.refundBehaviour = () => 'pending';
    const made = await s.service.create('tenant-1', (await s.payments.get('pay_m'))!, { idempotencyKey: 'k1' });
    const first = await s.follow(made.refund.id);
    expect(first).toMatchObject({ kind: 'pending' });
    s.provider.endRefund((first as { refund: { providerRefundId: string } }).refund.providerRefundId, 'failed');
    s.clock.advance(60_000);
    await expect(s.processor.process(made.refund.id)).resolves.toMatchObject({ kind: 'final', refund: { status: 'failed' } });
    expect(s.counted).toEqual(['RefundsCreated', 'RefundsFailed']);
  });
});
