import { marshall } from '@aws-sdk/util-dynamodb';
import type { DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { newRefund, type Refund } from '../../functions/core/refund';
import type { WebhookEvent } from '../../functions/core/webhooks/events';
import type { WebhookEventSink } from '../../functions/core/webhooks/ports';
import { createWebhookEventStreamHandler, eventFromRecord } from '../../functions/webhooks/event-stream';
import { paymentFixture, T0 } from '../helpers/fakes';

/** Stores events by id, as the conditional put does. */
class FakeSink implements WebhookEventSink {
  readonly events = new Map<string, WebhookEvent>();
  records = 0;
  async record(e: WebhookEvent) {
    await Promise.resolve();
    this.records++;
    if (this.events.has(e.id)) return { created: false };
    this.events.set(e.id, structuredClone(e));
    return { created: true };
  }
}

let seq = 0;
const rec = (oldImage: object | undefined, newImage: object, eventName: 'INSERT' | 'MODIFY' = oldImage ? 'MODIFY' : 'INSERT'): DynamoDBRecord => ({
  eventName,
  dynamodb: {
    SequenceNumber: String(++seq),
    NewImage: marshall(newImage, { removeUndefinedValues: true }) as never,
    ...(oldImage ? { OldImage: marshall(oldImage, { removeUndefinedValues: true }) as never } : {}),
  },
});
const batch = (...Records: DynamoDBRecord[]): DynamoDBStreamEvent => ({ Records });
const at = (ms: number) => new Date(T0 + ms).toISOString();

const processing = paymentFixture({ id: 'pay_ev1', tenantId: 'tenant-ev', status: 'processing', version: 2 });
const succeeded = paymentFixture({ id: 'pay_ev1', tenantId: 'tenant-ev', status: 'success', version: 3, updatedAt: at(5_000), processedAt: at(5_000) });

function tenantRefund(over: Partial<Refund> = {}): Refund {
  const base = newRefund(
    { id: 'rf_ev1', kind: 'tenant', paymentId: 'pay_ev1', tenantId: 'tenant-ev', intentId: 'pi_1', amountMinor: 500, currency: 'EUR', reason: 'requested_by_customer' },
    new Date(T0),
  );
  return { ...base, ...over };
}

describe('webhook events from the streams', () => {
  it('a payment reaching success is one payment.succeeded with the API view and its version', () => {
    const e = eventFromRecord(rec(processing, succeeded));
    expect(e).toMatchObject({ type: 'payment.succeeded', tenantId: 'tenant-ev', created: at(5_000) });
    expect(e!.data.object).toMatchObject({ id: 'pay_ev1', status: 'success', version: 3, amount: 12.5, amountMinor: 1250 });
    // The API view masks the card token.
    expect(JSON.stringify(e)).not.toContain('tok_success');
  });

  it('failed, expired and canceled (by its string) are notified; open states and same-status changes are not', () => {
    const type = (status: string, from = 'processing') =>
      eventFromRecord(rec({ ...processing, status: from }, { ...succeeded, status }))?.type;
    expect(type('failed')).toBe('payment.failed');
    expect(type('expired', 'retrying')).toBe('payment.expired');
    expect(type('canceled', 'pending')).toBe('payment.canceled');
    expect(type('retrying')).toBeUndefined();
    expect(type('processing', 'pending')).toBeUndefined();
    // A refund bumping amountRefunded on a succeeded payment is a new version, not a new event.
    expect(eventFromRecord(rec(succeeded, { ...succeeded, version: 4 }))).toBeUndefined();
  });

  it('tenant refunds notify succeeded and failed; an unaccounted-capture refund notifies nothing', () => {
    const pending = tenantRefund();
    const done = tenantRefund({ status: 'succeeded', version: 3, updatedAt: at(9_000) });
    const e = eventFromRecord(rec(pending, done));
    expect(e).toMatchObject({ type: 'refund.succeeded', tenantId: 'tenant-ev', created: at(9_000) });
    expect(e!.data.object).toEqual({
      id: 'rf_ev1', paymentID: 'pay_ev1', amount: 5, amountMinor: 500, currency: 'EUR', status: 'succeeded',
      reason: 'requested_by_customer', failureReason: null, createdAt: at(0), updatedAt: at(9_000), version: 3,
    });
    expect(eventFromRecord(rec(pending, { ...done, status: 'failed' }))?.type).toBe('refund.failed');
    expect(eventFromRecord(rec({ ...pending, kind: 'unaccounted_capture', tenantId: undefined }, { ...done, kind: 'unaccounted_capture', tenantId: undefined }))).toBeUndefined();
    expect(eventFromRecord(rec(pending, { ...pending, sends: 1, version: 2 }))).toBeUndefined();
  });

  it('event ids are stable under stream redelivery: the same record twice is one event, equal byte for byte', async () => {
    const sink = new FakeSink();
    const handle = createWebhookEventStreamHandler({ sink });
    const record = rec(processing, succeeded);
    const first = eventFromRecord(record);
    expect((await handle(batch(record, rec(tenantRefund(), tenantRefund({ status: 'failed', version: 2 }))))).batchItemFailures).toEqual([]);
    // Redelivered later (a retried batch, a replayed shard): same id, same content.
    expect((await handle(batch(structuredClone(record)))).batchItemFailures).toEqual([]);
    expect(sink.records).toBe(3);
    expect([...sink.events.values()].map((e) => e.type).sort()).toEqual(['payment.succeeded', 'refund.failed']);
    expect(sink.events.get(first!.id)).toEqual(first);
    expect(eventFromRecord(structuredClone(record))).toEqual(first);
    // Different versions of one object are different events.
    expect(eventFromRecord(rec(processing, { ...succeeded, version: 4 }))!.id).not.toBe(first!.id);
  });

  it('a sink failure fails that record only, for Lambda to retry', async () => {
    const sink = new FakeSink();
    sink.record = async () => { throw new Error('throttled'); };
    const handle = createWebhookEventStreamHandler({ sink, logger: { debug() {}, info() {}, warn() {}, error() {} } as never });
    const r = rec(processing, succeeded);
    expect((await handle(batch(r))).batchItemFailures).toEqual([{ itemIdentifier: r.dynamodb!.SequenceNumber }]);
  });
});

