import type { WebhookEvent } from './events';

/**
 * Where derived events go. `record` must be idempotent by event id: the stream redelivers, and a
 * second `record` of the same event stores nothing new and schedules no second round of deliveries.
 * (Adapter: a conditional put on the events table, then one delivery message per matching endpoint.)
 */
export interface WebhookEventSink {
  record(event: WebhookEvent): Promise<{ readonly created: boolean }>;
}
