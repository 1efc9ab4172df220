/**
 * Audit trail against DynamoDB Local, tables created from the synthesized template (run
 * `npx cdk synth -c stage=dev --quiet` first). Payments are written with the real PaymentRepository;
 * stream events are built from the stored images exactly as Lambda delivers them and fed to the
 * stream handler. With AWS_ENDPOINT_URL_DYNAMODB set, that endpoint is used instead of starting one.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import {
  CreateTableCommand,
  DynamoDBClient,
  GetItemCommand,
  ScanCommand,
  UpdateItemCommand,
  type AttributeValue,
} from '@aws-sdk/client-dynamodb';
import { BatchWriteCommand, DynamoDBDocumentClient, type BatchWriteCommandOutput } from '@aws-sdk/lib-dynamodb';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import type { APIGatewayProxyEvent, DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSynthesizedStack, resourcesOfType, type RunningEmulator, startDynamoDbLocal, tableInput } from '@idempotent-payments/local-stack';
import { AuditRepository, verifyPaymentAudit } from '../../functions/adapters/dynamo/audit-repository';
import { PaymentRepository, openShardFor } from '../../functions/adapters/dynamo/payment-repository';
import { auditApiRoute } from '../../functions/api/audit-api';
import { createAuditStreamHandler } from '../../functions/audit/audit-stream';
import { entryFromImages, entryKeyOf, GENESIS_HASH, type AuditEntry, type PaymentAuditRef } from '../../functions/core/audit';
import type { Payment, PaymentStatus } from '../../functions/core/payment';
import { apiHandler } from '../../functions/shared/http';
import { DAY_MS, HOUR_MS, isoAt, TEST_EPOCH } from '../helpers/clock';
import { testCursorSeal } from '../helpers/fakes';

const exec = promisify(execFile);
const region = 'us-east-1';
const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
const TOKEN = 'tok_test_4000056655665556';

let emulator: RunningEmulator | undefined;
let endpoint: string;
let client: DynamoDBClient;
let doc: DynamoDBDocumentClient;
let tables: { payments: string; idempotency: string; audit: string };
let audit: AuditRepository;
let paymentsRepo: PaymentRepository;
let handler: ReturnType<typeof createAuditStreamHandler>;

beforeAll(async () => {
  try {
    const { template } = loadSynthesizedStack();
    endpoint = process.env.AWS_ENDPOINT_URL_DYNAMODB ?? (emulator = await startDynamoDbLocal()).endpoint;
    client = new DynamoDBClient({ endpoint, region, credentials });
    doc = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
    const suffix = randomUUID().slice(0, 8);
    const declared = resourcesOfType(template, 'AWS::DynamoDB::Table');
    const create = async (prefix: string) => {
      const found = declared.find(([id]) => id.startsWith(prefix));
      if (!found) throw new Error(`No table ${prefix} in the template`);
      const [id, res] = found;
      const input = { ...tableInput(id, res.Properties ?? {}), TableName: `${id}-${suffix}` };
      await client.send(new CreateTableCommand(input));
      return { name: input.TableName, props: res.Properties ?? {} };
    };
    const [p, i, a] = await Promise.all([create('PaymentsTable'), create('IdempotencyKeysTable'), create('AuditLogTable')]);
    tables = { payments: p.name, idempotency: i.name, audit: a.name };
    expect(a.props.GlobalSecondaryIndexes).toBeUndefined(); // keyed for the tenant listing: no index to write
    audit = new AuditRepository(doc, { audit: tables.audit });
    paymentsRepo = new PaymentRepository(doc, { payments: tables.payments, idempotency: tables.idempotency, openPaymentsIndex: 'open-payments' });
    handler = createAuditStreamHandler({ repository: audit });
  } catch (err) {
    client?.destroy();
    await emulator?.stop();
    emulator = undefined;
    throw err;
  }
});

afterAll(async () => {
  client?.destroy();
  await emulator?.stop();
});

// ---- driving payments and building stream events -----------------------------------------------

type Raw = Record<string, AttributeValue>;
let sequence = 100_000;

async function rawPayment(id: string): Promise<Raw> {
  const { Item } = await client.send(new GetItemCommand({ TableName: tables.payments, Key: { id: { S: id } }, ConsistentRead: true }));
  return Item!;
}

/** Drives a payment create → processing → retrying → processing → success; returns each stored image. */
async function drivePayment(tenantId: string, t0: number, ending: 'success' | 'failed' | 'expired' = 'success'): Promise<{ id: string; images: Raw[] }> {
  const key = `key-${randomUUID()}`;
  const id = `pay_${randomUUID().replace(/-/g, '')}`;
  const at = (s: number) => new Date(t0 + s * 1000);
  const payment: Payment = {
    id,
    tenantId,
    idempotencyKey: key,
    generation: 0,
    requestHash: 'a'.repeat(64),
    amountMinor: 4999,
    currency: 'USD',
    paymentMethod: { type: 'card', token: TOKEN },
    metadata: { orderId: 'o-42' },
    status: 'pending',
    version: 1,
    attempt: 0,
    retryCount: 0,
    maxRetries: 3,
    createdAt: at(0).toISOString(),
    updatedAt: at(0).toISOString(),
    versionAt: [t0],
    openShard: openShardFor(id),
    dueAt: t0 + 120_000,
    lastChange: { action: 'created', actor: `api:${tenantId}` },
  };
  const created = await paymentsRepo.insertWithKey(
    payment,
    {
      tenantId,
      idempotencyKey: key,
      paymentId: id,
      generation: 0,
      requestHash: payment.requestHash,
      createdAt: payment.createdAt,
      expiresAt: Math.floor(t0 / 1000) + 86_400,
    },
    Math.floor(t0 / 1000),
  );
  expect(created.kind).toBe('created');
  const images = [await rawPayment(id)];
  let current = payment;
  const step = async (req: Parameters<PaymentRepository['transition']>[1]) => {
    current = await paymentsRepo.transition(current, req);
    images.push(await rawPayment(id));
  };
  await step({ to: 'processing', now: at(1), change: { action: 'attempt_started', actor: 'worker' }, set: { attempt: 1, leaseUntil: t0 + 61_000 } });
  await step({
    to: 'retrying',
    now: at(2),
    change: { action: 'attempt_failed', actor: 'worker', reason: 'provider timeout' },
    set: {
      retryCount: 1,
      nextAttemptAt: t0 + 10_000,
      lastError: { code: 'PROVIDER_TIMEOUT', message: `timeout charging ${TOKEN}`, retryable: true, timestamp: at(2).toISOString(), details: { token: TOKEN } },
    },
    remove: ['leaseUntil'],
  });
  if (ending === 'expired') {
    await step({
      to: 'expired',
      now: at(86_401),
      change: { action: 'expired', actor: 'reconciler', reason: 'open past its deadline in status retrying' },
      set: { lastError: { code: 'PAYMENT_EXPIRED', message: 'Payment did not complete within 24 h', retryable: false, timestamp: at(86_401).toISOString() } },
    });
    return { id, images };
  }
  await step({ to: 'processing', now: at(10), change: { action: 'attempt_started', actor: 'worker' }, set: { attempt: 2, leaseUntil: t0 + 70_000 } });
  if (ending === 'failed') {
    await step({
      to: 'failed',
      now: at(11),
      change: { action: 'declined', actor: 'worker', reason: 'CARD_DECLINED' },
      set: { lastError: { code: 'CARD_DECLINED', message: 'declined', retryable: false, timestamp: at(11).toISOString() } },
      remove: ['nextAttemptAt'],
    });
    return { id, images };
  }
  await step({
    to: 'success',
    now: at(11),
    change: { action: 'attempt_succeeded', actor: 'worker' },
    set: { processedAt: at(11).toISOString(), providerChargeId: 'ch_1' },
    remove: ['nextAttemptAt'],
  });
  return { id, images };
}

/** A stream record as Lambda delivers it for NEW_AND_OLD_IMAGES. */
function streamRecord(newImage: Raw | undefined, oldImage?: Raw): DynamoDBRecord {
  sequence += 1;
  const img = (newImage ?? oldImage)!;
  return {
    eventID: randomUUID().replace(/-/g, ''),
    eventName: !newImage ? 'REMOVE' : oldImage ? 'MODIFY' : 'INSERT',
    eventVersion: '1.1',
    eventSource: 'aws:dynamodb',
    awsRegion: region,
    eventSourceARN: `arn:aws:dynamodb:${region}:000000000000:table/${tables.payments}/stream/2024-01-01T00:00:00.000`,
    dynamodb: {
      ApproximateCreationDateTime: Math.floor(Date.now() / 1000),
      Keys: { id: img.id } as never,
      ...(newImage ? { NewImage: newImage as never } : {}),
      ...(oldImage ? { OldImage: oldImage as never } : {}),
      SequenceNumber: String(sequence).padStart(21, '0'),
      SizeBytes: 512,
      StreamViewType: 'NEW_AND_OLD_IMAGES',
    },
  };
}

const recordsFor = (images: Raw[]) => images.map((img, i) => streamRecord(img, images[i - 1]));
const batch = (records: DynamoDBRecord[]): DynamoDBStreamEvent => ({ Records: records });

async function scanAudit(): Promise<Raw[]> {
  const items: Raw[] = [];
  let start: Raw | undefined;
  do {
    const res = await client.send(new ScanCommand({ TableName: tables.audit, ExclusiveStartKey: start, ConsistentRead: true }));
    items.push(...(res.Items ?? []));
    start = res.LastEvaluatedKey;
  } while (start);
  return items.sort((a, b) => `${a.paymentId!.S}#${a.version!.N!.padStart(10, '0')}`.localeCompare(`${b.paymentId!.S}#${b.version!.N!.padStart(10, '0')}`));
}

/** The payment as stored now: its update times locate its entries. */
async function stored(id: string): Promise<Payment> {
  const p = await paymentsRepo.get(id);
  if (!p) throw new Error(`payment ${id} not stored`);
  return p;
}

async function allForPayment(id: string): Promise<AuditEntry[]> {
  return (await audit.listForPayment(await stored(id), { limit: 1000 })).entries;
}

function apiEvent(query: Record<string, string>, tenant: string): APIGatewayProxyEvent {
  return {
    httpMethod: 'GET',
    resource: '/api/audit/payments',
    path: '/api/audit/payments',
    headers: {},
    multiValueHeaders: {},
    queryStringParameters: query,
    multiValueQueryStringParameters: null,
    pathParameters: null,
    stageVariables: null,
    body: null,
    isBase64Encoded: false,
    requestContext: { requestId: randomUUID(), identity: { apiKeyId: tenant } } as never,
  };
}

async function callApi(query: Record<string, string>, tenant: string) {
  const res = await apiHandler(auditApiRoute({ audit, payments: paymentsRepo, cursors: testCursorSeal() }))(apiEvent(query, tenant));
  return { status: res.statusCode, body: JSON.parse(res.body) };
}

async function runCli(args: string[]): Promise<{ code: number; out: any }> {
  const env = {
    ...process.env,
    AUDIT_TABLE: tables.audit,
    PAYMENTS_TABLE: tables.payments,
    AWS_ENDPOINT_URL_DYNAMODB: endpoint,
    AWS_REGION: region,
    AWS_ACCESS_KEY_ID: credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
    POWERTOOLS_LOG_LEVEL: 'CRITICAL',
  };
  try {
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', 'scripts/verify-audit.ts', ...args], { env, timeout: 20_000 });
    return { code: 0, out: JSON.parse(stdout) };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, out: e.stdout ? JSON.parse(e.stdout) : e.stderr };
  }
}

// ---- tests --------------------------------------------------------------------------------------

describe('audit trail on DynamoDB Local', () => {
  const T0 = TEST_EPOCH;

  it('appends exactly versions 1..N in order with a verifying chain, and redelivery changes nothing', async () => {
    const { id, images } = await drivePayment('tenant-a', T0);
    const records = recordsFor(images);
    expect((await handler(batch(records))).batchItemFailures).toEqual([]);

    const entries = await allForPayment(id);
    expect(entries.map((e) => e.version)).toEqual([1, 2, 3, 4, 5]);
    expect(entries.map((e) => `${e.fromStatus}>${e.toStatus}`)).toEqual([
      'null>pending',
      'pending>processing',
      'processing>retrying',
      'retrying>processing',
      'processing>success',
    ]);
    expect(entries[0]!.prevHash).toBe(GENESIS_HASH);
    expect(entries[2]).toMatchObject({ action: 'attempt_failed', actor: 'worker', reason: 'provider timeout' });
    expect(entries[2]!.details).toMatchObject({ retryCount: 1, lastErrorCode: 'PROVIDER_TIMEOUT', amountMinor: 4999, currency: 'USD' });
    expect(await verifyPaymentAudit(audit, await stored(id))).toEqual({ ok: true, count: 5 });
    // The stored entries are what the pure builder gives for the stored images.
    const expected: AuditEntry[] = [];
    images.forEach((img, i) =>
      expected.push(entryFromImages(unmarshall(img) as Payment, i ? (unmarshall(images[i - 1]!) as Payment) : undefined, expected[i - 1]?.hash ?? GENESIS_HASH)),
    );
    expect(entries).toEqual(expected);

    const before = await scanAudit();
    expect(JSON.stringify(before)).not.toContain(TOKEN);
    for (let i = 0; i < 2; i++) expect((await handler(batch(records))).batchItemFailures).toEqual([]);
    expect(await scanAudit()).toEqual(before);

    // A REMOVE and a same-version MODIFY write nothing.
    expect((await handler(batch([streamRecord(images[4], images[4]), streamRecord(undefined, images[4])]))).batchItemFailures).toEqual([]);
    expect(await scanAudit()).toEqual(before);
  });

  it.each([
    ['failed', ['null>pending', 'pending>processing', 'processing>retrying', 'retrying>processing', 'processing>failed']],
    ['expired', ['null>pending', 'pending>processing', 'processing>retrying', 'retrying>expired']],
  ] as const)('the %s path is audited as versions 1..N in order with a verifying chain', async (ending, transitions) => {
    const { id, images } = await drivePayment('tenant-a', T0, ending);
    expect((await handler(batch(recordsFor(images)))).batchItemFailures).toEqual([]);
    const entries = await allForPayment(id);
    expect(entries.map((e) => e.version)).toEqual(transitions.map((_, i) => i + 1));
    expect(entries.map((e) => `${e.fromStatus}>${e.toStatus}`)).toEqual(transitions);
    expect(await verifyPaymentAudit(audit, await stored(id))).toEqual({ ok: true, count: transitions.length });
  });

  it('fails a version delivered before its predecessor and succeeds on redelivery in order', async () => {
    const { id, images } = await drivePayment('tenant-a', T0 + 3_600_000);
    const [r1, r2, r3, r4, r5] = recordsFor(images);
    expect((await handler(batch([r1!]))).batchItemFailures).toEqual([]);

    const res = await handler(batch([r3!, r2!]));
    expect(res.batchItemFailures).toEqual([{ itemIdentifier: r3!.dynamodb!.SequenceNumber }]);
    expect((await allForPayment(id)).map((e) => e.version)).toEqual([1, 2]);

    expect((await handler(batch([r2!, r3!, r4!, r5!]))).batchItemFailures).toEqual([]);
    const entries = await allForPayment(id);
    expect(entries.map((e) => e.version)).toEqual([1, 2, 3, 4, 5]);
    expect(await verifyPaymentAudit(audit, await stored(id))).toEqual({ ok: true, count: 5 });
  });

  it('names a tampered entry (API verify, library and CLI)', async () => {
    const { id, images } = await drivePayment('tenant-t', T0 + 7_200_000);
    const { id: cleanId, images: cleanImages } = await drivePayment('tenant-t', T0 + 7_300_000);
    expect((await handler(batch([...recordsFor(images), ...recordsFor(cleanImages)]))).batchItemFailures).toEqual([]);

    await client.send(
      new UpdateItemCommand({
        TableName: tables.audit,
        Key: marshall(entryKeyOf(await stored(id), 3)!),
        UpdateExpression: 'SET details.amountMinor = :a',
        ExpressionAttributeValues: { ':a': { N: '1' } },
      }),
    );
    expect(await verifyPaymentAudit(audit, await stored(id))).toMatchObject({ ok: false, paymentId: id, version: 3, problem: 'HASH_MISMATCH' });
    expect(await verifyPaymentAudit(audit, await stored(cleanId))).toEqual({ ok: true, count: 5 });

    const api = await callApi({ paymentID: id, verify: 'true' }, 'tenant-t');
    expect(api.status).toBe(200);
    expect(api.body.verification).toMatchObject({ ok: false, version: 3, problem: 'HASH_MISMATCH', paymentVersion: 5, upToDate: false });

    // Redelivering the tampered version keeps the stored entry (append-only) and does not fail.
    const before = await scanAudit();
    expect((await handler(batch(recordsFor(images)))).batchItemFailures).toEqual([]);
    expect(await scanAudit()).toEqual(before);

    const [bad, good, tenant] = await Promise.all([
      runCli(['--payment', id]),
      runCli(['--payment', cleanId]),
      runCli(['--tenant', 'tenant-t', '--from', isoAt(2 * HOUR_MS)]),
    ]);
    expect(bad.code).toBe(1);
    expect(bad.out).toMatchObject({ paymentId: id, ok: false, version: 3, problem: 'HASH_MISMATCH' });
    expect(good.code).toBe(0);
    expect(good.out).toMatchObject({ ok: true, count: 5 });
    expect(tenant.code).toBe(1);
    expect(tenant.out).toMatchObject({ ok: false, payments: 2, entriesInRange: 10, verifiedEntries: 5 });
    expect(tenant.out.failures).toEqual([expect.objectContaining({ paymentId: id, version: 3, problem: 'HASH_MISMATCH' })]);
  });

  it('pages 1,000 entries with limit 100 in both orders with no gaps or repeats', async () => {
    const tenantId = 'tenant-bulk';
    const id = 'pay_bulk_0001';
    const start = TEST_EPOCH + DAY_MS;
    const statuses: PaymentStatus[] = ['processing', 'retrying'];
    const entries: AuditEntry[] = [];
    let prev: Payment | undefined;
    for (let v = 1; v <= 1000; v++) {
      const img: Payment = {
        id,
        tenantId,
        idempotencyKey: 'bulk',
        generation: 0,
        requestHash: 'b'.repeat(64),
        amountMinor: 100,
        currency: 'EUR',
        paymentMethod: { type: 'card', token: TOKEN },
        metadata: {},
        status: v === 1 ? 'pending' : statuses[v % 2]!,
        version: v,
        attempt: Math.floor(v / 2),
        retryCount: Math.floor((v - 1) / 2),
        maxRetries: 1000,
        createdAt: new Date(start).toISOString(),
        updatedAt: new Date(start + v * 1000).toISOString(),
        lastChange: { action: v === 1 ? 'created' : 'bulk_step', actor: 'test' },
      };
      entries.push(entryFromImages(img, prev, entries[v - 2]?.hash ?? GENESIS_HASH));
      prev = img;
    }
    const chunks: AuditEntry[][] = [];
    for (let i = 0; i < entries.length; i += 25) chunks.push(entries.slice(i, i + 25));
    for (let i = 0; i < chunks.length; i += 8) {
      await Promise.all(
        chunks.slice(i, i + 8).map(async (chunk) => {
          let requests: any[] | undefined = chunk.map((e) => ({ PutRequest: { Item: e } }));
          while (requests?.length) {
            const res: BatchWriteCommandOutput = await doc.send(new BatchWriteCommand({ RequestItems: { [tables.audit]: requests } }));
            requests = res.UnprocessedItems?.[tables.audit];
          }
        }),
      );
    }

    type Lister = (cursor: string | undefined) => Promise<{ entries: AuditEntry[]; nextCursor: string | null }>;
    const collect = async (list: Lister) => {
      const versions: number[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await list(cursor);
        pages++;
        expect(page.entries.length).toBeLessThanOrEqual(100);
        versions.push(...page.entries.map((e) => e.version));
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
      return { versions, pages };
    };
    const ascending = Array.from({ length: 1000 }, (_, i) => i + 1);
    const descending = [...ascending].reverse();

    // The payment as it would be stored after its 1,000 versions: its update times key the entries.
    const ref: PaymentAuditRef = { id, tenantId, version: 1000, versionAt: ascending.map((v) => start + v * 1000) };
    const pa = await collect((cursor) => audit.listForPayment(ref, { limit: 100, cursor, order: 'asc' }));
    expect(pa).toEqual({ versions: ascending, pages: 10 });
    const pd = await collect((cursor) => audit.listForPayment(ref, { limit: 100, cursor, order: 'desc' }));
    expect(pd).toEqual({ versions: descending, pages: 10 });
    const ta = await collect((cursor) => audit.listForTenant(tenantId, { limit: 100, cursor, order: 'asc' }));
    expect(ta).toEqual({ versions: ascending, pages: 10 });
    const td = await collect((cursor) => audit.listForTenant(tenantId, { limit: 100, cursor, order: 'desc' }));
    expect(td).toEqual({ versions: descending, pages: 10 });
    expect(await verifyPaymentAudit(audit, ref)).toEqual({ ok: true, count: 1000 });

    // Through the API: cursors chain pages; a forged or foreign cursor is a 400.
    const first = await callApi({ from: isoAt(DAY_MS + 5 * 60_000), to: isoAt(DAY_MS + 10 * 60_000), limit: '100', order: 'asc' }, tenantId);
    expect(first.status).toBe(200);
    expect(first.body.entries.map((e: any) => e.version)).toEqual(Array.from({ length: 100 }, (_, i) => i + 300));
    const second = await callApi({ from: isoAt(DAY_MS + 5 * 60_000), to: isoAt(DAY_MS + 10 * 60_000), limit: '100', order: 'asc', cursor: first.body.nextCursor }, tenantId);
    expect(second.body.entries.map((e: any) => e.version)).toEqual(Array.from({ length: 100 }, (_, i) => i + 400));
    expect((await callApi({ limit: '100', cursor: first.body.nextCursor }, 'tenant-a')).body.error.code).toBe('INVALID_CURSOR');
    expect((await callApi({ cursor: 'eyJmb28iOjF9' }, tenantId)).body.error.code).toBe('INVALID_CURSOR');
  });

  it('lists a tenant time range scoped to the caller, with inclusive bounds', async () => {
    const base = TEST_EPOCH + 2 * DAY_MS;
    const a = await drivePayment('tenant-r1', base);
    const b = await drivePayment('tenant-r2', base);
    expect((await handler(batch([...recordsFor(a.images), ...recordsFor(b.images)]))).batchItemFailures).toEqual([]);

    // Versions at +1s, +2s, +10s are in [from, to]; +0s and +11s are not.
    const from = new Date(base + 1000).toISOString();
    const to = new Date(base + 10_000).toISOString();
    const r1 = await audit.listForTenant('tenant-r1', { from, to, limit: 100, order: 'asc' });
    expect(r1.entries.map((e) => [e.paymentId, e.version])).toEqual([
      [a.id, 2],
      [a.id, 3],
      [a.id, 4],
    ]);
    expect(r1.nextCursor).toBeNull();

    const api = await callApi({ from, to }, 'tenant-r2');
    expect(api.status).toBe(200);
    expect(api.body.entries.map((e: any) => [e.paymentID, e.version])).toEqual([
      [b.id, 4],
      [b.id, 3],
      [b.id, 2],
    ]);
    expect(api.body.entries.every((e: any) => e.tenantId === 'tenant-r2' && !('tenantSort' in e))).toBe(true);
    expect(api.body).toMatchObject({ count: 3, nextCursor: null });

    // A payment of another tenant is not found, with or without verify.
    expect((await callApi({ paymentID: a.id }, 'tenant-r2')).body.error.code).toBe('PAYMENT_NOT_FOUND');
    const own = await callApi({ paymentID: a.id, verify: 'true' }, 'tenant-r1');
    expect(own.body).toMatchObject({ count: 5, nextCursor: null, verification: { ok: true, count: 5, upToDate: true } });
    // A tenant with nothing sees nothing.
    expect((await callApi({}, 'tenant-empty')).body).toEqual({ entries: [], nextCursor: null, count: 0 });
  });

  it("spreads one tenant's entries over the index shards and merges them back: pages in both orders with no gaps or repeats", async () => {
    const tenantId = `tenant-shards-${randomUUID().slice(0, 6)}`;
    const base = TEST_EPOCH + 3 * DAY_MS;
    const driven = await Promise.all(Array.from({ length: 12 }, (_, i) => drivePayment(tenantId, base + i * 100)));
    expect((await handler(batch(driven.flatMap((d) => recordsFor(d.images))))).batchItemFailures).toEqual([]);
    const all = (await scanAudit()).map((r) => unmarshall(r) as AuditEntry).filter((e) => e.tenantId === tenantId);
    expect(all).toHaveLength(12 * 5);
    // The partition key of the index is per payment shard, not the tenant: many partitions take the writes.
    expect(new Set(all.map((e) => e.tenantShard)).size).toBeGreaterThan(4);
    const expectedAsc = all.map((e) => e.tenantSort).sort();

    const collect = async (order: 'asc' | 'desc', limit: number, range: { from?: string; to?: string } = {}) => {
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await audit.listForTenant(tenantId, { limit, cursor, order, ...range });
        expect(page.entries.length).toBeLessThanOrEqual(limit);
        seen.push(...page.entries.map((e) => e.tenantSort));
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
      return seen;
    };
    expect(await collect('asc', 7)).toEqual(expectedAsc);
    expect(await collect('desc', 7)).toEqual([...expectedAsc].reverse());
    const from = new Date(base + 1000).toISOString();
    const to = new Date(base + 10_500).toISOString();
    const inRange = expectedAsc.filter((k) => k >= from && k <= `${to}$`);
    expect(inRange.length).toBeGreaterThan(0);
    expect(await collect('asc', 5, { from, to })).toEqual(inRange);
    expect(await collect('desc', 5, { from, to })).toEqual([...inRange].reverse());
  });

  it('repairs a dropped stream record through the real repository: the chain verifies with no gap', async () => {
    const { id, images } = await drivePayment('tenant-drop', TEST_EPOCH + 4 * DAY_MS);
    const records = recordsFor(images);
    // Version 3's record is lost for good; the others arrive in order, in two invocations.
    expect((await handler(batch(records.slice(0, 2)))).batchItemFailures).toEqual([]);
    expect((await handler(batch(records.slice(3)))).batchItemFailures).toEqual([]);
    const chain = await allForPayment(id);
    expect(chain.map((e) => e.version)).toEqual([1, 2, 3, 4, 5]);
    expect(chain[2]).toMatchObject({ repairedFrom: 'next_version_old_image', fromStatus: 'processing', toStatus: 'retrying' });
    expect(await verifyPaymentAudit(audit, await stored(id))).toEqual({ ok: true, count: 5 });
  });
});
