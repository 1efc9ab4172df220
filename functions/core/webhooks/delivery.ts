/**
 * One delivery of one event to one endpoint, at least once. A delivery is a queue message; each attempt
 * POSTs the event's JSON with a fresh `Payments-Signature` and the delivery id, and:
 *   - a 2xx ends the delivery;
 *   - anything else (non-2xx, network error, no answer within the attempt timeout, a URL that no longer
 *     passes the address policy) schedules the next attempt by the payment retry policy's backoff
 *     (full jitter, configurable base/cap) through an SQS delay; a wait over 900 s is a chain of re-sends
 *     carrying notBefore, as the payment worker does;
 *   - once the next attempt would start more than `maxAgeMs` after the first, the delivery is given up
 *     to the dead-letter queue (alarmed), from where an operator or `resend` can try again.
 * The event body is the stored event, the same bytes for every attempt and every endpoint, so receivers
 * dedupe by event id. An endpoint deleted meanwhile ends its deliveries quietly.
 */
import { retryDelayMs, scheduleFor, type BackoffConfig, type RandomSource } from '../retry-policy';
import type { WebhookEvent } from './events';
import { resolveWebhookTarget, type HostResolver, type UrlPolicy } from './endpoint-url';
import { SIGNATURE_HEADER, signatureHeader, type EndpointSecrets } from './signature';

export const DELIVERY_ID_HEADER = 'Payments-Delivery-Id';

export interface DeliveryMessage {
  readonly deliveryId: string;
  readonly eventId: string;
  readonly tenantId: string;
  readonly endpointId: string;
  /** Attempts already made (0 for a new delivery). */
  readonly attempt: number;
  /** Epoch ms of the delivery's first attempt: the age limit counts from here. */
  readonly firstAttemptAt?: number;
  /** Epoch ms before which no attempt runs (waits longer than one SQS delay). */
  readonly notBefore?: number;
}

export interface WebhookEndpointTarget extends EndpointSecrets {
  readonly id: string;
  readonly tenantId: string;
  readonly url: string;
}

export interface DeliveryPolicy {
  readonly backoff: BackoffConfig;
  /** Give up when the next attempt would start later than this after the first (default 3 days). */
  readonly maxAgeMs: number;
  /** One attempt's deadline, connect to last byte (default 10 s). */
  readonly attemptTimeoutMs: number;
  readonly url: UrlPolicy;
}

export const DEFAULT_DELIVERY_POLICY: Omit<DeliveryPolicy, 'url'> = {
  backoff: { baseSeconds: 5, capSeconds: 6 * 3600 },
  maxAgeMs: 3 * 24 * 3_600_000,
  attemptTimeoutMs: 10_000,
};

/** POSTs to `url`, connecting to `address` (pinned; Host and TLS name stay the URL's). Resolves with the status. */
export type WebhookPoster = (req: {
  readonly url: URL;
  readonly address: string;
  readonly body: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
}) => Promise<{ readonly status: number }>;

export interface DeliveryDeps {
  readonly events: { get(tenantId: string, eventId: string): Promise<WebhookEvent | undefined> };
  readonly endpoints: { get(tenantId: string, endpointId: string): Promise<WebhookEndpointTarget | undefined> };
  readonly post: WebhookPoster;
  readonly resolve: HostResolver;
  /** Sends the message again after delaySeconds (0..900). */
  readonly requeue: (m: DeliveryMessage, delaySeconds: number) => Promise<void>;
  readonly deadLetter: (m: DeliveryMessage, reason: string) => Promise<void>;
  readonly now: () => Date;
  readonly policy: DeliveryPolicy;
  readonly random?: RandomSource;
}

export type DeliveryOutcome =
  | { readonly kind: 'delivered'; readonly status: number }
  | { readonly kind: 'retry_scheduled'; readonly notBefore: number; readonly reason: string }
  | { readonly kind: 'waiting'; readonly notBefore: number }
  | { readonly kind: 'given_up'; readonly reason: string }
  | { readonly kind: 'dropped'; readonly reason: 'endpoint_deleted' | 'event_missing' };

/** The body every attempt sends: the stored event, serialized once the same way. */
export const eventBody = (e: WebhookEvent): string => JSON.stringify(e);

async function attempt(deps: DeliveryDeps, endpoint: WebhookEndpointTarget, event: WebhookEvent, m: DeliveryMessage, now: Date): Promise<string | number> {
  try {
    const url = new URL(endpoint.url);
    const { address } = await resolveWebhookTarget(url, deps.policy.url, deps.resolve);
    const body = eventBody(event);
    const { status } = await deps.post({
      url,
      address,
      body,
      timeoutMs: deps.policy.attemptTimeoutMs,
      headers: {
        'content-type': 'application/json',
        [SIGNATURE_HEADER]: signatureHeader(endpoint, body, now),
        [DELIVERY_ID_HEADER]: m.deliveryId,
      },
    });
    return status;
  } catch (err) {
    return (err as { code?: string }).code ?? (err as Error).name ?? 'error';
  }
}

export async function deliverOnce(deps: DeliveryDeps, m: DeliveryMessage): Promise<DeliveryOutcome> {
  const now = deps.now();
  if (m.notBefore !== undefined && m.notBefore > now.getTime()) {
    const wait = scheduleFor(m.notBefore - now.getTime(), now);
    await deps.requeue(m, wait.delaySeconds);
    return { kind: 'waiting', notBefore: m.notBefore };
  }
  const endpoint = await deps.endpoints.get(m.tenantId, m.endpointId);
  if (!endpoint) return { kind: 'dropped', reason: 'endpoint_deleted' };
  const event = await deps.events.get(m.tenantId, m.eventId);
  if (!event) return { kind: 'dropped', reason: 'event_missing' };

  const result = await attempt(deps, endpoint, event, m, now);
  if (typeof result === 'number' && result >= 200 && result < 300) return { kind: 'delivered', status: result };

  const reason = typeof result === 'number' ? `http_${result}` : result;
  const firstAttemptAt = m.firstAttemptAt ?? now.getTime();
  const { delayMs } = retryDelayMs(m.attempt, deps.policy.backoff, deps.random);
  const next = scheduleFor(delayMs, now);
  const following: DeliveryMessage = { ...m, attempt: m.attempt + 1, firstAttemptAt, notBefore: next.notBefore };
  if (next.notBefore - firstAttemptAt > deps.policy.maxAgeMs) {
    await deps.deadLetter(following, reason);
    return { kind: 'given_up', reason };
  }
  await deps.requeue(following, next.delaySeconds);
  return { kind: 'retry_scheduled', notBefore: next.notBefore, reason };
}
