/**
 * The typed client: its retry policy against scripted answers, its generated types against
 * docs/openapi.yaml, and the whole thing against the local stack, including a lost first response.
 */
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalStack } from '@idempotent-payments/local-stack';
import { startProviderSimulator } from '@idempotent-payments/provider-simulator';
import { startLocalRun } from '../../../scripts/drill-env';
import { generateTypes, TYPES_PATH } from '../scripts/generate-types';
import { createPaymentsClient, isRetryable, PaymentsApiError, retryDelayMs } from '../src/index';

const input = { amount: 25, currency: 'USD', paymentMethod: { type: 'card' as const, token: 'tok_success' } };

const paymentBody = (id: string) => ({
  id,
  paymentID: id,
  idempotencyKey: 'k',
  status: 'pending',
  amount: 25,
  amountMinor: 2500,
  currency: 'USD',
  paymentMethod: { type: 'card', token: '*****cess' },
  metadata: {},
  retryCount: 0,
  maxRetries: 3,
  lastError: null,
  createdAt: '2026-11-26T00:00:00.000Z',
  updatedAt: '2026-11-26T00:00:00.000Z',
  processedAt: null,
  nextRetryAt: null,
  version: 1,
});

type Answer = { status: number; body?: unknown; headers?: Record<string, string> } | 'network-error' | 'hang';

/** A fetch that answers from a script and records each request's method, path and idempotency key. */
function scripted(answers: Answer[], options: { timeoutMs?: number } = {}) {
  const requests: Array<{ method: string; path: string; key: string | null }> = [];
  const delays: number[] = [];
  const client = createPaymentsClient({
    baseUrl: 'http://api.test',
    apiKey: 'k1',
    retry: { maxAttempts: 4, baseDelayMs: 100, maxDelayMs: 5_000 },
    ...options,
    random: () => 0.5,
    sleep: async (ms, signal) => {
      delays.push(ms);
      if (signal?.aborted) throw signal.reason;
    },
    fetch: async (req) => {
      requests.push({ method: req.method, path: new URL(req.url).pathname, key: req.headers.get('idempotency-key') });
      const a = answers.shift();
      if (!a) throw new Error('script ran out');
      if (a === 'network-error') throw new TypeError('fetch failed');
      // No answer until the request's signal aborts it, as fetch does.
      if (a === 'hang') return new Promise<Response>((_, reject) => req.signal.addEventListener('abort', () => reject(req.signal.reason), { once: true }));
      return new Response(JSON.stringify(a.body ?? {}), { status: a.status, headers: { 'content-type': 'application/json', ...a.headers } });
    },
  });
  return { client, requests, delays };
}

const error = (status: number, code: string, retryable: boolean, headers?: Record<string, string>): Answer => ({
  status,
  headers,
  body: { error: { code, message: code, retryable, requestId: 'r', timestamp: '2026-11-26T00:00:00.000Z', details: [{ code, message: code }] } },
});

describe('retry policy', () => {
  it.each([
    ['a network error', 'network-error' as Answer],
    ['429', error(429, 'RATE_LIMITED', true)],
    ['409 CONCURRENT_UPDATE', error(409, 'CONCURRENT_UPDATE', true)],
    ['500', error(500, 'INTERNAL_ERROR', true)],
    ['503', error(503, 'SERVICE_UNAVAILABLE', true)],
    ['502 without a body', { status: 502 } as Answer],
  ])('createPayment retries after %s with the same idempotency key', async (_name, first) => {
    const { client, requests } = scripted([first, { status: 201, body: paymentBody('pay_1'), headers: { 'idempotent-replayed': 'true' } }]);
    const res = await client.createPayment(input);
    expect(res.payment.id).toBe('pay_1');
    expect(res.replayed).toBe(true);
    expect(requests).toHaveLength(2);
    expect(requests[0]!.key).toBeTruthy();
    expect(requests[1]!.key).toBe(requests[0]!.key);
    expect(res.idempotencyKey).toBe(requests[0]!.key);
  });

  it.each([
    ['400', error(400, 'AMOUNT_PRECISION_EXCEEDED', false), 400],
    ['404', error(404, 'PAYMENT_NOT_FOUND', false), 404],
    ['409 INVALID_STATE_TRANSITION', error(409, 'INVALID_STATE_TRANSITION', false), 409],
    ['422', error(422, 'IDEMPOTENCY_KEY_MISMATCH', false), 422],
  ])('never retries %s: it throws the API error at once', async (_name, answer, status) => {
    const { client, requests } = scripted([answer]);
    const err = await client.createPayment(input).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PaymentsApiError);
    expect(err).toMatchObject({ status, retryable: false, details: [{ code: expect.any(String) }] });
    expect(requests).toHaveLength(1);
  });

  it('waits at least Retry-After, and gives up after maxAttempts with the last error', async () => {
    const busy = error(503, 'SERVICE_UNAVAILABLE', true, { 'retry-after': '3' });
    const { client, requests, delays } = scripted([busy, busy, busy, busy]);
    const err = await client.createPayment(input).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 503, code: 'SERVICE_UNAVAILABLE' });
    expect(requests).toHaveLength(4);
    expect(new Set(requests.map((r) => r.key)).size).toBe(1);
    expect(delays).toEqual([3000, 3000, 3000]);
  });

  it('each logical payment gets its own key unless the caller gives one', async () => {
    const ok = (): Answer => ({ status: 201, body: paymentBody('pay_x') });
    const { client, requests } = scripted([ok(), ok(), ok()]);
    await client.createPayment(input);
    await client.createPayment(input);
    await client.createPayment(input, { idempotencyKey: 'order-7' });
    expect(requests[0]!.key).not.toBe(requests[1]!.key);
    expect(requests[2]!.key).toBe('order-7');
  });

  it('actions (retryPayment, startRecovery) carry an Idempotency-Key, the same on every retry, so a lost answer is retried safely', async () => {
    const a = scripted(['network-error', error(500, 'INTERNAL_ERROR', true), error(409, 'IDEMPOTENCY_IN_PROGRESS', true), { status: 202, body: paymentBody('pay_2') }]);
    expect((await a.client.retryPayment('pay_2', { reason: 'incident over' })).id).toBe('pay_2');
    expect(a.requests).toHaveLength(4);
    expect(a.requests[0]!.key).toBeTruthy();
    expect(new Set(a.requests.map((r) => r.key)).size).toBe(1);
    const b = scripted(['network-error', { status: 202, body: { runId: 'run_1', status: 'running', alreadyRunning: false, startedAt: '2030-01-01T00:00:00.000Z' } }]);
    expect((await b.client.startRecovery({ idempotencyKey: 'run 7' })).runId).toBe('run_1');
    expect(b.requests.map((r) => r.key)).toEqual(['run 7', 'run 7']);
    // Each call is its own action: a new key, unless the caller gives one.
    const c = scripted([{ status: 202, body: paymentBody('pay_3') }, { status: 202, body: paymentBody('pay_3') }]);
    await c.client.retryPayment('pay_3');
    await c.client.retryPayment('pay_3');
    expect(c.requests[0]!.key).not.toBe(c.requests[1]!.key);
    // Not retried: an answer that says the request itself is wrong.
    const d = scripted([error(409, 'INVALID_STATE_TRANSITION', false)]);
    await expect(d.client.retryPayment('pay_4')).rejects.toMatchObject({ status: 409, code: 'INVALID_STATE_TRANSITION' });
    expect(d.requests).toHaveLength(1);
  });

  it('createRefund and cancelPayment send one Idempotency-Key per call, the same on every retry', async () => {
    const refund = { id: 'ref_1', paymentID: 'pay_5', amount: 5, amountMinor: 500, currency: 'USD', status: 'pending', reason: null, failureReason: null, createdAt: '2030-01-01T00:00:00.000Z', updatedAt: '2030-01-01T00:00:00.000Z', version: 1 };
    const a = scripted(['network-error', error(503, 'SERVICE_UNAVAILABLE', true), { status: 201, body: refund, headers: { 'idempotent-replayed': 'true' } }]);
    const made = await a.client.createRefund('pay_5', { amount: 5 });
    expect(made).toMatchObject({ refund: { id: 'ref_1' }, replayed: true });
    expect(a.requests.map((r) => r.key)).toEqual([made.idempotencyKey, made.idempotencyKey, made.idempotencyKey]);
    expect(a.requests[0]).toMatchObject({ method: 'POST', path: '/api/payments/pay_5/refunds' });
    const b = scripted(['network-error', error(409, 'IDEMPOTENCY_IN_PROGRESS', true), { status: 200, body: { ...paymentBody('pay_6'), status: 'canceled' } }]);
    expect((await b.client.cancelPayment('pay_6', { reason: 'order withdrawn' })).status).toBe('canceled');
    expect(b.requests).toHaveLength(3);
    expect(b.requests[0]).toMatchObject({ method: 'POST', path: '/api/payments/pay_6/cancel' });
    expect(b.requests[0]!.key).toBeTruthy();
    expect(new Set(b.requests.map((r) => r.key)).size).toBe(1);
    // Each call is its own refund: a new key, unless the caller gives one.
    const c = scripted([{ status: 201, body: refund }, { status: 201, body: refund }]);
    await c.client.createRefund('pay_5');
    await c.client.createRefund('pay_5', {}, { idempotencyKey: 'refund order-7' });
    expect(c.requests[0]!.key).not.toBe(c.requests[1]!.key);
    expect(c.requests[1]!.key).toBe('refund order-7');
  });

  it('without an idempotency guarantee, only answers that mean nothing happened are retried', () => {
    expect(isRetryable({ status: 503 }, 'unsafe')).toBe(true);
    expect(isRetryable({ status: 409, code: 'CONCURRENT_UPDATE' }, 'unsafe')).toBe(true);
    expect(isRetryable({}, 'unsafe')).toBe(false);
    expect(isRetryable({ status: 500 }, 'unsafe')).toBe(false);
    expect(isRetryable({ status: 409, code: 'IDEMPOTENCY_IN_PROGRESS' }, 'unsafe')).toBe(false);
  });

  it('an attempt without an answer times out and is retried with the same key; the last timeout is a TimeoutError', async () => {
    const a = scripted(['hang', { status: 201, body: paymentBody('pay_5') }], { timeoutMs: 20 });
    const res = await a.client.createPayment(input);
    expect(res.payment.id).toBe('pay_5');
    expect(a.requests).toHaveLength(2);
    expect(a.requests[1]!.key).toBe(a.requests[0]!.key);
    const b = scripted(['hang', 'hang', 'hang', 'hang']);
    const err = await b.client.getPayment('pay_6', { timeoutMs: 10 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'TimeoutError' });
    expect(b.requests).toHaveLength(4);
  });

  it("the caller's AbortSignal cancels the call and its retries", async () => {
    const controller = new AbortController();
    const a = scripted(['hang', 'hang'], { timeoutMs: 60_000 });
    setTimeout(() => controller.abort(), 20);
    const err = await a.client.getPayment('pay_7', { signal: controller.signal }).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'AbortError' });
    expect(a.requests).toHaveLength(1);
    // Already aborted: nothing is sent.
    const b = scripted([]);
    await expect(b.client.listPayments({}, { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    expect(b.requests).toHaveLength(0);
    // Aborted while waiting to retry: no further attempt.
    const c = new AbortController();
    const d = scripted([error(503, 'SERVICE_UNAVAILABLE', true), { status: 200, body: paymentBody('pay_8') }]);
    const waiting = d.client.getPayment('pay_8', { signal: c.signal });
    c.abort();
    await expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
    expect(d.requests.length).toBeLessThanOrEqual(1);
  });

  it('backoff is exponential with full jitter, capped, and never below Retry-After', () => {
    const opts = { baseDelayMs: 100, maxDelayMs: 1_000 };
    expect(retryDelayMs(0, {}, opts, () => 0.999)).toBeLessThan(100);
    expect(retryDelayMs(3, {}, opts, () => 0.999)).toBeCloseTo(799.2);
    expect(retryDelayMs(3, {}, opts, () => 0)).toBe(0);
    expect(retryDelayMs(10, {}, opts, () => 0.999)).toBeLessThanOrEqual(1_000);
    expect(retryDelayMs(0, { retryAfter: '2' }, { maxDelayMs: 10_000 }, () => 0)).toBe(2_000);
    expect(retryDelayMs(0, { retryAfter: '60' }, opts, () => 0)).toBe(1_000);
    const now = Date.parse('2026-11-26T00:00:00Z');
    expect(retryDelayMs(0, { retryAfter: 'Thu, 26 Nov 2026 00:00:03 GMT' }, { maxDelayMs: 10_000 }, () => 0, now)).toBe(3_000);
  });
});

describe('generated types', () => {
  it('api-types.ts is what docs/openapi.yaml generates (run npm run client:generate)', async () => {
    expect(await generateTypes()).toBe(readFileSync(TYPES_PATH, 'utf8'));
  });
});

describe('against the local stack', () => {
  let stack: Awaited<ReturnType<typeof startLocalStack>> | undefined;
  let provider: Awaited<ReturnType<typeof startProviderSimulator>> | undefined;
  let run: Awaited<ReturnType<typeof startLocalRun>> | undefined;

  beforeAll(async () => {
    // A long backoff: a payment whose first confirm failed stays retrying (cancelable) while a test looks at it.
    run = await startLocalRun({ log: false, schedules: false, extraEnv: { RETRY_BASE_SECONDS: '600' } });
    ({ stack, provider } = run);
  });

  afterAll(async () => {
    await run?.stop();
  });

  it('a lost first response: the retry returns the same payment, replayed, and the card is charged once', async () => {
    const sent: Array<string | null> = [];
    let dropped = false;
    const client = createPaymentsClient({
      baseUrl: stack!.apiUrl,
      apiKey: 'local-key-1',
      retry: { baseDelayMs: 10 },
      // The server handles the first request; its answer is lost on the way back.
      fetch: async (req) => {
        sent.push(req.headers.get('idempotency-key'));
        const res = await fetch(req);
        if (!dropped) {
          dropped = true;
          await res.arrayBuffer();
          throw new TypeError('fetch failed: connection reset');
        }
        return res;
      },
    });
    const orderId = randomUUID();
    const { payment, replayed, idempotencyKey } = await client.createPayment({ ...input, metadata: { orderId } });
    expect(replayed).toBe(true);
    expect(sent).toEqual([idempotencyKey, idempotencyKey]);
    expect(payment).toMatchObject({ idempotencyKey, amount: 25, amountMinor: 2500, currency: 'USD', metadata: { orderId } });
    expect((await client.getKeyRecord(idempotencyKey)).paymentID).toBe(payment.id);

    const deadline = Date.now() + 20_000;
    while ((await client.getPaymentStatus(payment.id)).status !== 'success' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect((await client.getPayment(payment.id)).status).toBe('success');
    expect(provider!.ledger(payment.id).filter((e) => e.status === 'succeeded')).toHaveLength(1);
  });

  it('refunds a succeeded payment (replayed under its key), lists its refunds, and cancels a retrying payment', async () => {
    const client = createPaymentsClient({ baseUrl: stack!.apiUrl, apiKey: 'local-key-1', retry: { baseDelayMs: 10 } });
    const { payment } = await client.createPayment({ ...input, metadata: { orderId: randomUUID() } });
    const settled = async (id: string, done: (s: string) => boolean) => {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const p = await client.getPayment(id);
        if (done(p.status) || Date.now() > deadline) return p;
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    expect((await settled(payment.id, (s) => s === 'success')).status).toBe('success');

    const first = await client.createRefund(payment.id, { amount: 10, reason: 'one item returned' });
    expect(first).toMatchObject({ replayed: false, refund: { paymentID: payment.id, amount: 10, amountMinor: 1000, currency: 'USD', status: 'pending', reason: 'one item returned' } });
    const again = await client.createRefund(payment.id, { amount: 10, reason: 'one item returned' }, { idempotencyKey: first.idempotencyKey });
    expect(again).toMatchObject({ replayed: true, refund: { id: first.refund.id } });
    await expect(client.createRefund(payment.id, { amount: 20 })).rejects.toMatchObject({ status: 409, code: 'REFUND_EXCEEDS_CAPTURED' });
    const deadline = Date.now() + 20_000;
    let list = await client.listRefunds(payment.id);
    while (list.items[0]?.status === 'pending' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      list = await client.listRefunds(payment.id);
    }
    expect(list).toMatchObject({ count: 1, nextCursor: null, items: [{ id: first.refund.id, status: 'succeeded' }] });
    expect(await client.getPayment(payment.id)).toMatchObject({ status: 'success', amountRefunded: 10, amountRefundedMinor: 1000 });
    expect(provider!.ledger(payment.id).filter((e) => e.status === 'succeeded')).toHaveLength(1);
    expect(provider!.ledger(payment.id).filter((e) => e.status === 'refunded').map((e) => e.amountMinor)).toEqual([1000]);

    // The first confirm is a provider 5xx that charged nothing: the payment waits, retrying, for its backoff.
    const open = (await client.createPayment({ ...input, paymentMethod: { type: 'card', token: 'tok_transient_9' } })).payment;
    expect((await settled(open.id, (s) => s === 'retrying')).status).toBe('retrying');
    const canceled = await client.cancelPayment(open.id, { reason: 'order withdrawn', idempotencyKey: `cancel-${open.id}` });
    expect(canceled).toMatchObject({ id: open.id, status: 'canceled' });
    expect(await client.cancelPayment(open.id, { reason: 'order withdrawn', idempotencyKey: `cancel-${open.id}` })).toEqual(canceled);
    await expect(client.cancelPayment(open.id)).rejects.toMatchObject({ status: 409, code: 'INVALID_STATE_TRANSITION' });
    expect(provider!.ledger(open.id).filter((e) => e.status === 'succeeded')).toHaveLength(0);
  });

  it("lists the tenant's payments page by page, and reports API errors typed", async () => {
    const client = createPaymentsClient({ baseUrl: stack!.apiUrl, apiKey: 'local-key-2' });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await client.createPayment({ ...input, amount: 10 + i })).payment.id);
    const listed: string[] = [];
    for await (const p of client.allPayments({ limit: 2 })) listed.push(p.id);
    expect(listed.slice(0, 5).sort()).toEqual([...ids].sort());
    expect(new Set(listed).size).toBe(listed.length);

    const err = await client.createPayment({ ...input, amount: 1.001 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PaymentsApiError);
    expect(err).toMatchObject({ status: 400, code: 'AMOUNT_PRECISION_EXCEEDED', details: [{ field: 'amount' }] });
    await expect(client.getPayment('pay_missing')).rejects.toMatchObject({ status: 404, code: 'PAYMENT_NOT_FOUND' });
  });
});
