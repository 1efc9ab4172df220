/**
 * Tenant refunds against DynamoDB Local and the queue emulator, through the refunds function's own role:
 * the one-transaction bound (pending + succeeded refunds never exceed the capture under concurrency),
 * replays and mismatches, a failed refund giving its amount back exactly once, and each refund status
 * change written as a new version of its payment (the payment's audit chain is built from those).
 */
import { randomUUID } from 'node:crypto';
import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PaymentRepository } from '../../functions/adapters/dynamo/payment-repository';
import { RefundRepository } from '../../functions/adapters/dynamo/refund-repository';
import { SqsPaymentQueue } from '../../functions/adapters/sqs/payment-queue';
import { refundsRoute } from '../../functions/api/refunds-api';
import type { Payment } from '../../functions/core/payment';
import type { Refund } from '../../functions/core/refund';
import { RefundsService } from '../../functions/core/refunds-service';
import { apiHandler } from '../../functions/shared/http';
import { startBackends, type Backends } from '../helpers/backends';
import { TEST_EPOCH } from '../helpers/clock';
import { paymentFixture } from '../helpers/fakes';

let b: Backends;
let handler: ReturnType<typeof apiHandler>;
let repo: RefundRepository;
let paymentsTable: string;
const now = new Date(TEST_EPOCH);

function event(method: string, paymentId: string, opts: { body?: unknown; key?: string; tenant?: string } = {}) {
  return {
    httpMethod: method,
    resource: '/api/payments/{paymentID}/refunds',
    path: `/api/payments/${paymentId}/refunds`,
    headers: { 'content-type': 'application/json', ...(opts.key !== undefined ? { 'Idempotency-Key': opts.key } : {}) },
    pathParameters: { paymentID: paymentId },
    queryStringParameters: null,
    body: opts.body === undefined ? null : JSON.stringify(opts.body),
    isBase64Encoded: false,
    requestContext: { requestId: randomUUID(), identity: { apiKeyId: opts.tenant ?? 'tenant-1' } },
  } as unknown as APIGatewayProxyEvent;
}

const refund = (paymentId: string, key: string | undefined, body: unknown = {}, tenant?: string) => handler(event('POST', paymentId, { body, key, tenant }));

async function seedPayment(over: Partial<Payment> = {}): Promise<Payment> {
  const id = `pay_${randomUUID().replace(/-/g, '')}`;
  const p = paymentFixture({ id, status: 'success', amountMinor: 1000, currency: 'USD', intentId: `pi_${id}`, openShard: undefined, dueAt: undefined, ...over });
  const { openShard: _s, dueAt: _d, ...item } = p;
  await b.doc.send(new PutCommand({ TableName: paymentsTable, Item: item }));
  return p;
}

const stored = async (id: string) => (await b.doc.send(new GetCommand({ TableName: paymentsTable, Key: { id }, ConsistentRead: true }))).Item as Payment;

beforeAll(async () => {
  b = await startBackends();
  const env = b.envOf('RefundsApiFunction');
  paymentsTable = env.PAYMENTS_TABLE!;
  const fn = b.as('RefundsApiFunction');
  repo = new RefundRepository(fn.doc, {
    refunds: env.REFUNDS_TABLE!,
    openRefundsIndex: 'open-refunds',
    payments: env.PAYMENTS_TABLE!,
    idempotency: env.IDEMPOTENCY_TABLE!,
    byPaymentIndex: env.REFUNDS_BY_PAYMENT_INDEX!,
  });
  const service = new RefundsService({
    payments: new PaymentRepository(fn.doc, { payments: env.PAYMENTS_TABLE!, idempotency: env.IDEMPOTENCY_TABLE!, openPaymentsIndex: 'open-payments' }),
    refunds: repo,
    queue: new SqsPaymentQueue(fn.sqs, env.PAYMENTS_QUEUE_URL!),
    clock: () => now,
    idempotencyTtlSeconds: 86_400,
    stuckAfterSeconds: 120,
  });
  handler = apiHandler(refundsRoute({ refunds: service, maxAmount: 1_000_000 }), { identity: () => ({ principals: undefined }) });
}, 120_000);

afterAll(async () => {
  await b?.stop();
});

describe('tenant refunds on DynamoDB Local', () => {
  it('100 concurrent refunds of 1.00 with distinct keys on a 10.00 payment: exactly 10 accepted, the rest REFUND_EXCEEDS_CAPTURED', async () => {
    const p = await seedPayment();
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => refund(p.id, `k-${i}`, { amount: 1 })));
    const codes = results.map((r) => (r.statusCode === 201 ? 'accepted' : JSON.parse(r.body).error.code));
    expect(codes.filter((c) => c === 'accepted')).toHaveLength(10);
    expect(codes.filter((c) => c !== 'accepted').every((c) => c === 'REFUND_EXCEEDS_CAPTURED')).toBe(true);
    expect((await stored(p.id)).amountRefundedMinor).toBe(1000);
    const list = JSON.parse((await handler(event('GET', p.id))).body);
    expect(list.items).toHaveLength(10);
    expect(list.items.reduce((n: number, r: { amountMinor: number }) => n + r.amountMinor, 0)).toBe(1000);
    // Each accepted refund is one new payment version (audited in the payment's chain), none for a refused one.
    expect((await stored(p.id)).version).toBe(p.version + 10);
    expect((await stored(p.id)).lastChange).toMatchObject({ action: 'refund_requested', actor: 'api:tenant-1' });
  }, 120_000);

  it('no amount refunds what remains; the same key and body replays, another body is 422, no key is 400', async () => {
    const p = await seedPayment();
    const first = await refund(p.id, 'part', { amount: '2.50', reason: 'damaged' });
    expect(first.statusCode).toBe(201);
    expect(JSON.parse(first.body)).toMatchObject({ paymentID: p.id, amount: 2.5, amountMinor: 250, currency: 'USD', status: 'pending', reason: 'damaged', version: 1 });
    const rest = await refund(p.id, 'rest');
    expect(rest.statusCode).toBe(201);
    expect(JSON.parse(rest.body).amountMinor).toBe(750);
    // Nothing left: the full refund's replay still answers with its refund, a new key is refused.
    const replay = await refund(p.id, 'rest');
    expect(replay.statusCode).toBe(201);
    expect(replay.headers?.['Idempotent-Replayed']).toBe('true');
    expect(JSON.parse(replay.body).id).toBe(JSON.parse(rest.body).id);
    expect(JSON.parse((await refund(p.id, 'part', { amount: '2.50', reason: 'damaged' })).body).id).toBe(JSON.parse(first.body).id);
    const mismatch = await refund(p.id, 'part', { amount: '2.00' });
    expect(mismatch.statusCode).toBe(422);
    // It names the header the key came in and what a new key is for (not the create's body field).
    expect(JSON.parse(mismatch.body).error).toMatchObject({ code: 'IDEMPOTENCY_KEY_MISMATCH', message: expect.stringMatching(/new key for a new refund$/), details: [{ field: 'Idempotency-Key' }] });
    const none = await refund(p.id, 'more', { amount: '0.01' });
    expect(none.statusCode).toBe(409);
    expect(JSON.parse(none.body).error.code).toBe('REFUND_EXCEEDS_CAPTURED');
    const noKey = await refund(p.id, undefined, { amount: 1 });
    expect(noKey.statusCode).toBe(400);
    expect(JSON.parse(noKey.body).error.code).toBe('IDEMPOTENCY_KEY_REQUIRED');
    expect((await stored(p.id)).amountRefundedMinor).toBe(1000);
  }, 60_000);

  it("another tenant's payment is 404; a payment that is not success is 409 INVALID_STATE_TRANSITION; amounts are checked per currency", async () => {
    const p = await seedPayment();
    expect((await refund(p.id, 'x', { amount: 1 }, 'tenant-2')).statusCode).toBe(404);
    const open = await seedPayment({ status: 'retrying' });
    const r = await refund(open.id, 'x', { amount: 1 });
    expect(r.statusCode).toBe(409);
    expect(JSON.parse(r.body).error.code).toBe('INVALID_STATE_TRANSITION');
    const jpy = await seedPayment({ currency: 'JPY', amountMinor: 500 });
    expect(JSON.parse((await refund(jpy.id, 'y', { amount: '1.5' })).body).error.code).toBe('AMOUNT_PRECISION_EXCEEDED');
    expect(JSON.parse((await refund(p.id, 'z', { amount: -1 })).body).error.code).toBe('INVALID_AMOUNT');
  }, 60_000);

  it("each status change of a refund is a new version of its payment, naming the refund (what the payment's audit chain is built from)", async () => {
    const p = await seedPayment();
    const made = JSON.parse((await refund(p.id, 'audited', { amount: 3, reason: 'late delivery' })).body);
    expect(await stored(p.id)).toMatchObject({
      version: p.version + 1,
      status: 'success',
      amountRefundedMinor: 300,
      lastChange: { action: 'refund_requested', actor: 'api:tenant-1', reason: `refund ${made.id} of 300 USD minor units: late delivery` },
    });
    // A replay makes nothing, so no version either.
    await refund(p.id, 'audited', { amount: 3, reason: 'late delivery' });
    expect((await stored(p.id)).version).toBe(p.version + 1);
    const wenv = b.envOf('PaymentWorkerFunction');
    const worker = new RefundRepository(b.as('PaymentWorkerFunction').doc, { refunds: wenv.REFUNDS_TABLE!, openRefundsIndex: 'open-refunds', payments: wenv.PAYMENTS_TABLE! });
    const pending = (await worker.get(made.id)) as Refund;
    // Bookkeeping while pending (a send counted) stays on the refund record.
    const sent = await worker.update(pending, { sends: 1, updatedAt: now.toISOString() });
    expect((await stored(p.id)).version).toBe(p.version + 1);
    const done = await worker.update(sent, { status: 'succeeded', providerRefundId: 're_1', updatedAt: now.toISOString() });
    expect(done.status).toBe('succeeded');
    expect(await stored(p.id)).toMatchObject({
      version: p.version + 2,
      amountRefundedMinor: 300,
      lastChange: { action: 'refund_succeeded', actor: 'refund-processor', reason: `refund ${made.id} of 300 USD minor units succeeded at the provider` },
    });
    // A stale second writer changes neither the refund nor the payment.
    await expect(worker.update(sent, { status: 'succeeded', updatedAt: now.toISOString() })).rejects.toThrow();
    expect((await stored(p.id)).version).toBe(p.version + 2);
  }, 60_000);

  it('a refund the provider ends failed gives its amount back to the payment, exactly once', async () => {
    const p = await seedPayment();
    const made = JSON.parse((await refund(p.id, 'to-fail', { amount: 4 })).body);
    expect((await stored(p.id)).amountRefundedMinor).toBe(400);
    // The worker moves refunds on: with its role, so the give-back needs only what the worker holds.
    const wenv = b.envOf('PaymentWorkerFunction');
    const worker = new RefundRepository(b.as('PaymentWorkerFunction').doc, { refunds: wenv.REFUNDS_TABLE!, openRefundsIndex: 'open-refunds', payments: wenv.PAYMENTS_TABLE! });
    const r = (await worker.get(made.id)) as Refund;
    const failed = await worker.update(r, { status: 'failed', failureReason: 'insufficient_funds', updatedAt: now.toISOString() });
    expect(failed.status).toBe('failed');
    // The give-back is a new payment version that names the refund: the audit trail tells it.
    expect(await stored(p.id)).toMatchObject({
      amountRefundedMinor: 0,
      version: p.version + 2,
      updatedAt: now.toISOString(),
      lastChange: { action: 'refund_failed', actor: 'refund-processor', reason: `refund ${made.id} of 400 USD minor units failed at the provider: insufficient_funds` },
    });
    // A second writer that read the pending refund loses: the amount does not come back twice.
    await expect(worker.update(r, { status: 'failed', updatedAt: now.toISOString() })).rejects.toThrow();
    expect(await stored(p.id)).toMatchObject({ amountRefundedMinor: 0, version: p.version + 2 });
    // The remainder is usable again.
    expect((await refund(p.id, 'again', { amount: 10 })).statusCode).toBe(201);
  }, 60_000);
});
