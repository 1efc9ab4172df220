/**
 * Tenant webhook endpoints and events over the route handlers, with in-memory stores: the secret is shown
 * only at create and rotation, another tenant's ids are 404, a URL the policy refuses is 400 with its code,
 * rotation signs with both secrets for 24 h, and the stream sink stores an event once and never loses its
 * first round of deliveries when the enqueue fails half way.
 */
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { webhookEndpointsRoute } from '../../functions/api/webhook-endpoints';
import { webhookEventsRoute } from '../../functions/api/webhook-events';
import { WebhookEndpoints, MAX_ENDPOINTS_PER_TENANT } from '../../functions/core/webhooks/endpoints';
import { deliveryIdFor, eventSink, type EventFeedDeps } from '../../functions/core/webhooks/event-feed';
import { paymentEvent } from '../../functions/core/webhooks/events';
import { signatureHeader } from '../../functions/core/webhooks/signature';
import { apiHandler } from '../../functions/shared/http';
import { verifyWebhook } from '../../packages/client/src/verify-webhook';
import { FakeClock, paymentFixture, T0, testCursorSeal } from '../helpers/fakes';
import { FakeDeliveryQueue, FakeEndpointStore, FakeEventStore } from '../helpers/fake-webhooks';

const HOURS = 3_600_000;

function setup(opts: { allowLoopbackHttp?: boolean; dns?: Record<string, string[]> } = {}) {
  const clock = new FakeClock();
  const store = new FakeEndpointStore();
  const events = new FakeEventStore();
  const queue = new FakeDeliveryQueue();
  const dns = opts.dns ?? { 'hooks.example.com': ['93.184.216.34'], 'internal.example.com': ['10.0.0.5'], 'meta.example.com': ['169.254.169.254'] };
  const endpoints = new WebhookEndpoints({
    store,
    resolve: async (h) => {
      if (!dns[h]) throw new Error('ENOTFOUND');
      return dns[h]!;
    },
    urlPolicy: { allowLoopbackHttp: opts.allowLoopbackHttp ?? false },
    now: () => clock.now(),
  });
  const feed: EventFeedDeps = { events, endpoints: store, queue };
  const endpointsApi = apiHandler(webhookEndpointsRoute({ endpoints }));
  const eventsApi = apiHandler(webhookEventsRoute({ feed, cursors: testCursorSeal() }));
  const call = async (method: string, resource: string, o: { tenant?: string; body?: unknown; params?: Record<string, string>; query?: Record<string, string> } = {}) => {
    const event: APIGatewayProxyEvent = {
      httpMethod: method,
      resource,
      path: resource,
      headers: { 'content-type': 'application/json' },
      multiValueHeaders: {},
      queryStringParameters: o.query ?? null,
      multiValueQueryStringParameters: null,
      pathParameters: o.params ?? null,
      stageVariables: null,
      body: o.body === undefined ? null : JSON.stringify(o.body),
      isBase64Encoded: false,
      requestContext: { requestId: 'req-1', identity: { apiKeyId: o.tenant ?? 'tenant-a' } } as never,
    };
    const handler = resource.startsWith('/api/events') ? eventsApi : endpointsApi;
    const res = await handler(event);
    return { status: res.statusCode, body: res.body ? JSON.parse(res.body) : undefined };
  };
  return { clock, store, events, queue, feed, call };
}

describe('webhook endpoints API', () => {
  it('create answers 201 with the secret once; the list never shows it; delete removes it', async () => {
    const { call } = setup();
    const created = await call('POST', '/api/webhook-endpoints', { body: { url: 'https://hooks.example.com/in', events: ['payment.succeeded'] } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ url: 'https://hooks.example.com/in', events: ['payment.succeeded'], createdAt: new Date(T0).toISOString() });
    expect(created.body.secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    const listed = await call('GET', '/api/webhook-endpoints');
    expect(listed.body.items).toEqual([{ id: created.body.id, url: 'https://hooks.example.com/in', events: ['payment.succeeded'], createdAt: created.body.createdAt }]);
    expect(JSON.stringify(listed.body)).not.toContain(created.body.secret);
    // Without a list, every event type.
    const all = await call('POST', '/api/webhook-endpoints', { body: { url: 'https://hooks.example.com/all' } });
    expect(all.body.events).toHaveLength(6);
    expect((await call('DELETE', '/api/webhook-endpoints/{endpointID}', { params: { endpointID: created.body.id } })).status).toBe(204);
    expect((await call('GET', '/api/webhook-endpoints')).body.count).toBe(1);
  });

  it("another tenant's endpoint is 404 on delete and rotate, and is not listed", async () => {
    const { call, store } = setup();
    const created = await call('POST', '/api/webhook-endpoints', { body: { url: 'https://hooks.example.com/in' } });
    for (const [method, resource] of [
      ['DELETE', '/api/webhook-endpoints/{endpointID}'],
      ['POST', '/api/webhook-endpoints/{endpointID}/rotate-secret'],
    ] as const) {
      const res = await call(method, resource, { tenant: 'tenant-b', params: { endpointID: created.body.id } });
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('WEBHOOK_ENDPOINT_NOT_FOUND');
    }
    expect((await call('GET', '/api/webhook-endpoints', { tenant: 'tenant-b' })).body.items).toEqual([]);
    expect([...store.items.values()][0]!.secret).toBe(created.body.secret);
  });

  it.each([
    ['http://hooks.example.com/in', 'url must use https'],
    ['https://internal.example.com/in', 'private address'],
    ['https://meta.example.com/in', 'link-local address'],
    ['https://127.0.0.1/in', 'loopback address'],
    ['https://nowhere.example.com/in', 'does not resolve'],
    ['not a url', 'absolute URL'],
  ])('refuses %s with 400 INVALID_WEBHOOK_URL (%s), storing nothing', async (url, why) => {
    const { call, store } = setup();
    const res = await call('POST', '/api/webhook-endpoints', { body: { url } });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('INVALID_WEBHOOK_URL');
    expect(res.body.error.message).toContain(why);
    expect(store.items.size).toBe(0);
  });

  it('loopback http is admitted only where the dev-only setting says so', async () => {
    const url = 'http://127.0.0.1:8080/in';
    expect((await setup().call('POST', '/api/webhook-endpoints', { body: { url } })).status).toBe(400);
    expect((await setup({ allowLoopbackHttp: true }).call('POST', '/api/webhook-endpoints', { body: { url } })).status).toBe(201);
    // Nothing else private opens with it.
    expect((await setup({ allowLoopbackHttp: true }).call('POST', '/api/webhook-endpoints', { body: { url: 'http://10.0.0.5/in' } })).status).toBe(400);
  });

  it('refuses unknown event types and more than the endpoint limit; a secret sent along is never used', async () => {
    const { call } = setup();
    const bad = await call('POST', '/api/webhook-endpoints', { body: { url: 'https://hooks.example.com/in', events: ['payment.created'] } });
    expect([bad.status, bad.body.error.code]).toEqual([400, 'INVALID_EVENT_TYPE']);
    const extra = await call('POST', '/api/webhook-endpoints', { body: { url: 'https://hooks.example.com/in', secret: 'whsec_mine' } });
    expect(extra.status).toBe(201);
    expect(extra.body.secret).not.toBe('whsec_mine');
    await call('DELETE', '/api/webhook-endpoints/{endpointID}', { params: { endpointID: extra.body.id } });
    for (let i = 0; i < MAX_ENDPOINTS_PER_TENANT; i++) expect((await call('POST', '/api/webhook-endpoints', { body: { url: `https://hooks.example.com/${i}` } })).status).toBe(201);
    const over = await call('POST', '/api/webhook-endpoints', { body: { url: 'https://hooks.example.com/x' } });
    expect([over.status, over.body.error.code]).toEqual([409, 'TOO_MANY_WEBHOOK_ENDPOINTS']);
  });

  it('rotate-secret shows the new secret; for 24 h both secrets sign (two v1), then only the new one', async () => {
    const { call, store, clock } = setup();
    const created = await call('POST', '/api/webhook-endpoints', { body: { url: 'https://hooks.example.com/in' } });
    const rotated = await call('POST', '/api/webhook-endpoints/{endpointID}/rotate-secret', { params: { endpointID: created.body.id } });
    expect(rotated.status).toBe(200);
    expect(rotated.body.secret).not.toBe(created.body.secret);
    const endpoint = [...store.items.values()][0]!;
    const body = '{"id":"evt_1"}';
    const during = signatureHeader(endpoint, body, clock.now());
    expect(during.match(/v1=/g)).toHaveLength(2);
    const t = Math.floor(clock.now().getTime() / 1000);
    expect(verifyWebhook(body, during, created.body.secret, 300, t).ok).toBe(true);
    expect(verifyWebhook(body, during, rotated.body.secret, 300, t).ok).toBe(true);
    clock.advance(24 * HOURS + 1000);
    const after = signatureHeader(endpoint, body, clock.now());
    const t2 = Math.floor(clock.now().getTime() / 1000);
    expect(after.match(/v1=/g)).toHaveLength(1);
    expect(verifyWebhook(body, after, created.body.secret, 300, t2).ok).toBe(false);
    expect(verifyWebhook(body, after, rotated.body.secret, 300, t2).ok).toBe(true);
  });
});

describe('events: stored once, fanned out at least once, listed newest first, resent', () => {
  const succeeded = (id: string, tenantId = 'tenant-a', offsetMs = 0) =>
    paymentEvent(
      paymentFixture({ id, tenantId, status: 'processing', version: 2 }),
      paymentFixture({ id, tenantId, status: 'success', version: 3, updatedAt: new Date(T0 + offsetMs).toISOString() }),
    )!;

  it('a redelivered record stores nothing new and enqueues no second round; one that failed mid-enqueue enqueues again', async () => {
    const { call, feed, queue, events } = setup();
    const a = await call('POST', '/api/webhook-endpoints', { body: { url: 'https://hooks.example.com/a', events: ['payment.succeeded'] } });
    await call('POST', '/api/webhook-endpoints', { body: { url: 'https://hooks.example.com/b', events: ['refund.failed'] } });
    const sink = eventSink(feed);
    const e1 = succeeded('pay_1');
    expect(await sink.record(e1)).toEqual({ created: true });
    expect(queue.sent.map((s) => s.m)).toEqual([{ deliveryId: deliveryIdFor(e1.id, a.body.id), eventId: e1.id, tenantId: 'tenant-a', endpointId: a.body.id, attempt: 0 }]);
    expect(await sink.record(e1)).toEqual({ created: false });
    expect(queue.sent).toHaveLength(1);

    // Stored, then the enqueue fails: the stream retries the record, and the delivery is enqueued then.
    const e2 = succeeded('pay_2');
    queue.failNext = 1;
    await expect(sink.record(e2)).rejects.toThrow('SQS unavailable');
    expect(events.items.has(e2.id)).toBe(true);
    expect(await sink.record(e2)).toEqual({ created: false });
    expect(queue.sent.filter((s) => s.m.eventId === e2.id)).toHaveLength(1);

    // A tenant without endpoints: stored, nothing enqueued, and no second write to mark it.
    const lone = succeeded('pay_3', 'tenant-without-hooks');
    expect(await sink.record(lone)).toEqual({ created: true });
    expect(events.items.get(lone.id)).toMatchObject({ fannedOut: false });
    expect(queue.sent.filter((s) => s.m.eventId === lone.id)).toEqual([]);
  });

  it("lists the tenant's events newest first with a signed cursor; another tenant's event is 404 on resend", async () => {
    const { call, feed, queue } = setup();
    const sink = eventSink(feed);
    for (let i = 0; i < 5; i++) await sink.record(succeeded(`pay_${i}`, 'tenant-a', i * 1000));
    await sink.record(succeeded('pay_other', 'tenant-b'));
    const first = await call('GET', '/api/events', { query: { limit: '3' } });
    expect(first.status).toBe(200);
    expect(first.body.items.map((e: { data: { object: { id: string } } }) => e.data.object.id)).toEqual(['pay_4', 'pay_3', 'pay_2']);
    const second = await call('GET', '/api/events', { query: { limit: '3', cursor: first.body.nextCursor } });
    expect(second.body.items.map((e: { data: { object: { id: string } } }) => e.data.object.id)).toEqual(['pay_1', 'pay_0']);
    expect(second.body.nextCursor).toBeNull();
    // The cursor is signed for tenant-a: tenant-b cannot use it, and an edited one is refused.
    expect((await call('GET', '/api/events', { tenant: 'tenant-b', query: { cursor: first.body.nextCursor } })).body.error.code).toBe('INVALID_CURSOR');
    expect((await call('GET', '/api/events', { query: { cursor: `9${first.body.nextCursor.slice(1)}` } })).body.error.code).toBe('INVALID_CURSOR');

    await call('POST', '/api/webhook-endpoints', { body: { url: 'https://hooks.example.com/a' } });
    const mine = first.body.items[0].id as string;
    const resent = await call('POST', '/api/events/{eventID}/resend', { params: { eventID: mine } });
    expect(resent).toEqual({ status: 202, body: { eventId: mine, deliveries: 1 } });
    const [round] = queue.sent.filter((s) => s.m.eventId === mine);
    expect(round!.m.deliveryId).not.toBe(deliveryIdFor(mine, round!.m.endpointId));
    const other = await call('POST', '/api/events/{eventID}/resend', { tenant: 'tenant-b', params: { eventID: mine } });
    expect([other.status, other.body.error.code]).toEqual([404, 'EVENT_NOT_FOUND']);
  });
});
