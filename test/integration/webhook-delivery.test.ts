/**
 * Deliveries against a real receiver on 127.0.0.1 through the node poster (pinned address, timeout):
 * the queue is a fake that runs re-sends in order of their due time on a moved clock, so days of
 * backoff run in milliseconds while the HTTP side is real.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { nodeWebhookPoster } from '../../functions/adapters/webhook-poster';
import { derivedId } from '../../functions/core/ids';
import { deliverOnce, type DeliveryDeps, type DeliveryMessage, type DeliveryOutcome, type WebhookEndpointTarget } from '../../functions/core/webhooks/delivery';
import { webhookEventId, type WebhookEvent } from '../../functions/core/webhooks/events';
import { verifyWebhook } from '../../packages/client/src/verify-webhook';
import { TEST_EPOCH } from '../helpers/clock';

interface Received { readonly deliveryId: string; readonly eventId: string; readonly status: number }

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((r) => { s.closeAllConnections(); s.close(() => r()); })));
});

/** A receiver that answers `answers[i]` to its i-th request (then 200); 'hang' never answers. */
async function receiver(secret: string, answers: (number | 'hang')[]): Promise<{ url: string; got: Received[]; now: { s: number } }> {
  const got: Received[] = [];
  const now = { s: 0 };
  let n = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const answer = answers[n++] ?? 200;
      if (answer === 'hang') return;
      const verdict = verifyWebhook(raw, req.headers['payments-signature'] as string, secret, 300, now.s);
      const status = verdict.ok ? answer : 400;
      got.push({ deliveryId: String(req.headers['payments-delivery-id']), eventId: (JSON.parse(raw) as WebhookEvent).id, status });
      res.writeHead(status).end();
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`, got, now };
}

function harness(endpoint: WebhookEndpointTarget, events: WebhookEvent[], over: Partial<DeliveryDeps['policy']> = {}) {
  let clock = TEST_EPOCH;
  const queue: { m: DeliveryMessage; due: number }[] = [];
  const dead: { m: DeliveryMessage; reason: string }[] = [];
  const delays: number[] = [];
  const deps: DeliveryDeps = {
    events: { get: async (t, id) => events.find((e) => e.id === id && e.tenantId === t) },
    endpoints: { get: async (t, id) => (endpoint.tenantId === t && endpoint.id === id ? endpoint : undefined) },
    post: nodeWebhookPoster,
    resolve: async () => ['127.0.0.1'],
    requeue: async (m, delaySeconds) => { delays.push(delaySeconds); queue.push({ m, due: clock + delaySeconds * 1000 }); },
    deadLetter: async (m, reason) => { dead.push({ m, reason }); },
    now: () => new Date(clock),
    random: () => 0.5,
    policy: { backoff: { baseSeconds: 2, capSeconds: 3600 }, maxAgeMs: 3 * 86_400_000, attemptTimeoutMs: 10_000, url: { allowLoopbackHttp: true }, ...over },
  };
  /** Runs every queued delivery to its end, moving the clock to each message's due time. */
  const drain = async (onTick?: (ms: number) => void): Promise<DeliveryOutcome[]> => {
    const outcomes: DeliveryOutcome[] = [];
    while (queue.length) {
      queue.sort((a, b) => a.due - b.due);
      const { m, due } = queue.shift()!;
      clock = Math.max(clock, due);
      onTick?.(clock);
      outcomes.push(await deliverOnce(deps, m));
    }
    return outcomes;
  };
  return { deps, queue, dead, delays, drain, enqueue: (m: DeliveryMessage) => queue.push({ m, due: clock }) };
}

const event = (n: number): WebhookEvent => ({
  id: webhookEventId(`pay_${n}`, 3), type: 'payment.succeeded', created: new Date(TEST_EPOCH).toISOString(), tenantId: 'tenant-wh',
  data: { object: { id: `pay_${n}`, version: 3, status: 'success' } },
});
const message = (e: WebhookEvent, endpointId: string): DeliveryMessage =>
  ({ deliveryId: derivedId('dlv', e.id, endpointId, 0), eventId: e.id, tenantId: e.tenantId, endpointId, attempt: 0 });

describe('webhook delivery (real receiver on 127.0.0.1)', () => {
  it('a receiver that fails 5 times then accepts gets every event, accepted once per delivery id, signed', async () => {
    const rx = await receiver('whsec_rx', [500, 503, 404, 500, 502]);
    const endpoint = { id: 'we_1', tenantId: 'tenant-wh', url: rx.url, secret: 'whsec_rx' };
    const events = [1, 2, 3].map(event);
    const h = harness(endpoint, events);
    for (const e of events) h.enqueue(message(e, endpoint.id));
    const outcomes = await h.drain((ms) => { rx.now.s = Math.floor(ms / 1000); });

    const accepted = rx.got.filter((g) => g.status === 200);
    expect(rx.got.filter((g) => g.status !== 200).map((g) => g.status)).toEqual([500, 503, 404, 500, 502]);
    expect(accepted.map((g) => g.eventId).sort()).toEqual(events.map((e) => e.id).sort());
    expect(new Set(accepted.map((g) => g.deliveryId)).size).toBe(3);
    expect(outcomes.filter((o) => o.kind === 'delivered')).toHaveLength(3);
    expect(h.dead).toEqual([]);
    // Backoff: the first retry waits seconds (base 2 s, jitter 0.5 → 1 s), then doubles.
    expect(h.delays[0]).toBeGreaterThanOrEqual(1);
    expect(h.delays[0]).toBeLessThanOrEqual(2);
  });

  it('no answer within the attempt timeout is a failed attempt, retried', async () => {
    const rx = await receiver('whsec_rx', ['hang']);
    const endpoint = { id: 'we_2', tenantId: 'tenant-wh', url: rx.url, secret: 'whsec_rx' };
    const h = harness(endpoint, [event(4)], { attemptTimeoutMs: 200 });
    h.enqueue(message(event(4), endpoint.id));
    const outcomes = await h.drain((ms) => { rx.now.s = Math.floor(ms / 1000); });
    expect(outcomes.map((o) => o.kind)).toEqual(['retry_scheduled', 'delivered']);
    expect(rx.got.map((g) => g.status)).toEqual([200]);
  });

  it('waits over 900 s are chained re-sends; after 3 days the delivery goes to the dead-letter queue', async () => {
    const rx = await receiver('whsec_rx', Array<number>(200).fill(500));
    const endpoint = { id: 'we_3', tenantId: 'tenant-wh', url: rx.url, secret: 'whsec_rx' };
    const h = harness(endpoint, [event(5)]);
    h.enqueue(message(event(5), endpoint.id));
    const outcomes = await h.drain((ms) => { rx.now.s = Math.floor(ms / 1000); });
    expect(h.delays.every((d) => d >= 0 && d <= 900)).toBe(true);
    expect(outcomes.some((o) => o.kind === 'waiting')).toBe(true);
    expect(h.dead).toHaveLength(1);
    expect(h.dead[0]!.reason).toBe('http_500');
    const age = h.dead[0]!.m.notBefore! - h.dead[0]!.m.firstAttemptAt!;
    expect(age).toBeGreaterThan(3 * 86_400_000);
    // Never delivered early: every attempt ran at or after its notBefore (the waiting hops say so).
    expect(outcomes.filter((o) => o.kind === 'delivered')).toEqual([]);
  });

  it('an endpoint deleted meanwhile ends its deliveries; a URL the policy refuses is retried, never sent', async () => {
    const rx = await receiver('whsec_rx', []);
    const endpoint = { id: 'we_4', tenantId: 'tenant-wh', url: rx.url, secret: 'whsec_rx' };
    const h = harness(endpoint, [event(6)], { url: { allowLoopbackHttp: false }, maxAgeMs: 10_000 });
    h.enqueue(message(event(6), endpoint.id));
    const outcomes = await h.drain();
    expect(rx.got).toEqual([]);
    expect(outcomes.at(-1)).toMatchObject({ kind: 'given_up', reason: 'INVALID_WEBHOOK_URL' });
    h.enqueue({ ...message(event(6), endpoint.id), endpointId: 'we_gone' });
    expect(await h.drain()).toEqual([{ kind: 'dropped', reason: 'endpoint_deleted' }]);
  });
});
