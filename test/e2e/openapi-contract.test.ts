/**
 * docs/openapi.yaml is the contract: its routes are exactly the synthesized template's, and real
 * responses of the local stack (success and error, with their headers, the gateway's own included)
 * validate against it. test/unit/openapi-conformance.test.ts holds the handlers' request validation to
 * the same document.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Stripe from 'stripe';
import { LOCAL_WEBHOOK_SECRET, startLocalRun } from '../../scripts/drill-env';
import { openapi as doc, responseProblems } from '../helpers/openapi';

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];

let run: Awaited<ReturnType<typeof startLocalRun>> | undefined;
let stack: NonNullable<typeof run>['stack'] | undefined;

beforeAll(async () => {
  // A long backoff: a payment whose first confirm failed stays retrying (cancelable) while the test looks at it.
  run = await startLocalRun({ log: false, schedules: false, extraEnv: { RETRY_BASE_SECONDS: '600' } });
  stack = run.stack;
});

afterAll(async () => {
  await run?.stop();
});

/** Every response checked: its status is documented for the operation, and its body and headers match. */
const checked: string[] = [];

async function call(
  method: string,
  resource: string,
  url: string,
  opts: { body?: unknown; key?: string | null; headers?: Record<string, string>; contentType?: string | null } = {},
) {
  const headers: Record<string, string> = { ...(opts.contentType !== null ? { 'content-type': opts.contentType ?? 'application/json' } : {}), ...opts.headers };
  if (opts.key !== null) headers['x-api-key'] = opts.key ?? 'local-key-1';
  const text = opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  const res = await fetch(`${stack!.apiUrl}${url}`, { method, headers, body: text === undefined ? undefined : new TextEncoder().encode(text) });
  const raw = await res.text();
  const body: any = raw === '' ? undefined : JSON.parse(raw);
  expect(responseProblems(method, resource, { status: res.status, header: (n) => res.headers.get(n), body })).toEqual([]);
  checked.push(`${method} ${resource} ${res.status}`);
  return { status: res.status, headers: res.headers, body };
}

const newPayment = (key: string, overrides: Record<string, unknown> = {}) => ({
  idempotencyKey: key,
  amount: 19.99,
  currency: 'USD',
  paymentMethod: { type: 'card', token: 'tok_success' },
  metadata: { orderId: key },
  ...overrides,
});

/** Polls the payment (unchecked calls) until it reaches the status, or fails after 20 s. */
async function waitFor(id: string, status: string) {
  const deadline = Date.now() + 20_000;
  while (((await (await fetch(`${stack!.apiUrl}/api/payments/${id}/status`, { headers: { 'x-api-key': 'local-key-1' } })).json()) as { status: string }).status !== status) {
    if (Date.now() > deadline) throw new Error(`payment not ${status}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('docs/openapi.yaml', () => {
  it('documents exactly the routes of the synthesized template', () => {
    // The local stack's routes are the template's API Gateway methods, read from cdk.out.
    const routes = stack!.routes.map((r) => `${r.method} ${r.path}`);
    const documented = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).filter((m) => METHODS.includes(m)).map((m) => `${m.toUpperCase()} ${p}`));
    expect(documented.sort()).toEqual(routes.sort());
    expect(routes.length).toBe(20);
  });

  it('real responses of every route validate against it', async () => {
    const key = `oas-${randomUUID()}`;
    const created = await call('POST', '/api/payments/process', '/api/payments/process', { body: newPayment(key) });
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toBe(`/api/payments/${created.body.id}`);
    expect(created.body.amountMinor).toBe(1999);
    const replay = await call('POST', '/api/payments/process', '/api/payments/process', { body: newPayment(key) });
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    const id = created.body.id as string;

    await call('GET', '/api/payments/{paymentID}', `/api/payments/${id}`);
    await call('GET', '/api/payments/{paymentID}/status', `/api/payments/${id}/status`);
    await call('GET', '/api/payments/key/{idempotencyKey}', `/api/payments/key/${key}`);
    await call('POST', '/api/payments/validate-key', '/api/payments/validate-key', { body: { idempotencyKey: `free-${randomUUID()}` } });
    await call('POST', '/api/payments/validate-key', '/api/payments/validate-key', { body: newPayment(key, { amount: 20 }) });

    const list = await call('GET', '/api/payments', '/api/payments?limit=1');
    expect(list.body.items).toHaveLength(1);
    const next = await call('GET', '/api/payments', `/api/payments?limit=1&cursor=${list.body.nextCursor}`);
    expect(next.status).toBe(200);
    await call('GET', '/api/payments', '/api/payments?status=pending&limit=100');

    await call('GET', '/api/audit/payments', `/api/audit/payments?paymentID=${id}&verify=true`);
    await call('GET', '/api/audit/payments', '/api/audit/payments?limit=5');
    await call('POST', '/api/recovery/process', '/api/recovery/process');
    await call('GET', '/api/recovery/status', '/api/recovery/status');

    // Wait for the charge, then a retry of a successful payment is a 409 INVALID_STATE_TRANSITION.
    await waitFor(id, 'success');
    const retry = await call('POST', '/api/payments/{paymentID}/retry', `/api/payments/${id}/retry`, { body: { reason: 'contract test' } });
    expect(retry.body.error).toMatchObject({ code: 'INVALID_STATE_TRANSITION', details: [{ from: 'success' }] });
  });

  it('error responses validate against it: validation, 404, 422, bad cursor, 403', async () => {
    const bad = await call('POST', '/api/payments/process', '/api/payments/process', { body: newPayment(`oas-${randomUUID()}`, { amount: 1.234 }) });
    expect(bad.body.error.details[0]).toMatchObject({ field: 'amount', code: 'AMOUNT_PRECISION_EXCEEDED' });
    await call('GET', '/api/payments/{paymentID}', '/api/payments/pay_missing');
    const key = `oas-${randomUUID()}`;
    const first = await call('POST', '/api/payments/process', '/api/payments/process', { body: newPayment(key) });
    const mismatch = await call('POST', '/api/payments/process', '/api/payments/process', { body: newPayment(key, { amount: 5 }) });
    expect(mismatch.body.error.details).toEqual([expect.objectContaining({ paymentID: first.body.id })]);
    const page = await call('GET', '/api/payments', '/api/payments?limit=1');
    const cross = await call('GET', '/api/payments', `/api/payments?limit=1&cursor=${page.body.nextCursor}`, { key: 'local-key-2' });
    expect(cross.body.error.code).toBe('INVALID_CURSOR');
    await call('GET', '/api/payments', '/api/payments?limit=500');
    await call('GET', '/api/payments/{paymentID}', '/api/payments/pay_missing', { key: 'not-a-key' });
    expect(new Set(checked.map((c) => c.split(' ').slice(0, 2).join(' '))).size).toBe(10); // the webhook, refund and cancel routes have their own cases
  });

  it('what issue 19 added to the contract holds over HTTP: keys with spaces, 415, key conflicts, action keys, gateway request ids', async () => {
    const spaced = `order ${randomUUID()}`;
    const created = await call('POST', '/api/payments/process', '/api/payments/process', { body: newPayment(spaced) });
    expect(created.status).toBe(201);
    const record = await call('GET', '/api/payments/key/{idempotencyKey}', `/api/payments/key/${encodeURIComponent(spaced)}`);
    expect(record.body).toMatchObject({ key: spaced, paymentID: created.body.id });

    for (const contentType of ['text/plain', null]) {
      const res = await call('POST', '/api/payments/process', '/api/payments/process', { body: newPayment(`oas-${randomUUID()}`), contentType });
      expect(res.body.error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    }
    const conflict = await call('POST', '/api/payments/validate-key', '/api/payments/validate-key', { body: { idempotencyKey: 'a' }, headers: { 'Idempotency-Key': 'b' } });
    expect(conflict.body.error.code).toBe('IDEMPOTENCY_KEY_CONFLICT');
    const reason = await call('POST', '/api/payments/{paymentID}/retry', `/api/payments/${created.body.id}/retry`, { body: { reason: 'r'.repeat(501) } });
    expect(reason.body.error.code).toBe('INVALID_REASON');

    // An operator action under an Idempotency-Key: the repeat gets the first response.
    const ops = { key: 'local-operator-key', contentType: null };
    const runKey = `run ${randomUUID()}`;
    const first = await call('POST', '/api/recovery/process', '/api/recovery/process', { ...ops, headers: { 'Idempotency-Key': runKey } });
    const again = await call('POST', '/api/recovery/process', '/api/recovery/process', { ...ops, headers: { 'Idempotency-Key': runKey } });
    expect(again.body).toEqual(first.body);
    const bad = await call('POST', '/api/recovery/process', '/api/recovery/process', { ...ops, headers: { 'Idempotency-Key': 'a\tb' } });
    expect(bad.body.error.code).toBe('INVALID_IDEMPOTENCY_KEY');

    // API Gateway's own error: the same id in the header and the body.
    const forbidden = await call('GET', '/api/payments/{paymentID}', '/api/payments/pay_x', { key: 'not-a-key' });
    expect(forbidden.headers.get('x-request-id')).toBe(forbidden.body.error.requestId);
  });

  it('refunds and cancel: real 201, 200, 400, 404, 409 and 422 answers validate against it', async () => {
    const created = await call('POST', '/api/payments/process', '/api/payments/process', { body: newPayment(`oas-${randomUUID()}`) });
    const id = created.body.id as string;
    const refunds = '/api/payments/{paymentID}/refunds';
    const cancel = '/api/payments/{paymentID}/cancel';
    await waitFor(id, 'success');
    const refundKey = `refund-${randomUUID()}`;
    const refund = await call('POST', refunds, `/api/payments/${id}/refunds`, { body: { amount: 5, reason: 'contract' }, headers: { 'Idempotency-Key': refundKey } });
    expect(refund.status).toBe(201);
    expect(refund.body).toMatchObject({ paymentID: id, amount: 5, amountMinor: 500, currency: 'USD', status: 'pending' });
    const replayed = await call('POST', refunds, `/api/payments/${id}/refunds`, { body: { amount: 5, reason: 'contract' }, headers: { 'Idempotency-Key': refundKey } });
    expect(replayed.headers.get('idempotent-replayed')).toBe('true');
    const mismatch = await call('POST', refunds, `/api/payments/${id}/refunds`, { body: { amount: 6 }, headers: { 'Idempotency-Key': refundKey } });
    expect(mismatch.status).toBe(422);
    const tooMuch = await call('POST', refunds, `/api/payments/${id}/refunds`, { body: { amount: 15 }, headers: { 'Idempotency-Key': `refund-${randomUUID()}` } });
    expect(tooMuch.body.error.code).toBe('REFUND_EXCEEDS_CAPTURED');
    const noKey = await call('POST', refunds, `/api/payments/${id}/refunds`, { body: { amount: 1 } });
    expect(noKey.body.error.code).toBe('IDEMPOTENCY_KEY_REQUIRED');
    const precision = await call('POST', refunds, `/api/payments/${id}/refunds`, { body: { amount: 1.001 }, headers: { 'Idempotency-Key': `refund-${randomUUID()}` } });
    expect(precision.body.error.details[0]).toMatchObject({ field: 'amount', code: 'AMOUNT_PRECISION_EXCEEDED' });
    const list = await call('GET', refunds, `/api/payments/${id}/refunds`);
    expect(list.body).toMatchObject({ count: 1, items: [{ id: refund.body.id }] });
    const other = await call('GET', refunds, `/api/payments/${id}/refunds`, { key: 'local-key-2' });
    expect(other.status).toBe(404);
    const paid = await call('GET', '/api/payments/{paymentID}', `/api/payments/${id}`);
    expect(paid.body).toMatchObject({ amountRefunded: 5, amountRefundedMinor: 500 });
    // The refund's status changes are versions of the payment, in its hash-chained audit trail.
    const audited = async () => {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const trail = await call('GET', '/api/audit/payments', `/api/audit/payments?paymentID=${id}&verify=true`);
        const actions = trail.body.entries.map((e: { action: string }) => e.action);
        if ((actions.includes('refund_succeeded') && trail.body.verification.upToDate) || Date.now() > deadline) return trail.body;
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    const trail = await audited();
    expect(trail.verification).toMatchObject({ ok: true, upToDate: true });
    const refundEntries = trail.entries.filter((e: { action: string }) => e.action.startsWith('refund_'));
    expect(refundEntries.map((e: { action: string }) => e.action)).toEqual(['refund_requested', 'refund_succeeded']);
    expect(refundEntries[0]).toMatchObject({ fromStatus: 'success', toStatus: 'success', actor: 'api:tenant-1', details: { changes: { amountRefundedMinor: { old: null, new: 500 } } } });
    expect(refundEntries[0].reason).toContain(refund.body.id);
    expect(refundEntries[1]).toMatchObject({ actor: 'refund-processor', prevHash: refundEntries[0].hash });
    const final = await call('POST', cancel, `/api/payments/${id}/cancel`, { headers: { 'Idempotency-Key': `cancel-${randomUUID()}` } });
    expect(final.body.error).toMatchObject({ code: 'INVALID_STATE_TRANSITION', details: [{ from: 'success' }] });

    // A payment whose first confirm was a 5xx that charged nothing waits, retrying: it can be canceled.
    const open = await call('POST', '/api/payments/process', '/api/payments/process', { body: newPayment(`oas-${randomUUID()}`, { paymentMethod: { type: 'card', token: 'tok_transient_9' } }) });
    await waitFor(open.body.id, 'retrying');
    const notYet = await call('POST', refunds, `/api/payments/${open.body.id}/refunds`, { body: {}, headers: { 'Idempotency-Key': `refund-${randomUUID()}` } });
    expect(notYet.body.error.code).toBe('INVALID_STATE_TRANSITION');
    const cancelKey = `cancel-${randomUUID()}`;
    const canceled = await call('POST', cancel, `/api/payments/${open.body.id}/cancel`, { body: { reason: 'contract' }, headers: { 'Idempotency-Key': cancelKey } });
    expect(canceled.status).toBe(200);
    expect(canceled.body).toMatchObject({ id: open.body.id, status: 'canceled' });
    const again = await call('POST', cancel, `/api/payments/${open.body.id}/cancel`, { body: { reason: 'contract' }, headers: { 'Idempotency-Key': cancelKey } });
    expect(again.body).toEqual(canceled.body);
    const otherBody = await call('POST', cancel, `/api/payments/${open.body.id}/cancel`, { body: { reason: 'another' }, headers: { 'Idempotency-Key': cancelKey } });
    expect(otherBody.status).toBe(422);
    const missing = await call('POST', cancel, '/api/payments/pay_missing/cancel', { headers: { 'Idempotency-Key': `cancel-${randomUUID()}` } });
    expect(missing.status).toBe(404);
    const cancelNoKey = await call('POST', cancel, `/api/payments/${open.body.id}/cancel`, {});
    expect(cancelNoKey.body.error.code).toBe('IDEMPOTENCY_KEY_REQUIRED');
  });

  it('the provider webhook route, without an API key: 200 for a signed event, 400 for a bad signature', async () => {
    const payload = JSON.stringify({
      id: `evt_${randomUUID().replaceAll('-', '')}`,
      object: 'event',
      type: 'payment_intent.succeeded',
      created: Math.floor(Date.now() / 1000),
      livemode: false,
      data: { object: { id: 'pi_contract', object: 'payment_intent', metadata: { payment_id: 'pay_contract_unknown' } } },
    });
    const signature = Stripe.webhooks.generateTestHeaderString({ payload, secret: LOCAL_WEBHOOK_SECRET });
    const ok = await call('POST', '/webhooks/provider', '/webhooks/provider', { body: payload, key: null, headers: { 'Stripe-Signature': signature } });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ received: true, outcomes: ['not_ours'] });
    const bad = await call('POST', '/webhooks/provider', '/webhooks/provider', { body: payload, key: null, headers: { 'Stripe-Signature': `${signature.slice(0, -1)}${signature.endsWith('0') ? '1' : '0'}` } });
    expect(bad.body.error.code).toBe('INVALID_SIGNATURE');
    const missing = await call('POST', '/webhooks/provider', '/webhooks/provider', { body: payload, key: null });
    expect(missing.status).toBe(400);
  });

  it('the tenant webhook routes: endpoints (secret only on create and rotate), events with a signed cursor, resend, 404 across tenants', async () => {
    // Locally a loopback http URL is admitted (nothing listens on port 9: deliveries just retry).
    const created = await call('POST', '/api/webhook-endpoints', '/api/webhook-endpoints', { body: { url: 'http://127.0.0.1:9/hooks' } });
    expect(created.status).toBe(201);
    // No list: every event type (the newest event below may be a refund's or a cancel's).
    expect(created.body.events).toEqual(['payment.succeeded', 'payment.failed', 'payment.expired', 'payment.canceled', 'refund.succeeded', 'refund.failed']);
    expect(created.headers.get('location')).toBe(`/api/webhook-endpoints/${created.body.id}`);
    const bad = await call('POST', '/api/webhook-endpoints', '/api/webhook-endpoints', { body: { url: 'ftp://127.0.0.1/hooks' } });
    expect(bad.body.error).toMatchObject({ code: 'INVALID_WEBHOOK_URL', details: [{ field: 'url' }] });
    const badType = await call('POST', '/api/webhook-endpoints', '/api/webhook-endpoints', { body: { url: 'http://127.0.0.1:9/hooks', events: ['payment.created'] } });
    expect(badType.body.error.code).toBe('INVALID_EVENT_TYPE');
    const listed = await call('GET', '/api/webhook-endpoints', '/api/webhook-endpoints');
    expect(JSON.stringify(listed.body)).not.toContain(created.body.secret);
    const rotated = await call('POST', '/api/webhook-endpoints/{endpointID}/rotate-secret', `/api/webhook-endpoints/${created.body.id}/rotate-secret`);
    expect(rotated.body.secret).not.toBe(created.body.secret);
    const foreign = await call('POST', '/api/webhook-endpoints/{endpointID}/rotate-secret', `/api/webhook-endpoints/${created.body.id}/rotate-secret`, { key: 'local-key-2' });
    expect(foreign.body.error.code).toBe('WEBHOOK_ENDPOINT_NOT_FOUND');

    // The earlier tests' payments succeeded: their events are listed, newest first.
    const deadline = Date.now() + 20_000;
    let page = await call('GET', '/api/events', '/api/events?limit=1');
    while (page.body.items.length === 0 || page.body.nextCursor === null) {
      if (Date.now() > deadline) throw new Error('no events listed');
      await new Promise((r) => setTimeout(r, 250));
      page = await call('GET', '/api/events', '/api/events?limit=1');
    }
    const next = await call('GET', '/api/events', `/api/events?limit=1&cursor=${page.body.nextCursor}`);
    expect(next.body.items[0].created <= page.body.items[0].created).toBe(true);
    const cross = await call('GET', '/api/events', `/api/events?limit=1&cursor=${page.body.nextCursor}`, { key: 'local-key-2' });
    expect(cross.body.error.code).toBe('INVALID_CURSOR');
    await call('GET', '/api/events', '/api/events?limit=0');
    const eventId = page.body.items[0].id as string;
    const resent = await call('POST', '/api/events/{eventID}/resend', `/api/events/${eventId}/resend`);
    expect(resent.body).toEqual({ eventId, deliveries: 1 });
    const notMine = await call('POST', '/api/events/{eventID}/resend', `/api/events/${eventId}/resend`, { key: 'local-key-2' });
    expect(notMine.body.error.code).toBe('EVENT_NOT_FOUND');

    expect((await call('DELETE', '/api/webhook-endpoints/{endpointID}', `/api/webhook-endpoints/${created.body.id}`)).status).toBe(204);
    expect((await call('DELETE', '/api/webhook-endpoints/{endpointID}', `/api/webhook-endpoints/${created.body.id}`)).status).toBe(404);
  });
});
