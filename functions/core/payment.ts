/** The payment as stored in the Payments table. Money is integer minor units. */
export const PAYMENT_STATUSES = ['pending', 'processing', 'success', 'failed', 'retrying', 'expired', 'canceled'] as const;
export type PaymentStatus = (typeof PAYMENT_STATUSES)[number];

export const TERMINAL_STATUSES: readonly PaymentStatus[] = ['success', 'failed', 'expired', 'canceled'];
export const OPEN_STATUSES: readonly PaymentStatus[] = ['pending', 'processing', 'retrying'];

export const isTerminal = (s: PaymentStatus): boolean => TERMINAL_STATUSES.includes(s);
export const isOpen = (s: PaymentStatus): boolean => OPEN_STATUSES.includes(s);

export interface PaymentMethod {
  readonly type: string;
  /** Provider card token. Stored to charge later; never logged or audited in full. */
  readonly token: string;
}

/** Failure detail kept on the payment, as in the seed's model. */
export interface PaymentError {
  readonly code: string;
  readonly message: string;
  readonly details?: Record<string, unknown>;
  readonly retryable: boolean;
  readonly timestamp: string;
}

export interface RefundRecord {
  readonly refundId: string;
  readonly intentId: string;
  readonly amountMinor: number;
  readonly reason: string;
  readonly at: string;
}

/** What produced a payment version; the audit log records it. */
export interface ChangeInfo {
  readonly action: string;
  readonly actor: string;
  readonly reason?: string;
}

export interface Payment {
  readonly id: string;
  readonly tenantId: string;
  readonly idempotencyKey: string;
  /** Increments when an expired key is reused for a new payment. */
  readonly generation: number;
  readonly requestHash: string;
  /**
   * Epoch seconds at which the idempotency key that created this payment expires (written with the
   * payment, never changed). On a key's first payment it is the key record itself (the create is one
   * conditional put, PaymentsService.create); on a later generation it equals the key record's expiry,
   * written in the same transaction. While it is in the future the key is this payment's and no other's,
   * so the payment alone answers a replay. Absent on payments created before it was kept: those replays
   * take the transaction path.
   */
  readonly keyExpiresAt?: number;
  readonly amountMinor: number;
  readonly currency: string;
  readonly paymentMethod: PaymentMethod;
  readonly metadata: Record<string, string>;
  readonly status: PaymentStatus;
  readonly version: number;
  /** Attempts claimed so far; attempt N confirms the payment's intent with key `confirm-<id>-<N>`. */
  readonly attempt: number;
  readonly retryCount: number;
  readonly maxRetries: number;
  readonly lastError?: PaymentError;
  readonly createdAt: string;
  readonly updatedAt: string;
  /**
   * updatedAt of every version in epoch ms (version v at index v - 1), appended by each versioned write:
   * the audit log's keys are made of it (see entryKeyOf in audit.ts). About 9 bytes a version.
   */
  readonly versionAt?: readonly number[];
  readonly processedAt?: string;
  /** Epoch ms until which the current processing attempt owns the payment. */
  readonly leaseUntil?: number;
  /** Epoch ms of the next scheduled attempt while retrying. */
  readonly nextAttemptAt?: number;
  /** Present only while open: partition and sort key of the sparse open-payments index. */
  readonly openShard?: string;
  readonly dueAt?: number;
  /** The provider intent this payment confirms; recorded with the first settled attempt. */
  readonly intentId?: string;
  /**
   * Which intent of the payment is current: 0 for the first; an operator re-open of a failed payment
   * (whose intent was cancelled) moves to the next. See `intentKeyFor`.
   */
  readonly intentSeq?: number;
  readonly providerChargeId?: string;
  /** Operator re-opens of this failed payment so far; bounded by MAX_REOPENS. */
  readonly reopenCount?: number;
  /** Money returned by the reconciler for captures no payment accounts for (audited). */
  readonly refunds?: readonly RefundRecord[];
  /**
   * Tenant refunds pending or succeeded, in minor units: never more than amountMinor. Changed by the refund
   * transaction (up) and by a refund the provider failed (back down). Each refund status change is a new
   * payment version (lastChange refund_requested / refund_succeeded / refund_failed, audited in the
   * payment's chain); the status stays success: a success payment is terminal, and refunds are its only
   * writers (RefundRepository).
   */
  readonly amountRefundedMinor?: number;
  /** Why this version exists (audited). */
  readonly lastChange: ChangeInfo;
}
