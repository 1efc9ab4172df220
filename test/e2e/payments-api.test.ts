/**
 * HTTP against the local stack: the real bundles from cdk.out behind the emulated API Gateway, with
 * DynamoDB Local, fauxqs and the provider simulator.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalStack } from '@idempotent-payments/local-stack';
import { startProviderSimulator } from '@idempotent-payments/provider-simulator';
import { localProviderEnv } from '../../scripts/drill-env';
import { testLog } from '../helpers/test-log';

const output = testLog();

type Stack = Awaited<ReturnType<typeof startLocalStack>>;
type Simulator = Awaited<ReturnType<typeof startProviderSimulator>>;
let stack: Stack | undefined;
let provider: Simulator | undefined;

beforeAll(async () => {
  provider = await startProviderSimulator({ port: 0 });
  // localProviderEnv: the simulator's URL and a test key in place of the stage's provider secret.
  stack = await startLocalStack({ apiPort: 0, log: output.log, extraEnv: { ...localProviderEnv(provider.url), RETRY_BASE_SECONDS: '0.05' } });
});

afterAll(async () => {
  await stack?.stop();
  await provider?.stop();
});

async function call(method: string, path: string, opts: { body?: unknown; key?: string | null; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...opts.headers };
  if (opts.key !== null) headers['x-api-key'] = opts.key ?? 'local-key-1';
  const res = await fetch(`${stack!.apiUrl}${path}`, {
    method,
    headers,
    body: opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, json, text };
}

const payment = (key: string, overrides: Record<string, unknown> = {}) => ({
  idempotencyKey: key,
  amount: 42.5,
  currency: 'USD',
  paymentMethod: { type: 'card', token: 'tok_success' },
  metadata: { orderId: key },
  ...overrides,
});

async function waitFor<T>(fn: () => Promise<T>, done: (v: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (done(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('payments API over HTTP', () => {
  it('round-trips a payment: POST creates it, GET returns it, the worker charges it once', async () => {
    const key = `e2e-${randomUUID()}`;
    const created = await call('POST', '/api/payments/process', { body: payment(key) });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ idempotencyKey: key, amount: 42.5, currency: 'USD' });
    const got = await call('GET', `/api/payments/${created.json.id}`);
    expect(got.status).toBe(200);
    expect(got.json.id).toBe(created.json.id);
    const done = await waitFor(
      () => call('GET', `/api/payments/${created.json.id}/status`),
      (r) => r.json?.status === 'success',
    );
    expect(done.json.status).toBe('success');
    expect(provider!.ledger(created.json.id).filter((e) => e.status === 'succeeded')).toHaveLength(1);
  });

  it('200 concurrent identical requests: one payment, same id for all, one charge', async () => {
    const key = `e2e-${randomUUID()}`;
    const responses = await Promise.all(Array.from({ length: 200 }, () => call('POST', '/api/payments/process', { body: payment(key) })));
    expect(responses.map((r) => r.status)).toEqual(Array(200).fill(201));
    const ids = new Set(responses.map((r) => r.json.id));
    expect(ids.size).toBe(1);
    expect(responses.filter((r) => r.headers.get('idempotent-replayed') === 'true')).toHaveLength(199);
    const [id] = [...ids];
    await waitFor(() => call('GET', `/api/payments/${id}/status`), (r) => r.json?.status === 'success');
    expect(provider!.ledger(id)).toHaveLength(1);
  });

  it('200 concurrent requests with one key and two amounts: one payment, the losers get 422', async () => {
    const key = `e2e-${randomUUID()}`;
    const responses = await Promise.all(
      Array.from({ length: 200 }, (_, i) => call('POST', '/api/payments/process', { body: payment(key, { amount: i % 2 ? 10 : 20 }) })),
    );
    const winners = responses.filter((r) => r.status === 201);
    const losers = responses.filter((r) => r.status === 422);
    expect(winners.length + losers.length).toBe(200);
    expect(new Set(winners.map((r) => r.json.amount)).size).toBe(1);
    expect(new Set(winners.map((r) => r.json.id)).size).toBe(1);
    for (const l of losers) expect(l.json.error.code).toBe('IDEMPOTENCY_KEY_MISMATCH');
  });

  it('keeps tenants apart: another tenant cannot read a payment or its key', async () => {
    const key = `e2e-${randomUUID()}`;
    const mine = await call('POST', '/api/payments/process', { body: payment(key) });
    const theirs = await call('POST', '/api/payments/process', { body: payment(key), key: 'local-key-2' });
    expect(theirs.status).toBe(201);
    expect(theirs.json.id).not.toBe(mine.json.id);
    const cross = await call('GET', `/api/payments/${mine.json.id}`, { key: 'local-key-2' });
    expect(cross.status).toBe(404);
    expect(cross.json.error.code).toBe('PAYMENT_NOT_FOUND');
    expect((await call('GET', `/api/payments/key/${key}`, { key: 'local-key-2' })).json.paymentID).toBe(theirs.json.id);
  });

  it('rejects a missing or unknown API key with 403 as API Gateway does', async () => {
    const missing = await call('POST', '/api/payments/process', { body: payment('x'), key: null });
    expect(missing.status).toBe(403);
    const unknown = await call('POST', '/api/payments/process', { body: payment('x'), key: 'not-a-key' });
    expect(unknown.status).toBe(403);
  });

  describe('validation: every bad input gets a 4xx with its own code and the error shape', () => {
    const key = () => `e2e-${randomUUID()}`;
    const cases: Array<[string, () => unknown, number, string]> = [
      ['malformed JSON', () => '{"amount": 1,', 400, 'INVALID_JSON'],
      ['a JSON array', () => '[1,2]', 400, 'INVALID_JSON'],
      ['an empty body', () => '', 400, 'INVALID_JSON'],
      ['no idempotency key', () => ({ ...payment('x'), idempotencyKey: undefined }), 400, 'MISSING_IDEMPOTENCY_KEY'],
      ['an empty key', () => payment(''), 400, 'INVALID_IDEMPOTENCY_KEY'],
      ['a key over 255 characters', () => payment('k'.repeat(256)), 400, 'INVALID_IDEMPOTENCY_KEY'],
      ['no amount', () => payment(key(), { amount: undefined }), 400, 'MISSING_FIELD'],
      ['a negative amount', () => payment(key(), { amount: -10 }), 400, 'INVALID_AMOUNT'],
      ['a zero amount', () => payment(key(), { amount: 0 }), 400, 'INVALID_AMOUNT'],
      ['a non-numeric amount', () => payment(key(), { amount: 'ten' }), 400, 'INVALID_AMOUNT'],
      ['a non-finite amount', () => payment(key(), { amount: 'Infinity' }), 400, 'INVALID_AMOUNT'],
      ['three decimals in USD', () => payment(key(), { amount: 10.005 }), 400, 'AMOUNT_PRECISION_EXCEEDED'],
      ['decimals in JPY', () => payment(key(), { amount: 100.5, currency: 'JPY' }), 400, 'AMOUNT_PRECISION_EXCEEDED'],
      ['four decimals in KWD', () => payment(key(), { amount: 1.2345, currency: 'KWD' }), 400, 'AMOUNT_PRECISION_EXCEEDED'],
      ['an amount over the maximum', () => payment(key(), { amount: 1_000_000.01 }), 400, 'AMOUNT_TOO_LARGE'],
      ['no currency', () => payment(key(), { currency: undefined }), 400, 'MISSING_FIELD'],
      ['an unknown currency', () => payment(key(), { currency: 'XYZ' }), 400, 'UNSUPPORTED_CURRENCY'],
      ['no payment method', () => payment(key(), { paymentMethod: undefined }), 400, 'MISSING_FIELD'],
      ['an unsupported payment method', () => payment(key(), { paymentMethod: { type: 'crypto', token: 'tok_success' } }), 400, 'UNSUPPORTED_PAYMENT_METHOD'],
      ['a bad token', () => payment(key(), { paymentMethod: { type: 'card', token: '<script>' } }), 400, 'INVALID_PAYMENT_METHOD'],
      ['too many metadata keys', () => payment(key(), { metadata: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, 'v'])) }), 400, 'INVALID_METADATA'],
      ['a metadata key over 40 characters', () => payment(key(), { metadata: { ['k'.repeat(41)]: 'v' } }), 400, 'INVALID_METADATA'],
      ['a metadata value over 500 characters', () => payment(key(), { metadata: { note: 'v'.repeat(501) } }), 400, 'INVALID_METADATA'],
      ['an oversized body', () => payment(key(), { metadata: { a: 'x'.repeat(400) }, padding: 'y'.repeat(20_000) }), 413, 'PAYLOAD_TOO_LARGE'],
    ];
    it.each(cases)('%s', async (_name, body, status, code) => {
      const res = await call('POST', '/api/payments/process', { body: body() });
      expect(res.status).toBe(status);
      expect(res.json.error).toMatchObject({ code, retryable: false });
      expect(typeof res.json.error.message).toBe('string');
      expect(res.json.error.requestId).toBeTruthy();
      expect(Number.isNaN(Date.parse(res.json.error.timestamp))).toBe(false);
      expect(res.text).not.toMatch(/at .*\.(ts|js|mjs):\d+/);
    });

    describe('issue 17: what the provider cannot take is refused at create, never accepted and left to fail', () => {
      /** A refused create leaves nothing behind: its key holds no payment. */
      const refused = async (body: Record<string, unknown>, code: string) => {
        const res = await call('POST', '/api/payments/process', { body });
        expect({ status: res.status, code: res.json?.error?.code, retryable: res.json?.error?.retryable }).toEqual({ status: 400, code, retryable: false });
        expect((await call('GET', `/api/payments/key/${body.idempotencyKey as string}`)).status).toBe(404);
      };

      it('50 metadata keys (no room for the keys the adapter adds) and amounts below the provider minimum or finer than its unit are 400', async () => {
        await refused(payment(key(), { metadata: Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`k${i}`, 'v'])) }), 'INVALID_METADATA');
        await refused(payment(key(), { amount: 0.49 }), 'AMOUNT_BELOW_MINIMUM');
        await refused(payment(key(), { amount: 10.5, currency: 'MGA' }), 'AMOUNT_PRECISION_EXCEEDED');
        await refused(payment(key(), { amount: 1.005, currency: 'KWD' }), 'AMOUNT_PRECISION_EXCEEDED');
      });

      it('a lone UTF-16 surrogate in metadata is 400 at create (the provider call could never carry it)', async () => {
        const k = key();
        const body = JSON.stringify(payment(k)).replace(`"orderId":"${k}"`, '"orderId":"\\ud800x"');
        expect(JSON.parse(body).metadata.orderId).toBe('\ud800x');
        const res = await call('POST', '/api/payments/process', { body });
        expect({ status: res.status, code: res.json?.error?.code }).toEqual({ status: 400, code: 'INVALID_METADATA' });
        expect((await call('GET', `/api/payments/key/${k}`)).status).toBe(404);
      });
    });

    it('a header key that differs from the body key is 400 IDEMPOTENCY_KEY_CONFLICT', async () => {
      const res = await call('POST', '/api/payments/process', { body: payment('a-key'), headers: { 'Idempotency-Key': 'b-key' } });
      expect(res.status).toBe(400);
      expect(res.json.error.code).toBe('IDEMPOTENCY_KEY_CONFLICT');
    });

    it('unknown payments and keys are 404; retrying a non-retryable payment is 409', async () => {
      expect((await call('GET', '/api/payments/pay_doesnotexist')).json.error.code).toBe('PAYMENT_NOT_FOUND');
      expect((await call('GET', '/api/payments/pay_doesnotexist/status')).status).toBe(404);
      expect((await call('GET', '/api/payments/key/never-used')).status).toBe(404);
      const created = await call('POST', '/api/payments/process', { body: payment(`e2e-${randomUUID()}`) });
      await waitFor(() => call('GET', `/api/payments/${created.json.id}/status`), (r) => r.json?.status === 'success');
      const retry = await call('POST', `/api/payments/${created.json.id}/retry`);
      expect(retry.status).toBe(409);
      expect(retry.json.error.code).toBe('INVALID_STATE_TRANSITION');
    });
  });
});
