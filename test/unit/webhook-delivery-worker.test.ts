/**
 * The delivery queue's consumer: every outcome of an attempt ends its message (a retry is a new delayed
 * message), a message the service never writes is dropped, and only a failure of the store or queue
 * itself fails the record (SQS shows it again, then its DLQ).
 */
import type { SQSEvent } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import type { DeliveryDeps, DeliveryMessage } from '../../functions/core/webhooks/delivery';
import { paymentEvent } from '../../functions/core/webhooks/events';
import { silentLogger } from '../../functions/core/ports';
import { createDeliveryHandler } from '../../functions/webhooks/delivery-worker';
import { paymentFixture, T0 } from '../helpers/fakes';
import { FakeDeliveryQueue, FakeEndpointStore, FakeEventStore } from '../helpers/fake-webhooks';

const event = paymentEvent(paymentFixture({ id: 'pay_w', tenantId: 't1', status: 'processing', version: 2 }), paymentFixture({ id: 'pay_w', tenantId: 't1', status: 'success', version: 3 }))!;
const message: DeliveryMessage = { deliveryId: 'dlv_1', eventId: event.id, tenantId: 't1', endpointId: 'we_1', attempt: 0 };
const sqs = (...bodies: string[]): SQSEvent => ({ Records: bodies.map((body, i) => ({ messageId: `m${i}`, body }) as never) });

async function setup(answer: number | Error) {
  const events = new FakeEventStore();
  await events.put(event);
  const endpoints = new FakeEndpointStore();
  await endpoints.create({ id: 'we_1', tenantId: 't1', url: 'https://hooks.example.com/in', events: ['payment.succeeded'], secret: 'whsec_x', createdAt: new Date(T0).toISOString() });
  const queue = new FakeDeliveryQueue();
  const posted: string[] = [];
  const counted: string[] = [];
  const deps: DeliveryDeps = {
    events,
    endpoints,
    post: async (req) => {
      posted.push(req.body);
      if (answer instanceof Error) throw answer;
      return { status: answer };
    },
    resolve: async () => ['93.184.216.34'],
    requeue: (m, d) => queue.send(m, d),
    deadLetter: (m, r) => queue.deadLetter(m, r),
    now: () => new Date(T0),
    random: () => 0.5,
    policy: { backoff: { baseSeconds: 5, capSeconds: 3600 }, maxAgeMs: 3 * 86_400_000, attemptTimeoutMs: 10_000, url: { allowLoopbackHttp: false } },
  };
  const handler = createDeliveryHandler({ delivery: () => deps, logger: silentLogger, metrics: { count: (n, _v, d) => counted.push(`${n}:${d?.outcome}`) } });
  return { handler, queue, posted, counted, events };
}

describe('webhook delivery worker', () => {
  it('a 2xx ends the message; a 500 ends it too, with the next attempt queued within the first backoff', async () => {
    const ok = await setup(204);
    expect(await ok.handler(sqs(JSON.stringify(message)))).toEqual({ batchItemFailures: [] });
    expect(ok.posted).toEqual([JSON.stringify(event)]);
    expect(ok.queue.sent).toEqual([]);
    expect(ok.counted).toEqual(['WebhookDeliveries:delivered']);

    const failing = await setup(500);
    expect(await failing.handler(sqs(JSON.stringify(message)))).toEqual({ batchItemFailures: [] });
    expect(failing.queue.sent).toHaveLength(1);
    expect(failing.queue.sent[0]!.m).toMatchObject({ deliveryId: 'dlv_1', attempt: 1, firstAttemptAt: T0 });
    expect(failing.queue.sent[0]!.delaySeconds).toBeLessThanOrEqual(5);
    expect(failing.counted).toEqual(['WebhookDeliveries:retry_scheduled']);
  });

  it('a malformed message is dropped without an attempt; a failing store fails only its record', async () => {
    const w = await setup(200);
    w.events.get = async () => {
      throw new Error('DynamoDB unavailable');
    };
    const res = await w.handler(sqs('not json', JSON.stringify({ ...message, attempt: 'x' }), JSON.stringify(message)));
    expect(res).toEqual({ batchItemFailures: [{ itemIdentifier: 'm2' }] });
    expect(w.posted).toEqual([]);
  });
});
