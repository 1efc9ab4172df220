/**
 * Black-box security over HTTP on the local stack: operator scope, tenant isolation on every route,
 * key rotation (two keys, one tenant), idempotent operator actions, and a table of hostile inputs
 * that must each get a 4xx with a code and create nothing.
 */
import { randomUUID } from 'node:crypto';
import * as http from 'node:http';
import { ScanCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fastRecoveryEnv } from '../../scripts/drill-env';
import { startLocalStack } from '@idempotent-payments/local-stack';
import { startProviderSimulator } from '@idempotent-payments/provider-simulator';

let stack: Awaited<ReturnType<typeof startLocalStack>> | undefined;
let provider: Awaited<ReturnType<typeof startProviderSimulator>> | undefined;

const T1 = 'local-key-1';
const T1_ROTATED = 'local-key-1-rotated';
const T2 = 'local-key-2';
const OPS = 'local-operator-key';

beforeAll(async () => {
  provider = await startProviderSimulator({ port: 0 });
  stack = await startLocalStack({
    apiPort: 0,
    log: false,
    // The reconciler finishes attempts whose outcome stayed open; one schedule minute every two seconds.
    scheduleScale: 30,
    // Two keys of tenant-1: the rotation overlap.
    apiKeys: `${T1}:tenant-1,${T1_ROTATED}:tenant-1,${T2}:tenant-2,${OPS}:operator:local`,
    extraEnv: { ...fastRecoveryEnv(provider.url), RETRY_CAP_SECONDS: '1',
      // Every card here fails on purpose: keep the provider breaker's pauses short (its own tests cover it).
      BREAKER_CONSECUTIVE_FAILURES: '1000',
      BREAKER_OPEN_SECONDS: '0.2',
    },
  });
});

afterAll(async () => {
  await stack?.stop();
  await provider?.stop();
});

interface Call {
  readonly method?: string;
  readonly path: string;
  readonly key?: string | null;
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
  /** null: send the body with no content-type at all. */
  readonly contentType?: string | null;
}

async function call({ method = 'GET', path, key = T1, body, headers = {}, contentType = 'application/json' }: Call) {
  const h: Record<string, string> = { ...(contentType !== null ? { 'content-type': contentType } : {}), ...headers };
  if (key !== null) h['x-api-key'] = key;
  const sent = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  // Bytes, so that fetch adds no content-type of its own.
  const res = await fetch(`${stack!.apiUrl}${path}`, { method, headers: h, body: sent === undefined ? undefined : new TextEncoder().encode(sent) });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text, headers: res.headers };
}

const payment = (idempotencyKey: string, token = 'tok_success') => ({ idempotencyKey, amount: 12.5, currency: 'USD', paymentMethod: { type: 'card', token } });

async function create(key: string, apiKey = T1, token = 'tok_success'): Promise<string> {
  const res = await call({ method: 'POST', path: '/api/payments/process', key: apiKey, body: payment(key, token) });
  expect(res.status).toBe(201);
  return res.json.id;
}

async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 150));
  }
}

function expectError(res: { status: number; json: any; text: string }, status: number | 'any4xx', code?: string | RegExp) {
  const ctx = `${res.status} ${res.text.slice(0, 300)}`;
  if (status === 'any4xx') expect(res.status >= 400 && res.status < 500, ctx).toBe(true);
  else expect(res.status, ctx).toBe(status);
  expect(res.json?.error?.code, ctx).toMatch(code ?? /^[A-Z][A-Z0-9_]+$/);
  expect(typeof res.json.error.timestamp, ctx).toBe('string');
}

const tableName = (prefix: string) => Object.entries(stack!.resources.tables).find(([id]) => id.startsWith(prefix))![1].name;
async function count(prefix: string): Promise<number> {
  let n = 0;
  let start: Record<string, any> | undefined;
  do {
    const res = await stack!.clients.dynamodb.send(new ScanCommand({ TableName: tableName(prefix), Select: 'COUNT', ExclusiveStartKey: start }));
    n += res.Count ?? 0;
    start = res.LastEvaluatedKey;
  } while (start);
  return n;
}

async function failedRetryable(): Promise<string> {
  const id = await create(`sec-fail-${randomUUID()}`, T1, 'tok_fail_always');
  const p = await until(() => call({ path: `/api/payments/${id}` }), (r) => r.json?.status === 'failed', 60_000);
  expect(p.json).toMatchObject({ status: 'failed', lastError: { code: 'PROVIDER_UNAVAILABLE', retryable: true } });
  return id;
}

describe('operator scope', () => {
  it('tenant keys get 403 OPERATOR_ONLY on the recovery routes and on re-opening a failed payment', async () => {
    const failed = await failedRetryable();
    for (const key of [T1, T1_ROTATED, T2]) {
      expectError(await call({ method: 'POST', path: '/api/recovery/process', key }), 403, 'OPERATOR_ONLY');
      expectError(await call({ path: '/api/recovery/status', key }), 403, 'OPERATOR_ONLY');
    }
    expectError(await call({ method: 'POST', path: `/api/payments/${failed}/retry`, key: T1 }), 403, 'OPERATOR_ONLY');
    expect((await call({ path: `/api/payments/${failed}` })).json.status).toBe('failed');
  });

  it('the operator key runs recovery, recorded with the operator as trigger, and stays off tenant routes', async () => {
    // A scheduled run may hold the run lock (then the answer names that run): ask until ours starts.
    const started = await until(
      () => call({ method: 'POST', path: '/api/recovery/process', key: OPS }),
      (r) => r.status === 202 && r.json.alreadyRunning === false,
    );
    expect(started.status, started.text).toBe(202);
    const status = await call({ path: '/api/recovery/status', key: OPS });
    expect(status.status).toBe(200);
    expect(status.json.runs.find((r: any) => r.runId === started.json.runId)).toMatchObject({ trigger: 'operator:local' });
    expectError(await call({ method: 'POST', path: '/api/payments/process', key: OPS, body: payment(`ops-${randomUUID()}`) }), 403, 'TENANT_ONLY');
  });

  it('100 concurrent identical re-opens with one Idempotency-Key act once; the re-open is audited with the operator', { timeout: 180_000 }, async () => {
    const id = await failedRetryable();
    const before = (await call({ path: `/api/payments/${id}` })).json;
    const idem = `reopen-${randomUUID()}`;
    const send = () => call({ method: 'POST', path: `/api/payments/${id}/retry`, key: OPS, body: { reason: 'incident over' }, headers: { 'Idempotency-Key': idem } });
    const responses = await Promise.all(Array.from({ length: 100 }, send));
    for (const r of responses) {
      if (r.status !== 202) expectError(r, 409, 'IDEMPOTENCY_IN_PROGRESS');
    }
    const ok = responses.filter((r) => r.status === 202);
    expect(ok.length).toBeGreaterThan(0);
    expect(new Set(ok.map((r) => r.json.version))).toEqual(new Set([before.version + 1]));

    // A repeat after it finished answers the stored response and re-opens nothing.
    const repeat = await send();
    expect(repeat.status).toBe(202);
    expect(repeat.json.version).toBe(before.version + 1);
    const trail = await until(
      () => call({ path: `/api/audit/payments?paymentID=${id}&limit=1000` }),
      (r) => r.json.entries?.some((e: any) => e.action === 'operator_reopen'),
    );
    await new Promise((r) => setTimeout(r, 1000)); // a second re-open, if any, would reach the log by now
    const entries = (await call({ path: `/api/audit/payments?paymentID=${id}&limit=1000` })).json.entries;
    const reopens = entries.filter((e: any) => e.action === 'operator_reopen');
    expect(reopens).toHaveLength(1);
    expect(reopens[0]).toMatchObject({ actor: 'operator:local', reason: 'incident over', fromStatus: 'failed', toStatus: 'retrying' });
    expect(trail.json.entries.length).toBeGreaterThan(0);
  });

  /** Puts a re-opened payment back to failed (retryable), as its next attempts would. */
  async function failAgain(id: string) {
    await stack!.clients.dynamodb.send(
      new UpdateItemCommand({
        TableName: tableName('PaymentsTable'),
        Key: { id: { S: id } },
        UpdateExpression: 'SET #s = :f, #v = #v + :one, lastError = :e REMOVE openShard, dueAt, leaseUntil',
        ExpressionAttributeNames: { '#s': 'status', '#v': 'version' },
        ExpressionAttributeValues: {
          ':f': { S: 'failed' },
          ':one': { N: '1' },
          ':e': { M: { code: { S: 'PROVIDER_UNAVAILABLE' }, message: { S: 'x' }, retryable: { BOOL: true }, timestamp: { S: new Date().toISOString() } } },
        },
      }),
    );
  }

  it('re-open has a budget: after 3 re-opens, 409 REOPEN_LIMIT_REACHED', { timeout: 120_000 }, async () => {
    const id = await failedRetryable();
    for (let n = 1; n <= 3; n++) {
      const r = await call({ method: 'POST', path: `/api/payments/${id}/retry`, key: OPS, headers: { 'Idempotency-Key': `budget-${n}-${randomUUID()}` } });
      expect(r.status, r.text).toBe(202);
      await failAgain(id);
    }
    const over = await call({ method: 'POST', path: `/api/payments/${id}/retry`, key: OPS });
    expectError(over, 409, 'REOPEN_LIMIT_REACHED');
    expect(over.json.error.details).toMatchObject([{ code: 'REOPEN_LIMIT_REACHED' }]);
  });
});

describe('tenant isolation and key rotation', () => {
  it("tenant-2 sees nothing of tenant-1's payment, key, audit trail or cursors", async () => {
    const key = `iso-${randomUUID()}`;
    const id = await create(key);
    const id2 = await create(`iso-other-${randomUUID()}`);
    await until(() => call({ path: `/api/audit/payments?paymentID=${id2}` }), (r) => r.json.count > 0);
    for (const path of [`/api/payments/${id}`, `/api/payments/${id}/status`, `/api/audit/payments?paymentID=${id}`, `/api/audit/payments?paymentID=${id}&verify=true`]) {
      expectError(await call({ path, key: T2 }), 404, 'PAYMENT_NOT_FOUND');
    }
    expectError(await call({ path: `/api/payments/key/${key}`, key: T2 }), 404, 'IDEMPOTENCY_KEY_NOT_FOUND');
    expectError(await call({ method: 'POST', path: `/api/payments/${id}/retry`, key: T2 }), 404, 'PAYMENT_NOT_FOUND');
    const check = await call({ method: 'POST', path: '/api/payments/validate-key', key: T2, body: { idempotencyKey: key } });
    expect(check.json).toMatchObject({ status: 'available' });
    expect(JSON.stringify(check.json)).not.toContain(id);

    // tenant-2's listings, in every order and range, hold none of tenant-1's entries.
    for (const q of ['', '?order=asc', '?order=desc&limit=1000', '?from=2000-01-01&to=2100-01-01']) {
      const list = await call({ path: `/api/audit/payments${q}`, key: T2 });
      expect(list.status).toBe(200);
      expect(list.json.entries.every((e: any) => e.tenantId === 'tenant-2')).toBe(true);
    }
    // Cursors minted for tenant-1 give tenant-2 nothing of tenant-1.
    const cursors = [
      (await call({ path: '/api/audit/payments?limit=1' })).json.nextCursor,
      (await call({ path: `/api/audit/payments?paymentID=${id2}&limit=1` })).json.nextCursor,
    ].filter(Boolean);
    expect(cursors.length).toBeGreaterThan(0);
    for (const cursor of cursors) {
      for (const path of [`/api/audit/payments?cursor=${cursor}`, `/api/audit/payments?limit=5&cursor=${cursor}`]) {
        const r = await call({ path, key: T2 });
        if (r.status === 200) expect(r.json.entries.every((e: any) => e.tenantId === 'tenant-2')).toBe(true);
        else expectError(r, 400);
      }
    }
    // The same key under tenant-2 is another payment.
    const theirs = await create(key, T2);
    expect(theirs).not.toBe(id);
  });

  it('an edited cursor of the tenant itself is refused (signed cursors): a substitution at every position', async () => {
    for (let i = 0; i < 3; i++) await create(`cur-${randomUUID()}`);
    const edits = async (listing: string) => {
      const cursor: string = (await call({ path: `${listing}limit=1` })).json.nextCursor;
      expect(cursor, listing).toMatch(/\.[A-Za-z0-9_-]{22}$/);
      expect((await call({ path: `${listing}limit=1&cursor=${cursor}` })).status, listing).toBe(200);
      const accepted: string[] = [];
      for (let i = 0; i < cursor.length; i++) {
        const edited = cursor.slice(0, i) + (cursor[i] === 'A' ? 'B' : 'A') + cursor.slice(i + 1);
        const r = await call({ path: `${listing}limit=1&cursor=${encodeURIComponent(edited)}` });
        if (r.status !== 400 || r.json?.error?.code !== 'INVALID_CURSOR') accepted.push(`${i}: ${r.status}`);
      }
      return accepted;
    };
    expect(await edits('/api/payments?')).toEqual([]);
    expect(await edits('/api/audit/payments?')).toEqual([]);
  });

  it("a tenant's rotated key sees the same payments and keys, and replays what the old key created", async () => {
    const key = `rot-${randomUUID()}`;
    const id = await create(key, T1);
    expect((await call({ path: `/api/payments/${id}`, key: T1_ROTATED })).status).toBe(200);
    expect((await call({ path: `/api/payments/key/${key}`, key: T1_ROTATED })).json).toMatchObject({ paymentID: id });
    const replay = await call({ method: 'POST', path: '/api/payments/process', key: T1_ROTATED, body: payment(key) });
    expect(replay.status).toBe(201);
    expect(replay.json.id).toBe(id);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect((await call({ path: `/api/payments/${id}`, key: T2 })).status).toBe(404);
  });

  it('decodes path parameters once: a key with a percent sign is found by its encoding, a double-encoded id is not', async () => {
    const key = `a%41-x-${randomUUID()}`;
    const id = await create(key);
    expect((await call({ path: `/api/payments/key/${encodeURIComponent(key)}` })).json).toMatchObject({ paymentID: id });
    expectError(await call({ path: `/api/payments/${encodeURIComponent(`%${id.charCodeAt(0).toString(16)}${id.slice(1)}`)}` }), 404, 'PAYMENT_NOT_FOUND');
  });
});

describe('refunds and cancel as a hostile client', () => {
  const settled = async (body: Record<string, unknown>) => {
    const res = await call({ method: 'POST', path: '/api/payments/process', body: { ...payment(`rf-${randomUUID()}`), ...body } });
    expect(res.status, res.text).toBe(201);
    await until(() => call({ path: `/api/payments/${res.json.id}` }), (r) => r.json?.status === 'success');
    return res.json.id as string;
  };
  const refund = (id: string, body: unknown, opts: { key?: string; idem?: string | null } = {}) =>
    call({ method: 'POST', path: `/api/payments/${id}/refunds`, key: opts.key ?? T1, body, headers: opts.idem === null ? {} : { 'Idempotency-Key': opts.idem ?? `rk-${randomUUID()}` } });

  it("another tenant's payment is 404 on every refund and cancel route, and nothing moves", async () => {
    const id = await settled({});
    expectError(await refund(id, { amount: 1 }, { key: T2 }), 404, 'PAYMENT_NOT_FOUND');
    expectError(await call({ path: `/api/payments/${id}/refunds`, key: T2 }), 404, 'PAYMENT_NOT_FOUND');
    expectError(await call({ method: 'POST', path: `/api/payments/${id}/cancel`, key: T2, headers: { 'Idempotency-Key': `c-${randomUUID()}` } }), 404, 'PAYMENT_NOT_FOUND');
    // The rotated key is the same tenant: it sees the payment (and its empty refund list).
    expect((await call({ path: `/api/payments/${id}/refunds`, key: T1_ROTATED })).json).toMatchObject({ count: 0 });
    expect((await call({ path: `/api/payments/${id}` })).json).toMatchObject({ status: 'success', amountRefundedMinor: 0 });
  });

  it('bad amounts, reasons and keys are 400 with their code and make no refund; a JPY payment refunds in whole yen', async () => {
    const usd = await settled({});
    const jpy = await settled({ amount: 500, currency: 'JPY' });
    const refundsBefore = await count('RefundsTable');
    const bad: Array<[string, string, unknown, string]> = [
      ['amount 0', usd, { amount: 0 }, 'INVALID_AMOUNT'],
      ['amount -0', usd, '{"amount":-0}', 'INVALID_AMOUNT'],
      ['amount -1', usd, { amount: -1 }, 'INVALID_AMOUNT'],
      ['amount "-1"', usd, { amount: '-1' }, 'INVALID_AMOUNT'],
      ['amount 1e400', usd, '{"amount":1e400}', 'INVALID_AMOUNT'],
      ['amount "1e3"', usd, { amount: '1e3' }, 'INVALID_AMOUNT'],
      ['amount null', usd, { amount: null }, 'INVALID_AMOUNT'],
      ['amount "abc"', usd, { amount: 'abc' }, 'INVALID_AMOUNT'],
      ['amount 1.001 USD', usd, { amount: 1.001 }, 'AMOUNT_PRECISION_EXCEEDED'],
      ['amount "1.001" USD', usd, { amount: '1.001' }, 'AMOUNT_PRECISION_EXCEEDED'],
      ['amount 1.5 JPY', jpy, { amount: 1.5 }, 'AMOUNT_PRECISION_EXCEEDED'],
      ['amount 0.01 JPY', jpy, { amount: 0.01 }, 'AMOUNT_PRECISION_EXCEEDED'],
      ['amount over the maximum', usd, { amount: 1_000_000.01 }, 'AMOUNT_TOO_LARGE'],
      ['reason of 501 characters', usd, { amount: 1, reason: 'r'.repeat(501) }, 'INVALID_REASON'],
      ['reason not a string', usd, { amount: 1, reason: 7 }, 'INVALID_REASON'],
      ['an array body', usd, '[]', 'INVALID_JSON'],
    ];
    const failures: string[] = [];
    for (const [name, id, body, code] of bad) {
      const res = await refund(id, body);
      if (res.status !== 400 || res.json?.error?.code !== code) failures.push(`${name}: ${res.status} ${res.text.slice(0, 200)}`);
    }
    expect(failures).toEqual([]);
    expectError(await refund(usd, { amount: 1 }, { idem: null }), 400, 'IDEMPOTENCY_KEY_REQUIRED');
    expectError(await refund(usd, { amount: 1 }, { idem: 'a\tb' }), 400, 'INVALID_IDEMPOTENCY_KEY');
    // More than the capture, by one minor unit: 409, nothing made.
    expectError(await refund(usd, { amount: 12.51 }), 409, 'REFUND_EXCEEDS_CAPTURED');
    expect(await count('RefundsTable')).toBe(refundsBefore);
    expect((await call({ path: `/api/payments/${usd}` })).json).toMatchObject({ amountRefundedMinor: 0 });

    // A zero-decimal currency: 100 yen is 100 minor units, shown as 100.
    const yen = await refund(jpy, { amount: 100 });
    expect(yen.status, yen.text).toBe(201);
    expect(yen.json).toMatchObject({ amount: 100, amountMinor: 100, currency: 'JPY' });
    expect((await call({ path: `/api/payments/${jpy}` })).json).toMatchObject({ amountRefunded: 100, amountRefundedMinor: 100 });
    expect(await count('RefundsTable')).toBe(refundsBefore + 1);
  });

  it('the same refund key with another body is 422 and changes nothing; cancel refuses a settled payment and bad requests', async () => {
    const id = await settled({});
    const idem = `rk-${randomUUID()}`;
    const first = await refund(id, { amount: 2, reason: 'a' }, { idem });
    expect(first.status).toBe(201);
    for (const body of [{ amount: 3, reason: 'a' }, { amount: 2, reason: 'b' }, { amount: 2 }, {}]) {
      expectError(await refund(id, body, { idem }), 422, 'IDEMPOTENCY_KEY_MISMATCH');
    }
    // The same key on another payment of the tenant is another refund (one refund per payment and key).
    const other = await settled({});
    expect((await refund(other, { amount: 2, reason: 'a' }, { idem })).status).toBe(201);
    expect((await call({ path: `/api/payments/${id}/refunds` })).json).toMatchObject({ count: 1, items: [{ id: first.json.id, amountMinor: 200 }] });
    expect((await call({ path: `/api/payments/${id}` })).json).toMatchObject({ amountRefundedMinor: 200 });

    const cancel = (headers: Record<string, string>, body?: unknown) => call({ method: 'POST', path: `/api/payments/${id}/cancel`, headers, body });
    expectError(await cancel({ 'Idempotency-Key': `c-${randomUUID()}` }), 409, 'INVALID_STATE_TRANSITION');
    expectError(await cancel({}), 400, 'IDEMPOTENCY_KEY_REQUIRED');
    expectError(await cancel({ 'Idempotency-Key': `c-${randomUUID()}` }, { reason: 'r'.repeat(501) }), 400, 'INVALID_REASON');
    expectError(await cancel({ 'Idempotency-Key': `c-${randomUUID()}` }, 'nope'), 400, 'INVALID_JSON');
    expect((await call({ path: `/api/payments/${id}` })).json.status).toBe('success');
  });
});

describe('hostile inputs: 4xx with a code, nothing created', () => {
  const valid = (k: string) => ({ idempotencyKey: k, amount: 10, currency: 'USD', paymentMethod: { type: 'card', token: 'tok_success' } });
  const rawCreate = (k: string, fragment: string) =>
    `{"idempotencyKey":"${k}","currency":"USD","paymentMethod":{"type":"card","token":"tok_success"},${fragment}}`;
  const withMeta = (k: string, meta: string) => `{"idempotencyKey":"${k}","amount":10,"currency":"USD","paymentMethod":{"type":"card","token":"tok_success"},"metadata":${meta}}`;
  const long = (n: number) => 'p'.repeat(n);

  /** [name, request maker given a unique key, expected status or any 4xx, key to check afterwards] */
  type Case = [string, (k: string) => Call, number | 'any4xx'];
  const post = (body: unknown, headers?: Record<string, string>): Call => ({ method: 'POST', path: '/api/payments/process', body, headers });
  const cases: Case[] = [
    ...['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', 'isPrototypeOf', 'prototype', '__defineGetter__'].map(
      (m): Case => [`metadata key ${m}`, (k) => post(withMeta(k, `{"${m}":"x"}`)), 400],
    ),
    ['nested metadata', (k) => post(withMeta(k, '{"a":{"b":"c"}}')), 400],
    ['metadata array value', (k) => post(withMeta(k, '{"a":[1,2]}')), 400],
    ['metadata null value', (k) => post(withMeta(k, '{"a":null}')), 400],
    ['metadata is an array', (k) => post(withMeta(k, '["a"]')), 400],
    ['metadata is a string', (k) => post(withMeta(k, '"a"')), 400],
    ['metadata with 51 keys', (k) => post(withMeta(k, JSON.stringify(Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, 'v']))))), 400],
    ['metadata key of 41 characters', (k) => post(withMeta(k, `{"${'k'.repeat(41)}":"v"}`)), 400],
    ['metadata value of 501 characters', (k) => post(withMeta(k, `{"a":"${'v'.repeat(501)}"}`)), 400],
    ['metadata empty key', (k) => post(withMeta(k, '{"":"v"}')), 400],
    ['metadata value 1e400', (k) => post(withMeta(k, '{"a":1e400}')), 400],
    ['amount 1e400', (k) => post(rawCreate(k, '"amount":1e400')), 400],
    ['amount -0', (k) => post(rawCreate(k, '"amount":-0')), 400],
    ['amount 0', (k) => post(rawCreate(k, '"amount":0')), 400],
    ['amount "12.345" for USD', (k) => post(rawCreate(k, '"amount":"12.345"')), 400],
    ['amount 12.345 for USD', (k) => post(rawCreate(k, '"amount":12.345')), 400],
    ['amount negative', (k) => post(rawCreate(k, '"amount":-5')), 400],
    ['amount text', (k) => post(rawCreate(k, '"amount":"ten"')), 400],
    ['amount null', (k) => post(rawCreate(k, '"amount":null')), 400],
    ['amount true', (k) => post(rawCreate(k, '"amount":true')), 400],
    ['amount array', (k) => post(rawCreate(k, '"amount":[10]')), 400],
    ['amount object', (k) => post(rawCreate(k, '"amount":{"value":10}')), 400],
    ['amount over the maximum', (k) => post(rawCreate(k, '"amount":10000000')), 400],
    ['amount 5e-324', (k) => post(rawCreate(k, '"amount":5e-324')), 400],
    ['amount hex text', (k) => post(rawCreate(k, '"amount":"0x10"')), 400],
    ['amount 1.5 JPY', (k) => post({ ...valid(k), currency: 'JPY', amount: 1.5 }), 400],
    ['unknown currency', (k) => post({ ...valid(k), currency: 'ABC' }), 400],
    ['currency number', (k) => post({ ...valid(k), currency: 840 }), 400],
    ['currency empty', (k) => post({ ...valid(k), currency: '' }), 400],
    ['currency missing', (k) => post({ ...valid(k), currency: undefined }), 400],
    ['paymentMethod missing', (k) => post({ ...valid(k), paymentMethod: undefined }), 400],
    ['paymentMethod string', (k) => post({ ...valid(k), paymentMethod: 'card' }), 400],
    ['paymentMethod array', (k) => post({ ...valid(k), paymentMethod: [] }), 400],
    ['paymentMethod type crypto', (k) => post({ ...valid(k), paymentMethod: { type: 'crypto', token: 'tok_success' } }), 400],
    ['token with a space', (k) => post({ ...valid(k), paymentMethod: { type: 'card', token: 'tok success' } }), 400],
    ['token of 256 characters', (k) => post({ ...valid(k), paymentMethod: { type: 'card', token: 't'.repeat(256) } }), 400],
    ['token unicode', (k) => post({ ...valid(k), paymentMethod: { type: 'card', token: 'tok_é💳' } }), 400],
    ['token null', (k) => post({ ...valid(k), paymentMethod: { type: 'card', token: null } }), 400],
    ['idempotencyKey missing', (k) => post({ ...valid(k), idempotencyKey: undefined }), 400],
    ['idempotencyKey empty', () => post({ ...valid(''), idempotencyKey: '' }), 400],
    ['idempotencyKey of 256 characters', (k) => post({ ...valid(k), idempotencyKey: `${k}${'k'.repeat(256)}` }), 400],
    ['idempotencyKey with a trailing space', (k) => post({ ...valid(k), idempotencyKey: `${k} ` }), 400],
    ['idempotencyKey with a tab', (k) => post({ ...valid(k), idempotencyKey: `${k}\tx` }), 400],
    ['idempotencyKey unicode', (k) => post({ ...valid(k), idempotencyKey: `${k}-ключ` }), 400],
    ['idempotencyKey lone surrogate', (k) => post(`{"idempotencyKey":"${k}\\ud800","amount":10,"currency":"USD","paymentMethod":{"type":"card","token":"tok_success"}}`), 400],
    ['idempotencyKey number', (k) => post({ ...valid(k), idempotencyKey: 12345 }), 400],
    ['header and body keys differ', (k) => post(valid(k), { 'Idempotency-Key': `${k}-other` }), 400],
    ['duplicate JSON key, last one bad', (k) => post(`{"idempotencyKey":"${k}","amount":10,"amount":"x","currency":"USD","paymentMethod":{"type":"card","token":"tok_success"}}`), 400],
    ['body not JSON', () => post('hello'), 400],
    ['body JSON array', () => post('[]'), 400],
    ['body JSON null', () => post('null'), 400],
    ['body JSON string', () => post('"x"'), 400],
    ['body JSON number', () => post('42'), 400],
    ['body empty', () => post(''), 400],
    ['body with a BOM', (k) => post(`\ufeff${JSON.stringify(valid(k))}`), 400],
    ['body deeply nested', () => post(`${'['.repeat(5000)}${']'.repeat(5000)}`), 400],
    ['body XML with an XML content type', () => post('<payment><amount>10</amount></payment>', { 'content-type': 'application/xml' }), 415],
    ['JSON sent as text/plain', (k) => post(valid(k), { 'content-type': 'text/plain' }), 415],
    ['JSON sent without a content type', (k) => ({ ...post(valid(k)), contentType: null }), 415],
    ['JSON sent as form data', (k) => post(valid(k), { 'content-type': 'application/x-www-form-urlencoded' }), 415],
    ['currency usd', (k) => post({ ...valid(k), currency: 'usd' }), 400],
    ['currency Usd', (k) => post({ ...valid(k), currency: 'Usd' }), 400],
    ['amount " 12.30"', (k) => post(rawCreate(k, '"amount":" 12.30"')), 400],
    ['amount "12.30 "', (k) => post(rawCreate(k, '"amount":"12.30 "')), 400],
    ['metadata number value', (k) => post(withMeta(k, '{"a":1}')), 400],
    ['metadata boolean value', (k) => post(withMeta(k, '{"a":true}')), 400],
    ['validate-key with a body key other than the header key', (k) => ({ method: 'POST', path: '/api/payments/validate-key', body: { idempotencyKey: k }, headers: { 'Idempotency-Key': `${k}-other` } }), 400],
    ['operator re-open reason of 501 characters', () => ({ method: 'POST', path: '/api/payments/pay_x/retry', key: OPS, body: { reason: 'r'.repeat(501) } }), 400],
    ['body truncated JSON', (k) => post(JSON.stringify(valid(k)).slice(0, 30)), 400],
    ['body over 16 KiB', (k) => post(withMeta(k, JSON.stringify({ pad: 'x'.repeat(17 * 1024) }))), 413],
    ['body over 10 MB (gateway)', (k) => post(withMeta(k, JSON.stringify({ pad: 'x'.repeat(10 * 1024 * 1024 + 10) }))), 413],
    ['headers over the limit', (k) => post(valid(k), { 'x-padding': 'x'.repeat(20 * 1024) }), 431],
    ['no API key', (k) => ({ ...post(valid(k)), key: null }), 403],
    ['unknown API key', (k) => ({ ...post(valid(k)), key: 'nobody' }), 403],
    ['wrong method on a route', (k) => ({ ...post(valid(k)), method: 'PUT' }), 403],
    ['unknown route', () => ({ path: '/api/payments/process/extra' }), 403],
    ['payment id of 3,000 bytes', () => ({ path: `/api/payments/${long(3000)}` }), 404],
    ['status of a 3,000-byte id', () => ({ path: `/api/payments/${long(3000)}/status` }), 404],
    ['retry of a 3,000-byte id', () => ({ method: 'POST', path: `/api/payments/${long(3000)}/retry` }), 404],
    ['operator retry of a 3,000-byte id', () => ({ method: 'POST', path: `/api/payments/${long(3000)}/retry`, key: OPS }), 404],
    ['payment id with unicode', () => ({ path: `/api/payments/${encodeURIComponent('pay_é')}` }), 404],
    ['key lookup of 300 characters', () => ({ path: `/api/payments/key/${'k'.repeat(300)}` }), 400],
    ['key lookup with unicode', () => ({ path: `/api/payments/key/${encodeURIComponent('ключ')}` }), 400],
    ['retry with a non-JSON body', () => ({ method: 'POST', path: '/api/payments/pay_x/retry', body: 'nope' }), 'any4xx'],
    ['validate-key with an array body', () => ({ method: 'POST', path: '/api/payments/validate-key', body: '[]' }), 400],
    ['validate-key with a bad amount', (k) => ({ method: 'POST', path: '/api/payments/validate-key', body: { ...valid(k), amount: 'x' } }), 400],
    ['audit paymentID of 3,000 bytes', () => ({ path: `/api/audit/payments?paymentID=${long(3000)}` }), 400],
    ['audit limit 0', () => ({ path: '/api/audit/payments?limit=0' }), 400],
    ['audit limit 1e400', () => ({ path: '/api/audit/payments?limit=1e400' }), 400],
    ['audit limit -1', () => ({ path: '/api/audit/payments?limit=-1' }), 400],
    ['audit order sideways', () => ({ path: '/api/audit/payments?order=sideways' }), 400],
    ['audit verify without paymentID', () => ({ path: '/api/audit/payments?verify=true' }), 400],
    ['audit from not a date', () => ({ path: '/api/audit/payments?from=yesterday' }), 400],
    ['audit cursor garbage', () => ({ path: '/api/audit/payments?cursor=%7B%22a%22%3A1%7D' }), 400],
    ['audit forged cursor for another tenant', () => ({ path: `/api/audit/payments?cursor=${Buffer.from(JSON.stringify({ tenantId: 'tenant-1', tenantSort: 'z', paymentId: 'p', version: 1 })).toString('base64url')}`, key: T2 }), 400],
    ['audit unknown parameter', () => ({ path: '/api/audit/payments?paymentId=x' }), 400],
    ['operator Idempotency-Key with a tab', () => ({ method: 'POST', path: '/api/recovery/process', key: OPS, headers: { 'Idempotency-Key': 'a\tb' } }), 400],
  ];

  it('two Idempotency-Key header lines are refused (400), not decided by the last one', async () => {
    const k = `dup-${randomUUID()}`;
    const body = JSON.stringify({ ...valid(k), idempotencyKey: undefined });
    const url = new URL(`${stack!.apiUrl}/api/payments/process`);
    // fetch joins repeated headers into one line; node:http sends each value on its own line.
    const res = await new Promise<{ status: number; body: string; requestId?: string }>((resolve, reject) => {
      const req = http.request(
        url,
        { method: 'POST', headers: { 'x-api-key': T1, 'content-type': 'application/json', 'Idempotency-Key': [`${k}-a`, `${k}-b`] } },
        (r) => {
          let text = '';
          r.on('data', (c: Buffer) => (text += c.toString()));
          r.on('end', () => resolve({ status: r.statusCode ?? 0, body: text, requestId: r.headers['x-request-id'] as string | undefined }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
    expect(res.status, res.body).toBe(400);
    expect(JSON.parse(res.body).error).toMatchObject({ code: 'INVALID_IDEMPOTENCY_KEY', details: [{ field: 'Idempotency-Key' }] });
    for (const key of [`${k}-a`, `${k}-b`]) expect((await call({ path: `/api/payments/key/${key}` })).status).toBe(404);
  });

  it(`has at least 60 cases (${cases.length})`, () => {
    expect(cases.length).toBeGreaterThanOrEqual(60);
  });

  it('answers every case with its 4xx and a code, and no payment or key is created', async () => {
    const before = { payments: await count('PaymentsTable'), keys: await count('IdempotencyKeysTable') };
    const failures: string[] = [];
    for (const [name, make, status] of cases) {
      const k = `hostile-${randomUUID()}`;
      const res = await call(make(k)).catch((err: Error) => ({ status: 0, json: undefined, text: `fetch failed: ${err.message}`, headers: new Headers() }));
      // Gateway-made errors (bad key, unknown route, too large, 431) carry x-request-id like the handlers'.
      const ok =
        (status === 'any4xx' ? res.status >= 400 && res.status < 500 : res.status === status) &&
        /^[A-Z][A-Z0-9_]+$/.test(res.json?.error?.code ?? '') &&
        typeof res.json?.error?.timestamp === 'string' &&
        !!res.headers.get('x-request-id') &&
        res.headers.get('x-request-id') === res.json?.error?.requestId;
      if (!ok) failures.push(`${name}: ${res.status} ${res.text.slice(0, 200)}`);
      const lookup = await call({ path: `/api/payments/key/${k}` });
      if (lookup.status !== 404) failures.push(`${name}: key ${k} exists afterwards (${lookup.status})`);
    }
    expect(failures).toEqual([]);
    expect({ payments: await count('PaymentsTable'), keys: await count('IdempotencyKeysTable') }).toEqual(before);
  });
});
