/**
 * A refund the service owes: a durable record, written before anything is sent, followed until the
 * provider says it is final. Kept in the Refunds table; the worker and the reconciler move it on.
 *
 * Today the reconciler owes refunds for captures no payment accounts for (kind `unaccounted_capture`, one
 * per intent: its id is derived from the intent, so finding the same capture again finds the same record).
 * Tenant-initiated refunds (issue 18) use the same record with kind `tenant` and the same processing.
 */
export const REFUND_STATUSES = ['pending', 'succeeded', 'failed'] as const;
export type RefundStatus = (typeof REFUND_STATUSES)[number];

export type RefundKind = 'unaccounted_capture' | 'tenant';

export interface RefundError {
  readonly code: string;
  readonly message: string;
  readonly at: string;
}

export interface Refund {
  readonly id: string;
  readonly kind: RefundKind;
  /** The payment the intent belongs to ('' when no payment of ours accounts for the capture). */
  readonly paymentId: string;
  readonly tenantId?: string;
  readonly intentId: string;
  /** Minor units (ISO 4217) of the intent's currency. */
  readonly amountMinor: number;
  readonly currency: string;
  readonly reason: string;
  readonly status: RefundStatus;
  /** Increments with every change: every update is conditional on it. */
  readonly version: number;
  /** The provider key `refund-<id>[-k<n>]` the next send uses (see refundIdempotencyKey). */
  readonly keyGeneration: number;
  /** Requests sent so far: once one may have reached the provider, its refunds are read before any re-send. */
  readonly sends: number;
  readonly providerRefundId?: string;
  /** The provider's status when last read (pending, requires_action, succeeded, failed, canceled). */
  readonly providerStatus?: string;
  readonly failureReason?: string;
  readonly lastError?: RefundError;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly finishedAt?: string;
  /** Present only while pending: partition and due time of the sparse open-refunds index. */
  readonly openShard?: string;
  readonly dueAt?: number;
  /** Tenant refunds: the Idempotency-Key it was asked with, and the fingerprint of that request. */
  readonly idempotencyKey?: string;
  readonly requestHash?: string;
  /** Tenant refunds only: partition key of the refunds-by-payment index (sparse: capture refunds have no payment to list under). */
  readonly byPayment?: string;
}

/** The one refund record of a capture no payment accounts for. */
export const unaccountedRefundId = (intentId: string): string => `rf_cap_${intentId}`;

export type NewRefund = Omit<Refund, 'version' | 'status' | 'keyGeneration' | 'sends' | 'openShard' | 'dueAt' | 'createdAt' | 'updatedAt' | 'byPayment'>;

/** A refund owed from now: pending, never sent, due at once. */
export function newRefund(fields: NewRefund, now: Date): Refund & { readonly dueAt: number } {
  const at = now.toISOString();
  return { ...fields, status: 'pending', version: 1, keyGeneration: 0, sends: 0, createdAt: at, updatedAt: at, dueAt: now.getTime() };
}

/** Fields a refund step may change; the store bumps the version and keeps the open index in step with the status. */
export type RefundChange = Partial<Pick<Refund, 'status' | 'keyGeneration' | 'sends' | 'providerRefundId' | 'providerStatus' | 'failureReason' | 'lastError' | 'finishedAt'>>;
