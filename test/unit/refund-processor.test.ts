/**
 * A refund the service owes reaches a final state at the provider and money goes back at most once,
 * whatever the provider answers: unclear answers, 5xx saved under the key (and replayed for 24 h),
 * refunds made before a 5xx, pending refunds that fail, two processors at once. The verdict is the
 * fake provider's ledger and the stored refund record.
 */
import { describe, expect, it } from 'vitest';
import type { Metrics } from '../../functions/core/ports';
import { silentLogger } from '../../functions/core/ports';
import { ProviderError, type PaymentProvider } from '../../functions/core/ports/payment-provider';
import { newRefund, unaccountedRefundId } from '../../functions/core/refund';
import { RefundProcessor } from '../../functions/core/refund-processor';
import { FakeIntentProvider, OUR_TAG } from '../helpers/fake-intent-provider';
import { FakeClock, FakeRefundStore } from '../helpers/fakes';

async function setup(provider?: (p: FakeIntentProvider) => Pick<PaymentProvider, 'refund' | 'retrieveRefund' | 'listRefunds'>) {
  const clock = new FakeClock();
  const fake = new FakeIntentProvider(() => clock.t);
  const refunds = new FakeRefundStore();
  const counted: string[] = [];
  const metrics: Metrics = { count: (name) => void counted.push(name) };
  const processor = new RefundProcessor({ refunds, provider: provider ? provider(fake) : fake, logger: silentLogger, metrics, clock: clock.now });
  const intentId = fake.createForeignIntent({ paymentId: 'pay_1', ...OUR_TAG, amountMinor: 900 });
  const id = unaccountedRefundId(intentId);
  // A partial refund (as a tenant's will be): the provider would take a second one, so only our own
  // discipline keeps it from happening twice.
  await refunds.create(newRefund({ id, kind: 'unaccounted_capture', paymentId: 'pay_1', intentId, amountMinor: 400, currency: 'USD', reason: 'test' }, clock.now()));
  const refunded = () => fake.ledger.filter((e) => e.status === 'refunded');
  const stored = () => refunds.items.get(id)!;
  return { clock, fake, refunds, processor, intentId, id, refunded, stored, counted };
}

describe('RefundProcessor', () => {
  it('sends the refund under a key from the record, with the record id in its metadata, and ends succeeded', async () => {
    const s = await setup();
    await expect(s.processor.process(s.id)).resolves.toMatchObject({ kind: 'final', refund: { status: 'succeeded', sends: 1 } });
    expect(s.fake.calls.filter((c) => c.op === 'refund').map((c) => c.key)).toEqual([`refund-${s.id}`]);
    expect([...s.fake.refunds.values()]).toEqual([expect.objectContaining({ refundId: s.id, status: 'succeeded' })]);
    expect(s.stored()).toMatchObject({ status: 'succeeded', providerRefundId: 're_2' });
    expect(s.stored().openShard).toBeUndefined();
    expect(s.refunded()).toHaveLength(1);
  });

  it('a refund made and then answered with a 5xx is found on the intent and adopted, never sent again', async () => {
    const s = await setup();
    s.fake.refundBehaviour = (_r, n) => (n === 0 ? 'commit_then_error' : 'ok');
    await expect(s.processor.process(s.id)).resolves.toMatchObject({ kind: 'pending', refund: { sends: 1, lastError: { code: 'HTTP_503' } } });
    s.clock.advance(60_000);
    await expect(s.processor.process(s.id)).resolves.toMatchObject({ kind: 'final', refund: { status: 'succeeded' } });
    expect(s.fake.count('refund')).toBe(1);
    expect(s.refunded()).toHaveLength(1);
  });

  it('a 5xx saved under the key (replayed for 24 h) with no refund made moves to the next key generation, after checking the intent', async () => {
    const s = await setup();
    s.fake.refundBehaviour = (_r, n) => (n === 0 ? 'error' : 'ok');
    await s.processor.process(s.id);
    s.clock.advance(60_000);
    await expect(s.processor.process(s.id)).resolves.toMatchObject({ kind: 'final', refund: { status: 'succeeded', keyGeneration: 1 } });
    const keys = s.fake.calls.filter((c) => c.op === 'refund').map((c) => c.key);
    expect(keys).toEqual([`refund-${s.id}`, `refund-${s.id}`, `refund-${s.id}-k1`]);
    // The intent's refunds were read before any re-send.
    expect(s.fake.count('list_refunds')).toBeGreaterThanOrEqual(2);
    expect(s.refunded()).toHaveLength(1);
  });

  it('an unclear answer (timeout) is sent again under the same key; a refund it made is adopted', async () => {
    const s = await setup((fake) => ({
      refund: async (req) => {
        const r = await fake.refund(req);
        if (fake.count('refund') === 1) throw new ProviderError('unknown', 'TIMEOUT', 'no answer in time');
        return r;
      },
      retrieveRefund: (id) => fake.retrieveRefund(id),
      listRefunds: (id) => fake.listRefunds(id),
    }));
    await expect(s.processor.process(s.id)).resolves.toMatchObject({ kind: 'pending', refund: { sends: 1, keyGeneration: 0 } });
    await expect(s.processor.process(s.id)).resolves.toMatchObject({ kind: 'final', refund: { status: 'succeeded', keyGeneration: 0 } });
    expect(s.refunded()).toHaveLength(1);
  });

  it('a pending refund is followed until the provider ends it; a failed one is final, reported, and the money stays captured', async () => {
    const s = await setup();
    s.fake.refundBehaviour = () => 'pending';
    const first = await s.processor.process(s.id);
    expect(first).toMatchObject({ kind: 'pending', refund: { providerStatus: 'pending', providerRefundId: expect.any(String) } });
    expect(s.stored().dueAt).toBeGreaterThan(s.clock.t);
    s.fake.endRefund(s.stored().providerRefundId!, 'failed');
    s.clock.advance(60_000);
    await expect(s.processor.process(s.id)).resolves.toMatchObject({ kind: 'final', refund: { status: 'failed', failureReason: 'failed' } });
    expect(s.counted).toEqual(['RefundsFailed']);
    expect(s.fake.netOfIntent(s.intentId)).toBe(900);
    expect(s.fake.count('refund')).toBe(1);
  });

  it('two processors at once: one refund, the other loses the race on the record', async () => {
    const s = await setup();
    const other = new RefundProcessor({ refunds: s.refunds, provider: s.fake, logger: silentLogger, clock: s.clock.now });
    const record = s.stored();
    const results = await Promise.all([s.processor.process(structuredClone(record)), other.process(structuredClone(record))]);
    expect(results.map((r) => r.kind).sort()).toEqual(['final', 'lost_race']);
    expect(s.refunded()).toHaveLength(1);
  });

  it('an intent with nothing left to refund (refunded elsewhere) ends the record failed, and nothing more is sent', async () => {
    const s = await setup();
    await s.fake.refund({ refundId: 'rf_dashboard', keyGeneration: 0, intentId: s.intentId, paymentId: 'pay_1', amountMinor: 700, currency: 'USD', reason: 'by hand' });
    await expect(s.processor.process(s.id)).resolves.toMatchObject({ kind: 'final', refund: { status: 'failed', failureReason: 'amount_too_large' } });
    expect(s.refunded()).toHaveLength(1);
  });
});
