/**
 * Tenant notifications derived from committed changes (invariant 12). Each Payments or Refunds stream
 * record whose status moved into a notified state yields one event, built from the new image alone:
 *
 * - The event id is derived from (object id, version) and `created` is the image's `updatedAt`, so a
 *   redelivered stream record yields the very same event, byte for byte, and its store write is a no-op.
 * - Only a status change is notified: a MODIFY that keeps the status (amountRefunded on a success,
 *   a lease, a retry counter) is no event; nor is an INSERT in a state that is not notified.
 * - Statuses are matched by their strings, so `canceled` is notified as soon as the status exists.
 * - Refunds are notified only for tenant refunds (kind `tenant` with a tenantId): a refund of a capture
 *   no payment accounts for belongs to no tenant.
 */
import { derivedId } from '../ids';
import type { Payment } from '../payment';
import { paymentView } from '../payment-view';
import type { Refund } from '../refund';
import { refundView } from '../refund-view';

export const WEBHOOK_EVENT_TYPES = [
  'payment.succeeded',
  'payment.failed',
  'payment.expired',
  'payment.canceled',
  'refund.succeeded',
  'refund.failed',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

export const isWebhookEventType = (s: unknown): s is WebhookEventType =>
  typeof s === 'string' && (WEBHOOK_EVENT_TYPES as readonly string[]).includes(s);

const PAYMENT_EVENT_BY_STATUS: Readonly<Record<string, WebhookEventType>> = {
  success: 'payment.succeeded',
  failed: 'payment.failed',
  expired: 'payment.expired',
  canceled: 'payment.canceled',
};

const REFUND_EVENT_BY_STATUS: Readonly<Record<string, WebhookEventType>> = {
  succeeded: 'refund.succeeded',
  failed: 'refund.failed',
};

export interface WebhookEvent {
  readonly id: string;
  readonly type: WebhookEventType;
  /** ISO 8601: when the change was committed (the object's updatedAt). */
  readonly created: string;
  readonly tenantId: string;
  readonly data: { readonly object: Record<string, unknown> & { readonly id: string; readonly version: number } };
}

export const webhookEventId = (objectId: string, version: number): string => derivedId('evt', objectId, version);

const statusMoved = (oldStatus: string | undefined, newStatus: string): boolean => oldStatus !== newStatus;

/** The event a payment change notifies, if any. */
export function paymentEvent(oldImage: Payment | undefined, newImage: Payment): WebhookEvent | undefined {
  const type = PAYMENT_EVENT_BY_STATUS[newImage.status as string];
  if (!type || !statusMoved(oldImage?.status, newImage.status)) return undefined;
  return {
    id: webhookEventId(newImage.id, newImage.version),
    type,
    created: newImage.updatedAt,
    tenantId: newImage.tenantId,
    data: { object: paymentView(newImage) },
  };
}

/** The event a refund change notifies, if any. */
export function refundEvent(oldImage: Refund | undefined, newImage: Refund): WebhookEvent | undefined {
  if (newImage.kind !== 'tenant' || !newImage.tenantId) return undefined;
  const type = REFUND_EVENT_BY_STATUS[newImage.status];
  if (!type || !statusMoved(oldImage?.status, newImage.status)) return undefined;
  return {
    id: webhookEventId(newImage.id, newImage.version),
    type,
    created: newImage.updatedAt,
    tenantId: newImage.tenantId,
    data: { object: refundView(newImage) },
  };
}
