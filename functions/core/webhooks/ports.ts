import type { DeliveryMessage } from './delivery';
import type { WebhookEndpoint } from './endpoints';
import type { WebhookEvent, WebhookEventType } from './events';

/**
 * Where derived events go. `record` must be idempotent by event id: the stream redelivers, and a
 * second `record` of the same event stores nothing new. It may enqueue the event's deliveries again
 * when the first record stopped between storing and enqueuing (at least once: receivers dedupe by id).
 */
export interface WebhookEventSink {
  record(event: WebhookEvent): Promise<{ readonly created: boolean }>;
}

/** A tenant's endpoints (adapter: one partition per tenant in the WebhookEndpoints table). */
export interface WebhookEndpointStore {
  /** Fails with a conflict only on an id collision (ids are random): never overwrites. */
  create(endpoint: WebhookEndpoint): Promise<void>;
  get(tenantId: string, endpointId: string): Promise<WebhookEndpoint | undefined>;
  list(tenantId: string): Promise<WebhookEndpoint[]>;
  /** False when there was none. */
  remove(tenantId: string, endpointId: string): Promise<boolean>;
  /** Replaces the secret, keeping the old one signing until `previousSecretExpiresAt`; undefined when there is none. */
  rotate(tenantId: string, endpointId: string, secrets: { secret: string; previousSecretExpiresAt: number }): Promise<WebhookEndpoint | undefined>;
}

export interface WebhookEventPage {
  readonly items: WebhookEvent[];
  /** The store's cursor (unsigned); null on the last page. */
  readonly nextCursor: string | null;
}

/** Stored events, kept for a retention period (adapter: the WebhookEvents table with a TTL). */
export interface WebhookEventStore {
  /** A conditional put: false when the event id is already stored. */
  put(event: WebhookEvent): Promise<boolean>;
  get(tenantId: string, eventId: string): Promise<WebhookEvent | undefined>;
  /** The tenant's events, newest first. */
  listByTenant(tenantId: string, opts: { readonly limit: number; readonly cursor?: string }): Promise<WebhookEventPage>;
  /** Marks the event's first round of deliveries as enqueued. */
  markFannedOut(eventId: string): Promise<void>;
  /** Whether the first round of deliveries was enqueued. */
  fannedOut(eventId: string): Promise<boolean>;
}

/** The webhook delivery queue: `delaySeconds` 0..900; the dead-letter side takes given-up deliveries. */
export interface DeliveryQueue {
  send(message: DeliveryMessage, delaySeconds?: number): Promise<void>;
  deadLetter(message: DeliveryMessage, reason: string): Promise<void>;
}

export type { WebhookEventType };
