/**
 * Tenant webhooks end to end on the local stack: a tenant registers a loopback http receiver, a payment
 * succeeds against the provider simulator, and the receiver gets `payment.succeeded`, signed so that the
 * client package's verifyWebhook accepts it. The event travels the whole way: Payments stream → event
 * function (stored, fanned out) → delivery queue → delivery function → HTTP.
 *
 * The receiver answers 500 to its first request: the same delivery comes again (retry through an SQS
 * delay), and its dedupe by event id processes the event once. A resend delivers the same event (same
 * id) again; after rotate-secret each delivery carries two v1 signatures, one per valid secret.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyWebhook } from '../../packages/client/src/verify-webhook';
import { startLocalRun } from '../../scripts/drill-env';
import { testLog } from '../helpers/test-log';
import { until as waitUntil } from '../helpers/until';

const output = testLog();
let run: Awaited<ReturnType<typeof startLocalRun>> | undefined;
let server: Server | undefined;

interface Delivery {
  readonly eventId: string;
  readonly type: string;
  readonly objectId: string;
  readonly deliveryId: string;
  readonly signature: string;
  readonly raw: string;
  readonly answered: number;
}

/** What the receiver saw, and what it processed once per event id (the dedupe a receiver must do). */
const deliveries: Delivery[] = [];
const processed = new Map<string, number>();
/** Answers to the next requests, in order; 200 once they run out. */
const answers: number[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const answered = answers.shift() ?? 200;
      try {
        const e = JSON.parse(raw) as { id: string; type: string; data: { object: { id: string } } };
        deliveries.push({ eventId: e.id, type: e.type, objectId: e.data.object.id, deliveryId: String(req.headers['payments-delivery-id']), signature: String(req.headers['payments-signature']), raw, answered });
        if (answered === 200) processed.set(e.id, (processed.get(e.id) ?? 0) + (processed.has(e.id) ? 0 : 1));
      } catch {
        // a body that is not an event is recorded as nothing
      }
      res.writeHead(answered).end();
    });
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
  run = await startLocalRun({
    log: output.log,
    // The first retry comes within a second here (the deployed default base is 5 s).
    extraEnv: { WEBHOOK_RETRY_BASE_SECONDS: '1', WEBHOOK_RETRY_CAP_SECONDS: '2' },
  });
}, 180_000);

afterAll(async () => {
  try {
    await run?.stop();
  } finally {
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((r) => server!.close(() => r()));
    }
  }
});

async function call(method: string, path: string, body?: unknown, key = 'local-key-1') {
  const res = await fetch(`${run!.stack.apiUrl}${path}`, {
    method,
    headers: { 'x-api-key': key, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: (text ? JSON.parse(text) : undefined) as any };
}


const until = <T>(fn: () => T | Promise<T>, ok: (v: T) => boolean, timeoutMs = 45_000) => waitUntil(fn, ok, timeoutMs);

const receiverUrl = () => `http://127.0.0.1:${(server!.address() as AddressInfo).port}/hooks`;
const nowSeconds = () => Math.floor(Date.now() / 1000);

describe('webhooks out, on the local stack', () => {
  let secret = '';
  let endpointId = '';
  let paymentId = '';

  it('a registered loopback receiver gets payment.succeeded, signed; a 500 brings the same delivery again and the event is processed once', async () => {
    const created = await call('POST', '/api/webhook-endpoints', { url: receiverUrl(), events: ['payment.succeeded', 'payment.failed'] });
    expect(created.status).toBe(201);
    ({ secret, id: endpointId } = created.json);
    answers.push(500);

    const pay = await call('POST', '/api/payments/process', { idempotencyKey: `wo-${randomUUID()}`, amount: 12.34, currency: 'EUR', paymentMethod: { type: 'card', token: 'tok_success' } });
    expect(pay.status).toBe(201);
    paymentId = pay.json.id;

    const mine = () => deliveries.filter((d) => d.objectId === paymentId);
    const got = await until(mine, (d) => d.length >= 2);
    expect(got[0]!.answered).toBe(500);
    expect(got[1]!.answered).toBe(200);
    // The same event and the same delivery, both times; the signature verifies with the endpoint's secret.
    expect(new Set(got.map((d) => d.eventId)).size).toBe(1);
    expect(new Set(got.map((d) => d.deliveryId)).size).toBe(1);
    for (const d of got) {
      expect(d.type).toBe('payment.succeeded');
      expect(verifyWebhook(d.raw, d.signature, secret, 300, nowSeconds()).ok).toBe(true);
      expect(verifyWebhook(d.raw, d.signature, 'whsec_someone_else', 300, nowSeconds()).ok).toBe(false);
    }
    const event = JSON.parse(got[1]!.raw);
    expect(event).toMatchObject({ type: 'payment.succeeded', tenantId: expect.any(String), data: { object: { id: paymentId, status: 'success', version: expect.any(Number) } } });
    expect(processed.get(got[0]!.eventId)).toBe(1);

    // The tenant sees it, newest first; another tenant does not.
    const listed = await call('GET', '/api/events?limit=5');
    expect(listed.status).toBe(200);
    expect(listed.json.items.map((e: { id: string }) => e.id)).toContain(got[0]!.eventId);
    const other = await call('GET', '/api/events?limit=100', undefined, 'local-key-2');
    expect(other.json.items.map((e: { id: string }) => e.id)).not.toContain(got[0]!.eventId);
  });

  it('resend delivers the same event again (deduped by id); after rotate-secret each delivery carries two v1, one per secret', async () => {
    const [first] = deliveries.filter((d) => d.objectId === paymentId);
    const before = deliveries.length;
    const resent = await call('POST', `/api/events/${first!.eventId}/resend`);
    expect(resent).toEqual({ status: 202, json: { eventId: first!.eventId, deliveries: 1 } });
    const again = await until(() => deliveries.slice(before), (d) => d.length >= 1);
    expect(again[0]!.eventId).toBe(first!.eventId);
    expect(again[0]!.deliveryId).not.toBe(first!.deliveryId);
    expect(processed.get(first!.eventId)).toBe(1);

    const rotated = await call('POST', `/api/webhook-endpoints/${endpointId}/rotate-secret`);
    expect(rotated.status).toBe(200);
    expect(rotated.json.secret).not.toBe(secret);
    const listed = await call('GET', '/api/webhook-endpoints');
    expect(JSON.stringify(listed.json)).not.toContain('whsec_');

    const mark = deliveries.length;
    await call('POST', `/api/events/${first!.eventId}/resend`);
    const [signed] = await until(() => deliveries.slice(mark), (d) => d.length >= 1);
    expect(signed!.signature.match(/v1=/g)).toHaveLength(2);
    expect(verifyWebhook(signed!.raw, signed!.signature, secret, 300, nowSeconds()).ok).toBe(true);
    expect(verifyWebhook(signed!.raw, signed!.signature, rotated.json.secret, 300, nowSeconds()).ok).toBe(true);
    // The body is the stored event, byte for byte, whichever round carried it.
    expect(signed!.raw).toBe(first!.raw);
  });

  it('a refund of the payment notifies refund.succeeded (the refunds API view, signed); the payment version it writes is no second payment event', async () => {
    const hooked = await call('POST', '/api/webhook-endpoints', { url: receiverUrl(), events: ['refund.succeeded', 'refund.failed'] });
    expect(hooked.status).toBe(201);
    const res = await fetch(`${run!.stack.apiUrl}/api/payments/${paymentId}/refunds`, {
      method: 'POST',
      headers: { 'x-api-key': 'local-key-1', 'content-type': 'application/json', 'idempotency-key': `wo-refund-${randomUUID()}` },
      body: JSON.stringify({ amount: 2.34, reason: 'webhook test' }),
    });
    expect(res.status).toBe(201);
    const refund = (await res.json()) as { id: string };
    const [got] = await until(() => deliveries.filter((d) => d.objectId === refund.id), (d) => d.length >= 1);
    expect(got!.type).toBe('refund.succeeded');
    expect(verifyWebhook(got!.raw, got!.signature, hooked.json.secret, 300, nowSeconds()).ok).toBe(true);
    const viaApi = await call('GET', `/api/payments/${paymentId}/refunds`);
    const event = JSON.parse(got!.raw);
    expect(event.data.object).toEqual(viaApi.json.items.find((r: { id: string }) => r.id === refund.id));
    expect(event.data.object).toMatchObject({ paymentID: paymentId, amountMinor: 234, currency: 'EUR', status: 'succeeded' });
    // The refund moved the payment to new versions (amountRefunded), still success: no new payment event.
    expect((await call('GET', `/api/payments/${paymentId}`)).json.amountRefundedMinor).toBe(234);
    const paymentEvents = new Set(deliveries.filter((d) => d.objectId === paymentId).map((d) => d.eventId));
    expect(paymentEvents.size).toBe(1);
    expect((await call('DELETE', `/api/webhook-endpoints/${hooked.json.id}`)).status).toBe(204);
  });

  it("another tenant's endpoint and event ids are 404", async () => {
    const [first] = deliveries.filter((d) => d.objectId === paymentId);
    expect((await call('POST', `/api/events/${first!.eventId}/resend`, undefined, 'local-key-2')).status).toBe(404);
    expect((await call('DELETE', `/api/webhook-endpoints/${endpointId}`, undefined, 'local-key-2')).status).toBe(404);
    expect((await call('DELETE', `/api/webhook-endpoints/${endpointId}`)).status).toBe(204);
  });
});
