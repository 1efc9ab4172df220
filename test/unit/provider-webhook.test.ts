import type { APIGatewayProxyEvent } from 'aws-lambda';
import Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import { providerWebhookRoute } from '../../functions/api/provider-webhook';
import { CircuitBreaker } from '../../functions/core/circuit-breaker';
import type { Logger, Metrics } from '../../functions/core/ports';
import type { ProcessorConfig } from '../../functions/core/processing/context';
import { PaymentProcessor } from '../../functions/core/processing/payment-processor';
import { providerEventHandler } from '../../functions/core/provider-events';
import type { Refund } from '../../functions/core/refund';
import { publicApiHandler } from '../../functions/shared/http';
import { FakeIntentProvider, OUR_TAG } from '../helpers/fake-intent-provider';
import { FakeClock, FakeQueue, FakeRefundStore, FakeRepository, paymentFixture, T0 } from '../helpers/fakes';

const silent: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const SECRET = 'whsec_unit_test_secret';

function setup() {
  const payments = new FakeRepository();
  const refunds = new FakeRefundStore();
  const queue = new FakeQueue();
  const counted: Array<Record<string, string> | undefined> = [];
  const metrics: Metrics = { count: (_n, _v, d) => void counted.push(d) };
  const handle = providerEventHandler({ payments, refunds, queue, tag: OUR_TAG, logger: silent, metrics });
  const http = publicApiHandler(providerWebhookRoute({ secret: async () => SECRET, handle, logger: silent, metrics }));
  const post = async (body: string, headers: Record<string, string>, base64 = false) => {
    const event = {
      httpMethod: 'POST',
      resource: '/webhooks/provider',
      path: '/webhooks/provider',
      headers,
      body: base64 ? Buffer.from(body).toString('base64') : body,
      isBase64Encoded: base64,
      requestContext: { requestId: 'req-1' },
    } as unknown as APIGatewayProxyEvent;
    const res = await http(event);
    return { status: res.statusCode, body: JSON.parse(res.body) as Record<string, unknown> };
  };
  return { payments, refunds, queue, counted, post };
}

let seq = 0;
function intentEvent(type: string, metadata: Record<string, string>) {
  return JSON.stringify({
    id: `evt_${++seq}`,
    object: 'event',
    type,
    api_version: '2025-01-01',
    created: Math.floor(Date.now() / 1000),
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    data: { object: { id: 'pi_1', object: 'payment_intent', status: 'succeeded', metadata } },
  });
}

const ours = { payment_id: 'pay_1', intent_seq: '0', ...OUR_TAG };
const sign = (payload: string, over: { secret?: string; timestamp?: number } = {}) =>
  Stripe.webhooks.generateTestHeaderString({ payload, secret: over.secret ?? SECRET, ...(over.timestamp !== undefined ? { timestamp: over.timestamp } : {}) });

describe('POST /webhooks/provider: the Stripe signature', () => {
  it('a good signature over the exact bytes is 200 and queues a resolve-only message for our open payment', async () => {
    const s = setup();
    s.payments.put(paymentFixture({ status: 'retrying', attempt: 1 }));
    // Whitespace and key order that a JSON re-serialization would change: the signature is over these bytes.
    const body = intentEvent('payment_intent.succeeded', ours).replace('{', '{  ');
    const res = await s.post(body, { 'Stripe-Signature': sign(body), 'content-type': 'application/json' });
    expect(res).toMatchObject({ status: 200, body: { received: true, outcomes: ['resolve_payment'] } });
    expect(s.queue.sent).toEqual([{ message: { paymentId: 'pay_1', reason: 'provider_event', resolveOnly: true }, delaySeconds: 0 }]);
  });

  it('a base64-encoded body (API Gateway binary passthrough) is verified over its decoded bytes', async () => {
    const s = setup();
    s.payments.put(paymentFixture({ status: 'retrying', attempt: 1 }));
    const body = intentEvent('payment_intent.succeeded', ours);
    expect((await s.post(body, { 'stripe-signature': sign(body) }, true)).status).toBe(200);
    expect(s.queue.sent).toHaveLength(1);
  });

  const refused: Array<[string, (body: string) => Record<string, string>]> = [
    ['missing', () => ({})],
    ['signed with another secret', (b) => ({ 'Stripe-Signature': sign(b, { secret: 'whsec_someone_else' }) })],
    ['over other bytes', (b) => ({ 'Stripe-Signature': sign(`${b} `) })],
    ['stale (older than the 300 s tolerance)', (b) => ({ 'Stripe-Signature': sign(b, { timestamp: Math.floor(Date.now() / 1000) - 301 }) })],
    ['malformed', () => ({ 'Stripe-Signature': 'garbage' })],
  ];
  for (const [what, headers] of refused) {
    it(`a signature ${what} is 400 INVALID_SIGNATURE and nothing is read or queued`, async () => {
      const s = setup();
      s.payments.put(paymentFixture({ status: 'retrying', attempt: 1 }));
      let reads = 0;
      const get = s.payments.get.bind(s.payments);
      s.payments.get = (id: string) => {
        reads++;
        return get(id);
      };
      const body = intentEvent('payment_intent.succeeded', ours);
      const res = await s.post(body, headers(body));
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject({ error: { code: 'INVALID_SIGNATURE', retryable: false } });
      expect(s.queue.sent).toEqual([]);
      expect(reads).toBe(0);
      expect(s.counted).toEqual([{ outcome: 'bad_signature' }]);
    });
  }
});

describe('POST /webhooks/provider: which events queue a resolve', () => {
  const post = async (s: ReturnType<typeof setup>, body: string) => (await s.post(body, { 'Stripe-Signature': sign(body) })).body.outcomes;

  it("ignores intents of other integrations and of other stages, unknown and final payments, and unknown types (200, counted)", async () => {
    const s = setup();
    s.payments.put(paymentFixture({ id: 'pay_done', status: 'success', attempt: 1 }));
    s.payments.put(paymentFixture({ status: 'retrying', attempt: 1 }));
    expect(await post(s, intentEvent('payment_intent.succeeded', { payment_id: 'pay_1' }))).toEqual(['not_ours']);
    expect(await post(s, intentEvent('payment_intent.succeeded', { ...ours, stage: 'prod-other' }))).toEqual(['not_ours']);
    expect(await post(s, intentEvent('payment_intent.succeeded', { ...ours, payment_id: 'pay_unknown' }))).toEqual(['unknown_object']);
    expect(await post(s, intentEvent('payment_intent.succeeded', { ...ours, payment_id: 'pay_done' }))).toEqual(['final']);
    expect(await post(s, intentEvent('customer.created', ours))).toEqual(['unknown_type']);
    // A new intent has no outcome to resolve yet.
    expect(await post(s, intentEvent('payment_intent.created', ours))).toEqual(['unknown_type']);
    expect(s.queue.sent).toEqual([]);
    expect(s.counted.map((d) => d?.outcome)).toEqual(['not_ours', 'not_ours', 'unknown_object', 'final', 'unknown_type', 'unknown_type']);
  });

  it('a payment whose attempt is under way is resolved after a short grace, so its worker usually writes first', async () => {
    const s = setup();
    s.payments.put(paymentFixture({ status: 'processing', attempt: 1, leaseUntil: Date.now() + 30_000 }));
    expect(await post(s, intentEvent('payment_intent.succeeded', ours))).toEqual(['resolve_payment']);
    expect(s.queue.sent).toEqual([{ message: { paymentId: 'pay_1', reason: 'provider_event', resolveOnly: true }, delaySeconds: 2 }]);
  });

  it('a refund event for our pending refund queues that refund; a final one is ignored', async () => {
    const s = setup();
    const refund = { id: 'rf_1', status: 'pending', version: 1 } as unknown as Refund;
    s.refunds.items.set('rf_1', refund);
    s.refunds.items.set('rf_2', { ...refund, id: 'rf_2', status: 'succeeded' } as Refund);
    const refundEvent = (type: string, refundId: string) =>
      JSON.stringify({ id: `evt_${++seq}`, object: 'event', type, created: 1, data: { object: { id: 're_1', object: 'refund', status: 'succeeded', metadata: { refund_id: refundId, ...OUR_TAG } } } });
    expect(await post(s, refundEvent('refund.updated', 'rf_1'))).toEqual(['resolve_refund']);
    expect(await post(s, refundEvent('charge.refund.updated', 'rf_2'))).toEqual(['final']);
    expect(s.queue.sent.map((m) => m.message)).toEqual([{ refundId: 'rf_1', reason: 'provider_event' }]);
  });
});

// ---- The worker's side: a resolve-only message settles from the intent and claims nothing -------------

const CONFIG: ProcessorConfig = { retryBaseSeconds: 1, retryCapSeconds: 60, leaseSeconds: 30, providerTimeoutMs: 5000 };

async function processorWith(payment: Parameters<typeof paymentFixture>[0], intent: 'succeeded' | 'confirmable') {
  const clock = new FakeClock();
  const repo = new FakeRepository();
  const provider = new FakeIntentProvider(() => clock.t);
  const queue = new FakeQueue();
  const created = await provider.createIntent({ paymentId: 'pay_1', amountMinor: 1250, currency: 'EUR', metadata: {} });
  if (intent === 'succeeded') await provider.confirmIntent(created.id, { paymentId: 'pay_1', attempt: 1, paymentMethod: 'tok_success' });
  provider.calls.length = 0;
  repo.put(paymentFixture({ intentId: created.id, ...payment }));
  const breaker = new CircuitBreaker('test', { failureRateThreshold: 0, now: () => clock.t });
  const processor = new PaymentProcessor({ store: repo, provider, queue, breaker, config: CONFIG, clock: clock.now, logger: silent });
  return { processor, repo, provider, queue, stored: () => repo.items.get('pay_1')! };
}

const unknownOutcome = { code: 'TIMEOUT', message: 'x', retryable: true, timestamp: new Date(T0).toISOString(), details: { attempt: 1, outcome: 'unknown' } };
const resolveMessage = { paymentId: 'pay_1', reason: 'provider_event', resolveOnly: true } as const;

describe('PaymentProcessor: resolve-only messages (provider events)', () => {
  it('a processing payment whose worker is slow (live lease) is settled as soon as its intent shows succeeded', async () => {
    const s = await processorWith({ status: 'processing', attempt: 1, leaseUntil: T0 + 30_000 }, 'succeeded');
    await expect(s.processor.process(resolveMessage)).resolves.toMatchObject({ kind: 'settled', status: 'success', via: 'retrieve' });
    expect(s.provider.calls.map((c) => c.op)).toEqual(['retrieve']);
    expect(s.repo.history.map((h) => `${h.status}:${h.action}`)).toEqual(['success:charge_succeeded']);
  });

  it('with a live lease and an intent not charged yet, the attempt stays with its owner', async () => {
    const s = await processorWith({ status: 'processing', attempt: 1, leaseUntil: T0 + 30_000 }, 'confirmable');
    await expect(s.processor.process(resolveMessage)).resolves.toMatchObject({ kind: 'ignored', reason: 'leased' });
    expect(s.repo.history).toEqual([]);
  });

  it('a retrying payment whose attempt ended unclear is settled from the intent without a new confirm', async () => {
    const s = await processorWith({ status: 'retrying', attempt: 1, retryCount: 1, lastError: unknownOutcome }, 'succeeded');
    await expect(s.processor.process(resolveMessage)).resolves.toMatchObject({ kind: 'settled', status: 'success' });
    expect(s.provider.calls.map((c) => c.op)).not.toContain('confirm');
  });

  it('when the intent shows no charge, nothing is claimed and the scheduled retry keeps its time', async () => {
    const s = await processorWith({ status: 'retrying', attempt: 1, retryCount: 1, lastError: unknownOutcome, nextAttemptAt: T0 + 60_000 }, 'confirmable');
    await expect(s.processor.process(resolveMessage)).resolves.toMatchObject({ kind: 'ignored', reason: 'nothing_to_resolve' });
    expect(s.provider.calls.map((c) => c.op)).toEqual(['retrieve']);
    expect(s.stored()).toMatchObject({ status: 'retrying', attempt: 1, version: 1 });
    expect(s.queue.sent).toEqual([]);
  });

  it('a pending payment is not started by an event', async () => {
    const s = await processorWith({ status: 'pending' }, 'confirmable');
    await expect(s.processor.process(resolveMessage)).resolves.toMatchObject({ kind: 'ignored', reason: 'nothing_to_resolve' });
    expect(s.provider.calls).toEqual([]);
    expect(s.stored().version).toBe(1);
  });
});
