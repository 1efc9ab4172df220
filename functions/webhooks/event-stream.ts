/**
 * Payments and Refunds table streams → tenant webhook events (invariant 12: a committed change cannot
 * miss its event, because the event is derived from the change's own stream record).
 *
 * One handler serves both streams: a record is told apart by its new image (a refund has `kind` and
 * `intentId`, a payment has `paymentMethod`). The event is derived from the images alone (see
 * core/webhooks/events.ts), so a redelivered or retried record derives the same event id and the sink's
 * conditional write makes it a no-op. A failed record is reported in batchItemFailures and retried by
 * Lambda from that point; records after it are not skipped.
 */
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import type { Context, DynamoDBBatchResponse, DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import type { Payment } from '../core/payment';
import type { Refund } from '../core/refund';
import { paymentEvent, refundEvent, type WebhookEvent } from '../core/webhooks/events';
import type { WebhookEventSink } from '../core/webhooks/ports';
import { noMetrics, type Logger, type Metrics } from '../core/ports';
import { eventSink } from '../core/webhooks/event-feed';
import { instrumented } from '../shared/instrument';
import { serviceLogger as defaultLogger } from '../shared/logger';
import { serviceMetrics } from '../shared/metrics';
import { wiring } from '../wiring';

export interface WebhookEventStreamDeps {
  readonly sink: WebhookEventSink;
  readonly logger?: Logger;
  /** WebhookEventsCreated. Default: none. */
  readonly metrics?: Metrics;
}

const image = (raw: Record<string, unknown> | undefined): Record<string, unknown> | undefined =>
  raw ? unmarshall(raw as Record<string, AttributeValue>) : undefined;

const isRefundImage = (i: Record<string, unknown>): boolean => typeof i.kind === 'string' && typeof i.intentId === 'string';

/** The event a stream record notifies, if any. */
export function eventFromRecord(record: DynamoDBRecord): WebhookEvent | undefined {
  if (record.eventName === 'REMOVE') return undefined;
  const next = image(record.dynamodb?.NewImage);
  if (!next || typeof next.id !== 'string' || typeof next.status !== 'string' || !Number.isSafeInteger(next.version)) return undefined;
  const prev = image(record.dynamodb?.OldImage);
  return isRefundImage(next)
    ? refundEvent(prev as Refund | undefined, next as unknown as Refund)
    : paymentEvent(prev as Payment | undefined, next as unknown as Payment);
}

export function createWebhookEventStreamHandler(deps: WebhookEventStreamDeps) {
  const log = deps.logger ?? defaultLogger;
  const metrics = deps.metrics ?? noMetrics;

  const handleRecord = async (record: DynamoDBRecord): Promise<void> => {
    const event = eventFromRecord(record);
    if (!event) return;
    const { created } = await deps.sink.record(event);
    if (created) metrics.count('WebhookEventsCreated', 1, { type: event.type });
    else log.debug('webhook event already recorded (stream redelivery)', { eventId: event.id });
  };

  return async (event: DynamoDBStreamEvent, context?: Context): Promise<DynamoDBBatchResponse> =>
    processPartialResponse(event, handleRecord, new BatchProcessor(EventType.DynamoDBStreams), {
      context,
      processInParallel: false,
      throwOnFullBatchFailure: false,
    });
}

/** The Lambda entry: the stream consumer over the production store and queue, built on first use. */
let built: ReturnType<typeof createWebhookEventStreamHandler> | undefined;
export const handler = instrumented(async (event: DynamoDBStreamEvent, context?: Context) => {
  built ??= createWebhookEventStreamHandler({ sink: eventSink(wiring().eventFeed()), metrics: serviceMetrics });
  return built(event, context);
});
