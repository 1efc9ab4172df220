import { randomUUID } from 'node:crypto';
import { DeleteMessageBatchCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { DeleteCommand, GetCommand, PutCommand, ScanCommand } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyPk, PaymentRepository } from '../../functions/adapters/dynamo/payment-repository';
import { SqsPaymentQueue } from '../../functions/adapters/sqs/payment-queue';
import { createPaymentRoute } from '../../functions/api/create-payment';
import { paymentQueriesRoute } from '../../functions/api/payment-queries';
import { paymentIdFor } from '../../functions/core/ids';
import type { Payment } from '../../functions/core/payment';
import { PaymentsService } from '../../functions/core/payments-service';
import { apiHandler } from '../../functions/shared/http';
import { startBackends, type Backends } from '../helpers/backends';
import { TEST_EPOCH } from '../helpers/clock';
import { testCursorSeal } from '../helpers/fakes';

let b: Backends;
let tables: { payments: string; idempotency: string };
let queueUrl: string;
// Relative to the real date: the keys written here must not lie behind it (see helpers/clock.ts).
let now = new Date(TEST_EPOCH);
let dynamoCalls = 0;
let dynamoCommands: string[] = [];
/** The create function's own clients: its role's grants are enforced (local stack IAM proxy). */
let fn: ReturnType<Backends['as']>;

function service() {
  const env = b.envOf('CreatePaymentFunction');
  const repo = new PaymentRepository(fn.doc, {
    payments: env.PAYMENTS_TABLE!,
    idempotency: env.IDEMPOTENCY_TABLE!,
    openPaymentsIndex: env.OPEN_PAYMENTS_INDEX!,
  });
  return new PaymentsService({
    store: repo,
    queue: new SqsPaymentQueue(fn.sqs, env.PAYMENTS_QUEUE_URL!),
    clock: () => now,
    idempotencyTtlSeconds: 86_400,
    maxRetries: 3,
    stuckAfterSeconds: 120,
  });
}

let create: ReturnType<typeof apiHandler>;
let queries: ReturnType<typeof apiHandler>;

function event(method: string, resource: string, opts: { body?: unknown; tenant?: string; path?: Record<string, string>; headers?: Record<string, string> } = {}) {
  return {
    httpMethod: method,
    resource,
    path: resource,
    headers: { 'content-type': 'application/json', ...opts.headers },
    pathParameters: opts.path ?? null,
    queryStringParameters: null,
    body: opts.body === undefined ? null : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body),
    isBase64Encoded: false,
    requestContext: { requestId: randomUUID(), identity: { apiKeyId: opts.tenant ?? 'tenant-1' } },
  } as unknown as APIGatewayProxyEvent;
}

const post = (body: unknown, tenant?: string, headers?: Record<string, string>) =>
  create(event('POST', '/api/payments/process', { body, tenant, headers }));

const request = (key: string, amount: number | string = 25.5) => ({
  idempotencyKey: key,
  amount,
  currency: 'USD',
  paymentMethod: { type: 'card', token: 'tok_success' },
  metadata: { orderId: key },
});

async function drainQueue(): Promise<Array<{ paymentId: string; reason: string }>> {
  const out: Array<{ paymentId: string; reason: string }> = [];
  for (;;) {
    const { Messages } = await b.sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
    if (!Messages?.length) return out;
    out.push(...Messages.map((m) => JSON.parse(m.Body!)));
    await b.sqs.send(
      new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries: Messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })) }),
    );
  }
}

async function paymentsWithKey(key: string): Promise<Payment[]> {
  const items: Payment[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    const res = await b.doc.send(
      new ScanCommand({ TableName: tables.payments, FilterExpression: 'idempotencyKey = :k', ExpressionAttributeValues: { ':k': key }, ExclusiveStartKey: start }),
    );
    items.push(...((res.Items ?? []) as Payment[]));
    start = res.LastEvaluatedKey;
  } while (start);
  return items;
}

beforeAll(async () => {
  b = await startBackends();
  const env = b.envOf('CreatePaymentFunction');
  tables = { payments: env.PAYMENTS_TABLE!, idempotency: env.IDEMPOTENCY_TABLE! };
  queueUrl = env.PAYMENTS_QUEUE_URL!;
  fn = b.as('CreatePaymentFunction');
  fn.dynamodb.middlewareStack.add(
    (next, context) => async (args) => {
      dynamoCalls++;
      dynamoCommands.push(String(context.commandName));
      return next(args);
    },
    { step: 'initialize', name: 'countCalls' },
  );
  const payments = service();
  create = apiHandler(createPaymentRoute({ payments, maxAmount: 1_000_000 }));
  const lister = { listByTenant: () => Promise.reject(new Error('listing is tested in list-payments.test.ts')) };
  queries = apiHandler(paymentQueriesRoute({ payments, lister, cursors: testCursorSeal(), maxAmount: 1_000_000 }));
});

afterAll(async () => {
  await b?.stop();
});

describe('POST /api/payments/process against DynamoDB Local', () => {
  it('creates a pending payment that carries its key, and one queue message, with one read and one conditional put', async () => {
    const key = `k-${randomUUID()}`;
    dynamoCommands = [];
    const res = await post(request(key, '25.50'));
    // One read (is there a payment for this key already?) and one conditional put of the payment, which is
    // the key's record too: no key item, no transaction.
    expect(dynamoCommands).toEqual(['GetItemCommand', 'PutItemCommand']);
    expect(res.statusCode).toBe(201);
    expect(res.headers?.['Idempotent-Replayed']).toBeUndefined();
    const body = JSON.parse(res.body);
    expect(body).toMatchObject({ idempotencyKey: key, status: 'pending', amount: 25.5, currency: 'USD', retryCount: 0, maxRetries: 3 });
    expect(body.id).toBe(body.paymentID);
    expect(body.paymentMethod.token).not.toContain('tok_success');
    const [stored] = await paymentsWithKey(key);
    expect(stored).toMatchObject({ id: body.id, status: 'pending', version: 1, amountMinor: 2550, tenantId: 'tenant-1' });
    expect(stored!.openShard).toMatch(/^open#\d\d$/);
    expect(stored!.requestHash).toMatch(/^[0-9a-f]{64}$/);
    expect(stored!.keyExpiresAt).toBe(Math.floor(Date.parse(stored!.createdAt) / 1000) + 86_400);
    const keyItem = await b.doc.send(new GetCommand({ TableName: tables.idempotency, Key: { pk: keyPk('tenant-1', key) }, ConsistentRead: true }));
    expect(keyItem.Item).toBeUndefined();
    expect(await drainQueue()).toEqual([{ paymentId: body.id, reason: 'created' }]);
  });

  it('replays the same payment in one DynamoDB call, with Idempotent-Replayed and no new message', async () => {
    const key = `k-${randomUUID()}`;
    const first = await post(request(key));
    await drainQueue();
    dynamoCalls = 0;
    const again = await post(request(key));
    expect(dynamoCalls).toBe(1);
    expect(again.statusCode).toBe(first.statusCode);
    expect(again.headers?.['Idempotent-Replayed']).toBe('true');
    expect(JSON.parse(again.body)).toEqual(JSON.parse(first.body));
    expect(await drainQueue()).toEqual([]);
  });

  it('rejects the same key with a different request with 422 and changes nothing', async () => {
    const key = `k-${randomUUID()}`;
    const first = JSON.parse((await post(request(key, 10))).body);
    const before = await paymentsWithKey(key);
    const res = await post(request(key, 11));
    expect(res.statusCode).toBe(422);
    const err = JSON.parse(res.body).error;
    expect(err).toMatchObject({ code: 'IDEMPOTENCY_KEY_MISMATCH', retryable: false, details: [{ field: 'idempotencyKey', paymentID: first.id }] });
    expect(err.requestId).toBeTruthy();
    expect(err.timestamp).toBeTruthy();
    expect(await paymentsWithKey(key)).toEqual(before);
  });

  it('200 concurrent identical requests create exactly one payment and one queue message', async () => {
    await drainQueue();
    const key = `k-${randomUUID()}`;
    const responses = await Promise.all(Array.from({ length: 200 }, () => post(request(key))));
    expect(responses.map((r) => r.statusCode)).toEqual(Array(200).fill(201));
    const ids = new Set(responses.map((r) => JSON.parse(r.body).id));
    expect(ids.size).toBe(1);
    expect(responses.filter((r) => r.headers?.['Idempotent-Replayed'] !== 'true')).toHaveLength(1);
    expect(await paymentsWithKey(key)).toHaveLength(1);
    const messages = await drainQueue();
    expect(messages).toEqual([{ paymentId: [...ids][0], reason: 'created' }]);
  });

  it('200 concurrent requests with one key and two amounts: one payment, the losers get 422', async () => {
    await drainQueue();
    const key = `k-${randomUUID()}`;
    const responses = await Promise.all(Array.from({ length: 200 }, (_, i) => post(request(key, i % 2 ? 10 : 20))));
    const stored = await paymentsWithKey(key);
    expect(stored).toHaveLength(1);
    const winnerAmount = stored[0]!.amountMinor / 100;
    for (const [i, r] of responses.entries()) {
      const amount = i % 2 ? 10 : 20;
      if (amount === winnerAmount) {
        expect(r.statusCode).toBe(201);
        expect(JSON.parse(r.body).id).toBe(stored[0]!.id);
      } else {
        expect(r.statusCode).toBe(422);
        expect(JSON.parse(r.body).error.code).toBe('IDEMPOTENCY_KEY_MISMATCH');
      }
    }
    expect(await drainQueue()).toHaveLength(1);
  });

  it('100 concurrent reuses of an expired key with two amounts (the transaction path): one new payment, the losers get 422', async () => {
    const key = `k-${randomUUID()}`;
    const saved = now;
    try {
      expect((await post(request(key, 5))).statusCode).toBe(201);
      await drainQueue();
      now = new Date(saved.getTime() + 86_400_000 + 1000);
      const responses = await Promise.all(Array.from({ length: 100 }, (_, i) => post(request(key, i % 2 ? 10 : 20))));
      const reused = (await paymentsWithKey(key)).filter((p) => p.generation > 0);
      expect(reused).toHaveLength(1);
      expect(reused[0]!.generation).toBe(1);
      const winnerAmount = reused[0]!.amountMinor / 100;
      for (const [i, r] of responses.entries()) {
        if ((i % 2 ? 10 : 20) === winnerAmount) {
          expect(r.statusCode, r.body).toBe(201);
          expect(JSON.parse(r.body).id).toBe(reused[0]!.id);
        } else {
          expect(r.statusCode, r.body).toBe(422);
          expect(JSON.parse(r.body).error.code).toBe('IDEMPOTENCY_KEY_MISMATCH');
        }
      }
      expect(await drainQueue()).toHaveLength(1);
    } finally {
      now = saved;
    }
  });

  it('scopes keys to the tenant: same key, two tenants, two payments, no cross-tenant reads', async () => {
    const key = `k-${randomUUID()}`;
    const a = JSON.parse((await post(request(key), 'tenant-1')).body);
    const c = JSON.parse((await post(request(key), 'tenant-2')).body);
    expect(a.id).not.toBe(c.id);
    expect(await paymentsWithKey(key)).toHaveLength(2);
    const cross = await queries(event('GET', '/api/payments/{paymentID}', { tenant: 'tenant-2', path: { paymentID: a.id } }));
    expect(cross.statusCode).toBe(404);
    expect(JSON.parse(cross.body).error.code).toBe('PAYMENT_NOT_FOUND');
    const own = await queries(event('GET', '/api/payments/{paymentID}', { tenant: 'tenant-1', path: { paymentID: a.id } }));
    expect(JSON.parse(own.body).id).toBe(a.id);
    const crossKey = await queries(event('GET', '/api/payments/key/{idempotencyKey}', { tenant: 'tenant-2', path: { idempotencyKey: key } }));
    expect(JSON.parse(crossKey.body).paymentID).toBe(c.id);
  });

  it('treats an expired key as absent before TTL deletes it', async () => {
    const key = `k-${randomUUID()}`;
    const saved = now;
    try {
      const first = JSON.parse((await post(request(key, 10))).body);
      now = new Date(saved.getTime() + 86_400_000 + 1000);
      // A different request is fine once the key has expired: it is a new payment.
      const second = await post(request(key, 12));
      expect(second.statusCode).toBe(201);
      expect(second.headers?.['Idempotent-Replayed']).toBeUndefined();
      const secondBody = JSON.parse(second.body);
      expect(secondBody.id).not.toBe(first.id);
      // The renewed key now replays the new payment, and its mismatch check uses the new request.
      const replay = await post(request(key, 12));
      expect(replay.headers?.['Idempotent-Replayed']).toBe('true');
      expect(JSON.parse(replay.body).id).toBe(secondBody.id);
      expect((await post(request(key, 10))).statusCode).toBe(422);
      const stored = await paymentsWithKey(key);
      expect(stored.map((p) => p.generation).sort()).toEqual([0, 1]);
      const record = JSON.parse((await queries(event('GET', '/api/payments/key/{idempotencyKey}', { path: { idempotencyKey: key } }))).body);
      expect(record.paymentID).toBe(secondBody.id);
    } finally {
      now = saved;
    }
  });

  it('reuses an expired key any number of times: each reuse takes the next generation (no 503 after five)', async () => {
    const key = `k-${randomUUID()}`;
    const saved = now;
    try {
      const ids: string[] = [];
      for (let i = 0; i < 8; i++) {
        now = new Date(saved.getTime() + i * (86_400_000 + 1000));
        const res = await post(request(key, 10 + i));
        expect(res.statusCode, res.body).toBe(201);
        ids.push(JSON.parse(res.body).id);
      }
      expect(new Set(ids).size).toBe(8);
      expect((await paymentsWithKey(key)).map((p) => p.generation).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    } finally {
      now = saved;
    }
  });

  it('keeps reusing an expired key after TTL deleted its record: the next generation comes from the payments', async () => {
    const key = `k-${randomUUID()}`;
    const saved = now;
    try {
      for (let i = 0; i < 9; i++) {
        now = new Date(saved.getTime() + i * (86_400_000 + 1000));
        // DynamoDB deletes an expired record some time after it expired (here: at once).
        await b.doc.send(new DeleteCommand({ TableName: tables.idempotency, Key: { pk: keyPk('tenant-1', key) } }));
        const res = await post(request(key, 10 + i));
        expect(res.statusCode, res.body).toBe(201);
        expect(JSON.parse(res.body).id).toBe(paymentIdFor('tenant-1', key, i));
      }
    } finally {
      now = saved;
    }
  });

  it('a resent create transaction (lost response) is recognised by its ClientRequestToken as the same write', async () => {
    const env = b.envOf('CreatePaymentFunction');
    const repo = new PaymentRepository(b.doc, { payments: env.PAYMENTS_TABLE!, idempotency: env.IDEMPOTENCY_TABLE!, openPaymentsIndex: env.OPEN_PAYMENTS_INDEX! });
    const { payment: model } = await service().create('tenant-token', { idempotencyKey: `k-${randomUUID()}`, amountMinor: 100, currency: 'USD', paymentMethod: { type: 'card', token: 'tok_success' }, metadata: {} });
    const key = `k-${randomUUID()}`;
    const payment = { ...model, id: paymentIdFor('tenant-token', key, 0), idempotencyKey: key };
    const record = { tenantId: 'tenant-token', idempotencyKey: key, paymentId: payment.id, generation: 0, requestHash: model.requestHash, createdAt: now.toISOString(), expiresAt: Math.floor(now.getTime() / 1000) + 3600 };
    const nowSeconds = Math.floor(now.getTime() / 1000);
    expect(await repo.insertWithKey(payment, record, nowSeconds, 'write-1')).toEqual({ kind: 'created' });
    // The same write sent again (its response was lost): DynamoDB answers success for the same token.
    expect(await repo.insertWithKey(payment, record, nowSeconds, 'write-1')).toEqual({ kind: 'created' });
    // Another call with the identical request is evaluated and meets the key it holds.
    const other = await repo.insertWithKey(payment, record, nowSeconds, 'write-2');
    expect(other).toMatchObject({ kind: 'conflict', key: { paymentId: payment.id } });
  });

  it('serves the payment, its status and its key record', async () => {
    const key = `k-${randomUUID()}`;
    const created = JSON.parse((await post(request(key, '99.99'))).body);
    const get = await queries(event('GET', '/api/payments/{paymentID}', { path: { paymentID: created.id } }));
    expect(get.statusCode).toBe(200);
    expect(JSON.parse(get.body)).toEqual(created);
    const status = JSON.parse((await queries(event('GET', '/api/payments/{paymentID}/status', { path: { paymentID: created.id } }))).body);
    expect(status).toMatchObject({ paymentID: created.id, status: 'pending', retryCount: 0, maxRetries: 3 });
    const rec = JSON.parse((await queries(event('GET', '/api/payments/key/{idempotencyKey}', { path: { idempotencyKey: key } }))).body);
    expect(rec).toMatchObject({ key, paymentID: created.id, status: 'pending' });
    expect(rec.requestHash).toMatch(/^[0-9a-f]{64}$/);
    expect(Date.parse(rec.expiresAt) - Date.parse(rec.createdAt)).toBe(86_400_000);
    const missing = await queries(event('GET', '/api/payments/key/{idempotencyKey}', { path: { idempotencyKey: 'never-used' } }));
    expect(missing.statusCode).toBe(404);
  });

  it('validate-key tells free, matching and mismatching keys apart without creating anything', async () => {
    const key = `k-${randomUUID()}`;
    const validate = async (body: unknown) => JSON.parse((await queries(event('POST', '/api/payments/validate-key', { body }))).body);
    expect(await validate({ idempotencyKey: key })).toMatchObject({ status: 'available', valid: true });
    expect(await validate(request(key))).toMatchObject({ status: 'available', valid: true });
    expect(await paymentsWithKey(key)).toHaveLength(0);
    const created = JSON.parse((await post(request(key))).body);
    expect(await validate({ idempotencyKey: key })).toMatchObject({ status: 'in_use', paymentID: created.id });
    expect(await validate(request(key))).toMatchObject({ status: 'in_use_matching', valid: true, paymentID: created.id });
    expect(await validate(request(key, 1))).toMatchObject({ status: 'in_use_mismatch', valid: false });
    expect(await paymentsWithKey(key)).toHaveLength(1);
  });

  it('accepts the key from the Idempotency-Key header and rejects a conflicting body key', async () => {
    const key = `k-${randomUUID()}`;
    const { idempotencyKey: _omit, ...noKey } = request(key);
    const res = await post(noKey, undefined, { 'Idempotency-Key': key });
    expect(res.statusCode).toBe(201);
    expect(JSON.parse(res.body).idempotencyKey).toBe(key);
    const conflict = await post(request(key), undefined, { 'Idempotency-Key': `${key}-other` });
    expect(conflict.statusCode).toBe(400);
    expect(JSON.parse(conflict.body).error.code).toBe('IDEMPOTENCY_KEY_CONFLICT');
  });
});

describe('DynamoDB Local TTL and the test clock', () => {
  // Why this file's clock starts at the real date: DynamoDB Local 3.3 deletes items whose TTL is behind
  // its own clock (a sweep about every 10 s). Under `npm run test:clock` (faketime) this also proves the
  // emulator's clock moved with Node's: an item behind Node's clock but ahead of the real date is deleted.
  it('deletes a key whose expiresAt is behind the clock and keeps one ahead of it', async () => {
    const nowSeconds = Math.floor(Date.now() / 1000);
    const behind = { pk: `ttl-test#${randomUUID()}`, expiresAt: nowSeconds - 3600 };
    const ahead = { pk: `ttl-test#${randomUUID()}`, expiresAt: nowSeconds + 3600 };
    for (const item of [behind, ahead]) await b.doc.send(new PutCommand({ TableName: tables.idempotency, Item: item }));
    const exists = async (pk: string) => (await b.doc.send(new GetCommand({ TableName: tables.idempotency, Key: { pk }, ConsistentRead: true }))).Item !== undefined;
    const deadline = Date.now() + 45_000;
    while ((await exists(behind.pk)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500));
    expect(await exists(behind.pk)).toBe(false);
    expect(await exists(ahead.pk)).toBe(true);
  }, 60_000);
});
