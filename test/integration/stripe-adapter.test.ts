/**
 * The Stripe adapter and the reconciler against the provider simulator in process (Stripe's shapes,
 * amount rules, refunds that go pending and fail): issue 17's rows R7 and R8, and the rule that an error
 * raised before a request leaves is never an unclear provider outcome.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProviderSimulator, type ProviderSimulator } from '@idempotent-payments/provider-simulator';
import { createStripeProvider } from '../../functions/adapters/provider/stripe-provider';
import { CircuitBreaker } from '../../functions/core/circuit-breaker';
import { silentLogger } from '../../functions/core/ports';
import { ProviderError, type PaymentProvider } from '../../functions/core/ports/payment-provider';
import { PaymentProcessor } from '../../functions/core/processing/payment-processor';
import { Reconciler } from '../../functions/core/reconciler';
import { OUR_TAG } from '../helpers/fake-intent-provider';
import { FakeQueue, FakeRefundStore, FakeRepository, paymentFixture } from '../helpers/fakes';

const API_KEY = 'sk_test_adapter';
let sim: ProviderSimulator;
let provider: PaymentProvider;

beforeAll(async () => {
  sim = await startProviderSimulator({ port: 0, timeoutMs: 30_000, seed: 17 });
  provider = createStripeProvider({ apiKey: API_KEY, host: '127.0.0.1', port: sim.port, protocol: 'http', timeoutMs: 5000, tag: OUR_TAG } as Parameters<typeof createStripeProvider>[0]);
});

afterAll(async () => {
  await sim?.stop();
});

const newPaymentId = () => `pay_${randomUUID()}`;

/** The intent as Stripe stores it (its own amount units), read over HTTP. */
async function raw(intentId: string): Promise<{ amount: number; amount_received: number; currency: string; metadata: Record<string, string> }> {
  const res = await fetch(`${sim.url}/v1/payment_intents/${intentId}`, { headers: { authorization: `Bearer ${API_KEY}` } });
  return (await res.json()) as { amount: number; amount_received: number; currency: string; metadata: Record<string, string> };
}

const noPaymentProcessor = {
  process: async () => ({ kind: 'ignored', reason: 'not_found' }) as const,
  expire: async () => ({ kind: 'ignored', reason: 'not_found' }) as const,
};

function reconciler(refunds: FakeRefundStore) {
  return new Reconciler({
    store: new FakeRepository(),
    queue: new FakeQueue(),
    processor: noPaymentProcessor,
    provider,
    refunds,
    logger: silentLogger,
    config: { stuckAfterSeconds: 120, openDeadlineSeconds: 86_400, settleGraceMs: 0, providerWindowMinutes: 10, tag: OUR_TAG },
  } as ConstructorParameters<typeof Reconciler>[0]);
}

async function capturedOrphan(): Promise<{ paymentId: string; intentId: string }> {
  const paymentId = newPaymentId();
  const intent = await provider.createIntent({ paymentId, amountMinor: 2000, currency: 'USD' });
  await provider.confirmIntent(intent.id, { paymentId, attempt: 1, paymentMethod: 'tok_success' });
  return { paymentId, intentId: intent.id };
}

describe('issue 17 against the simulator', () => {
  it('R7: refunds are read with the charge expanded: a refunded capture is not refunded or counted again, and a refund that later fails is reported, not taken as done', async () => {
    const refunds = new FakeRefundStore();
    const done = await capturedOrphan();
    const r1 = await reconciler(refunds).run();
    expect(r1.refundsIssued).toBe(1);
    expect(sim.netCaptured(done.paymentId)).toBe(0);
    const r2 = await reconciler(refunds).run();
    expect(r2.refundsIssued).toBe(0);
    expect(r2.discrepancies.filter((d) => d.intentId === done.intentId)).toEqual([]);
    expect(sim.ledger(done.paymentId).filter((e) => e.status === 'refunded')).toHaveLength(1);

    // A refund that Stripe takes (pending) and that fails later: the money is still captured.
    sim.setFaults({ refundPendingMs: 300, refundFailureRate: 1 });
    const failing = await capturedOrphan();
    await reconciler(refunds).run();
    await new Promise((r) => setTimeout(r, 800));
    const r4 = await reconciler(refunds).run();
    sim.setFaults({});
    expect(r4.discrepancies.filter((d) => d.intentId === failing.intentId).map((d) => d.kind)).toEqual(['REFUND_FAILED']);
    expect(r4.refundsIssued).toBe(0);
    expect(sim.netCaptured(failing.paymentId)).toBe(2000);
  });

  it("R8: amounts reach Stripe in Stripe's units (ISK 500 is 50000, MGA 10 is 10, KWD 12.300 stays 12300) and come back in ours", async () => {
    const isk = await provider.createIntent({ paymentId: newPaymentId(), amountMinor: 500, currency: 'ISK' });
    expect((await raw(isk.id)).amount).toBe(50_000);
    expect(isk).toMatchObject({ amountMinor: 500, currency: 'ISK' });
    const mga = await provider.createIntent({ paymentId: newPaymentId(), amountMinor: 1000, currency: 'MGA' });
    expect((await raw(mga.id)).amount).toBe(10);
    expect(mga.amountMinor).toBe(1000);
    const kwd = await provider.createIntent({ paymentId: newPaymentId(), amountMinor: 12_300, currency: 'KWD' });
    expect((await raw(kwd.id)).amount).toBe(12_300);

    const paid = await provider.confirmIntent(isk.id, { paymentId: isk.paymentId, attempt: 1, paymentMethod: 'tok_success' });
    expect(paid).toMatchObject({ status: 'succeeded', amountMinor: 500, amountReceived: 500 });
    expect(sim.ledger(isk.paymentId)).toEqual([expect.objectContaining({ status: 'succeeded', amountMinor: 50_000, currency: 'ISK' })]);
  });

  it('an error the adapter raises before a request leaves is never an unknown outcome: a lone surrogate in metadata is refused without a request, and its payment fails instead of waiting', async () => {
    const paymentId = newPaymentId();
    const err = await provider.createIntent({ paymentId, amountMinor: 2000, currency: 'USD', metadata: { a: '\ud800x' } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({ kind: 'rejected', code: 'request_not_sent' });
    expect(sim.ledger(paymentId)).toEqual([]);

    const repo = new FakeRepository();
    repo.put(paymentFixture({ id: paymentId, amountMinor: 2000, currency: 'USD', metadata: { a: '\ud800x' } }));
    const processor = new PaymentProcessor({
      store: repo,
      provider,
      queue: new FakeQueue(),
      breaker: new CircuitBreaker('p', { failureRateThreshold: 0 }),
      config: { retryBaseSeconds: 1, retryCapSeconds: 60, leaseSeconds: 30, providerTimeoutMs: 5000 },
      logger: silentLogger,
    });
    await processor.process({ paymentId, reason: 'created' });
    expect(repo.items.get(paymentId)).toMatchObject({ status: 'failed', lastError: { retryable: false } });
  });
});

