/**
 * The webhook adapters against DynamoDB Local and the SQS emulator, each used with the credentials of the
 * function that uses it in AWS (the local IAM proxy enforces its role): a grant the code needs and the
 * stack lacks fails here as it would in AWS. Stored semantics: the event put is idempotent by id and
 * keeps the exact bytes, the tenant listing pages newest first and ends with a null cursor, another
 * tenant's ids are not found, rotation keeps the old secret as the previous one.
 */
import { randomUUID } from 'node:crypto';
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebhookEndpointRepository } from '../../functions/adapters/dynamo/webhook-endpoints';
import { WebhookEventRepository } from '../../functions/adapters/dynamo/webhook-events';
import { SqsDeliveryQueue } from '../../functions/adapters/sqs/webhook-delivery-queue';
import { newEndpointId, newWebhookSecret, type WebhookEndpoint } from '../../functions/core/webhooks/endpoints';
import { eventSink, resendEvent } from '../../functions/core/webhooks/event-feed';
import type { WebhookEvent } from '../../functions/core/webhooks/events';
import { isoAt } from '../helpers/clock';
import { startBackends, type Backends } from '../helpers/backends';

let b: Backends;
let env: Record<string, string>;

beforeAll(async () => {
  b = await startBackends();
  env = b.envOf('WebhookDeliveryFunction');
}, 60_000);

afterAll(async () => {
  await b?.stop();
});

const events = (fn: string) =>
  new WebhookEventRepository(b.as(fn).doc, { events: env.WEBHOOK_EVENTS_TABLE!, byTenantIndex: 'events-by-tenant', retentionSeconds: 86_400 });
const endpoints = (fn: string) => new WebhookEndpointRepository(b.as(fn).doc, env.WEBHOOK_ENDPOINTS_TABLE!);
const queue = (fn: string) => new SqsDeliveryQueue(b.as(fn).sqs, { queue: env.WEBHOOK_DELIVERY_QUEUE_URL!, deadLetter: env.WEBHOOK_DEAD_LETTER_QUEUE_URL! });

const eventOf = (tenantId: string, i: number): WebhookEvent => ({
  id: `evt_${randomUUID().replaceAll('-', '')}`,
  type: 'payment.succeeded',
  created: isoAt(i * 1000),
  tenantId,
  data: { object: { id: `pay_${i}`, version: 3, status: 'success', amount: 1.5, metadata: { z: '1', a: '2' } } },
});

const endpointOf = (tenantId: string, url = 'https://hooks.example.com/in'): WebhookEndpoint => ({
  id: newEndpointId(),
  tenantId,
  url,
  events: ['payment.succeeded'],
  secret: newWebhookSecret(),
  createdAt: isoAt(0),
});

async function drain(url: string) {
  const got: Record<string, unknown>[] = [];
  for (let i = 0; i < 3; i++) {
    const res = await b.sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
    got.push(...(res.Messages ?? []).map((m) => JSON.parse(m.Body!)));
  }
  return got;
}

describe('webhook stores with each function’s own role', () => {
  it('endpoints API: create, list, rotate (the old secret kept as previous), delete; another tenant finds nothing', async () => {
    const repo = endpoints('WebhookEndpointsApiFunction');
    const tenant = `t-${randomUUID()}`;
    const e = endpointOf(tenant);
    await repo.create(e);
    await expect(repo.create(e)).rejects.toThrow();
    expect(await repo.list(tenant)).toEqual([e]);
    expect(await repo.get('someone-else', e.id)).toBeUndefined();
    expect(await repo.rotate('someone-else', e.id, { secret: 'x', previousSecretExpiresAt: 1 })).toBeUndefined();
    const next = newWebhookSecret();
    const rotated = await repo.rotate(tenant, e.id, { secret: next, previousSecretExpiresAt: 42 });
    expect(rotated).toMatchObject({ secret: next, previousSecret: e.secret, previousSecretExpiresAt: 42 });
    expect(await repo.remove('someone-else', e.id)).toBe(false);
    expect(await repo.remove(tenant, e.id)).toBe(true);
    expect(await repo.list(tenant)).toEqual([]);
  });

  it('event stream: stores an event once with its exact bytes and enqueues one delivery per subscribed endpoint', async () => {
    const tenant = `t-${randomUUID()}`;
    const hook = endpointOf(tenant);
    await endpoints('WebhookEndpointsApiFunction').create(hook);
    await endpoints('WebhookEndpointsApiFunction').create({ ...endpointOf(tenant), events: ['refund.failed'] });
    const sink = eventSink({ events: events('WebhookEventStreamFunction'), endpoints: endpoints('WebhookEventStreamFunction'), queue: queue('WebhookEventStreamFunction') });
    const e = eventOf(tenant, 1);
    expect(await sink.record(e)).toEqual({ created: true });
    expect(await sink.record(e)).toEqual({ created: false });
    const sent = (await drain(env.WEBHOOK_DELIVERY_QUEUE_URL!)).filter((m) => m.eventId === e.id);
    expect(sent).toEqual([expect.objectContaining({ endpointId: hook.id, tenantId: tenant, attempt: 0 })]);
    const stored = await events('WebhookDeliveryFunction').get(tenant, e.id);
    expect(JSON.stringify(stored)).toBe(JSON.stringify(e));
    expect(await events('WebhookDeliveryFunction').get('someone-else', e.id)).toBeUndefined();
    expect(await endpoints('WebhookDeliveryFunction').get(tenant, hook.id)).toMatchObject({ secret: hook.secret });
  });

  it("events API: the tenant's events newest first, page by page, the last page with a null cursor; resend queues a new round", async () => {
    const tenant = `t-${randomUUID()}`;
    const store = events('WebhookEventStreamFunction');
    // A multiple of the page size: the last full page must say it is the last (no cursor to an empty page).
    const made = [0, 1, 2, 3].map((i) => eventOf(tenant, i));
    for (const e of made) await store.put(e);
    await store.put(eventOf(`other-${tenant}`, 9));
    const reader = events('WebhookEventsApiFunction');
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await reader.listByTenant(tenant, { limit: 2, ...(cursor ? { cursor } : {}) });
      seen.push(...page.items.map((e) => e.id));
      cursor = page.nextCursor ?? undefined;
      pages++;
    } while (cursor);
    expect(pages).toBe(2);
    expect(seen).toEqual(made.map((e) => e.id).reverse());

    await endpoints('WebhookEndpointsApiFunction').create(endpointOf(tenant));
    const feed = { events: reader, endpoints: endpoints('WebhookEventsApiFunction'), queue: queue('WebhookEventsApiFunction') };
    expect((await resendEvent(feed, tenant, made[0]!.id)).deliveries).toBe(1);
    await expect(resendEvent(feed, `other-${tenant}`, made[0]!.id)).rejects.toMatchObject({ code: 'EVENT_NOT_FOUND' });
  });

  it('delivery: re-sends and dead letters go to their queues', async () => {
    const q = queue('WebhookDeliveryFunction');
    const m = { deliveryId: `dlv_${randomUUID()}`, eventId: 'evt_x', tenantId: 't', endpointId: 'we_x', attempt: 7 };
    await q.deadLetter(m, 'http_500');
    const dead = (await drain(env.WEBHOOK_DEAD_LETTER_QUEUE_URL!)).filter((x) => x.deliveryId === m.deliveryId);
    expect(dead).toEqual([{ ...m, reason: 'http_500' }]);
  });
});
