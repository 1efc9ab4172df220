/**
 * Port to the card payment provider, modelled on payment intents (Stripe PaymentIntents).
 *
 * The money promise rests on the provider, not on luck:
 *   - Each payment has exactly one provider intent. It is created with a provider idempotency key derived
 *     from the payment id alone (`intentIdempotencyKey`), so every create for a payment returns the same
 *     intent, and the intent records our payment id in its metadata so it can be found again.
 *   - Every attempt confirms that same intent. The provider lets an intent succeed at most once: a late,
 *     duplicated or concurrent confirmation can never move money a second time.
 *   - A canceled intent can never succeed. A payment becomes failed or expired only after its intent is
 *     canceled (or was never created), so no late confirmation can capture money for a payment we
 *     reported as not paid.
 *
 * Adapters throw `ProviderError` for every outcome that is not a readable intent. Its `kind` says what
 * the caller may conclude:
 *   declined    the card was refused (definitive; the intent, if returned, needs a new payment method).
 *   rejected    the request was refused without acting (definitive, e.g. the intent is in a state that
 *               does not allow this call: `intent_unexpected_state`). Retrieve the intent to learn why.
 *   throttled   the provider did not act (429 rate limit, lock timeout, idempotency key in flight):
 *               try again later; nothing happened.
 *   outage      the provider refuses us, not the card: authentication, permission or account
 *               configuration (401/403). Never a decline; payments stay retryable and an alarm fires.
 *   unknown     the call may or may not have taken effect: timeout, connection reset, any 5xx,
 *               an unreadable answer. Resolve only by retrieving the intent, never by trying blind.
 */

export const INTENT_STATUSES = [
  'requires_payment_method',
  'requires_confirmation',
  'requires_action',
  'processing',
  'requires_capture',
  'canceled',
  'succeeded',
] as const;
export type IntentStatus = (typeof INTENT_STATUSES)[number];

export interface IntentError {
  /** Provider error code, e.g. card_declined, insufficient_funds, expired_card. */
  readonly code: string;
  readonly message: string;
  /** Provider decline code when the card issuer gave one. */
  readonly declineCode?: string;
}

/** A provider intent as the core sees it. Amounts are integer minor units; currency upper case. */
export interface ProviderIntent {
  readonly id: string;
  /** Our payment id, from the intent's metadata (`payment_id`). */
  readonly paymentId: string;
  readonly status: IntentStatus;
  readonly amountMinor: number;
  readonly currency: string;
  /** Minor units captured so far (0 unless succeeded). */
  readonly amountReceived: number;
  /** Minor units refunded from the intent's charges. */
  readonly amountRefunded?: number;
  /** Id of the charge made by the successful confirmation. */
  readonly latestChargeId?: string;
  /** Why the last confirmation failed, when it did. */
  readonly lastError?: IntentError;
  /** Epoch seconds. */
  readonly created: number;
}

export type ProviderErrorKind = 'declined' | 'rejected' | 'throttled' | 'outage' | 'unknown';

export class ProviderError extends Error {
  override readonly name = 'ProviderError';
  constructor(
    readonly kind: ProviderErrorKind,
    /** Stable code: the provider's error code, or TIMEOUT, NETWORK_ERROR, HTTP_<status>, INVALID_RESPONSE. */
    readonly code: string,
    message: string,
    readonly extra: {
      /** The intent as the provider returned it with the error (declines carry it). */
      readonly intent?: ProviderIntent;
      readonly declineCode?: string;
      readonly retryAfterMs?: number;
      readonly httpStatus?: number;
    } = {},
  ) {
    super(message);
  }
}

export interface CreateIntentRequest {
  readonly paymentId: string;
  /** Which intent of the payment (0 unless an operator re-opened it): part of the idempotency key. */
  readonly intentSeq?: number;
  readonly amountMinor: number;
  /** ISO 4217, upper case. */
  readonly currency: string;
  readonly metadata?: Record<string, string>;
}

export interface ConfirmIntentRequest {
  readonly paymentId: string;
  /** 1-based attempt number: part of the confirmation's idempotency key. */
  readonly attempt: number;
  /** Provider payment method or card token (tok_..., pm_...). Never log it in full. */
  readonly paymentMethod: string;
}

export interface RefundRequest {
  readonly intentId: string;
  readonly paymentId: string;
  /** Minor units; the whole captured amount when omitted. */
  readonly amountMinor?: number;
  /** Why we refund (kept in the refund's metadata). */
  readonly reason: string;
}

export interface ProviderRefund {
  readonly id: string;
  readonly intentId: string;
  readonly amountMinor: number;
  readonly currency: string;
  /** pending | succeeded | failed | canceled */
  readonly status: string;
}

export interface IntentPage {
  readonly intents: ProviderIntent[];
  /** Pass as `startingAfter` for the next page; absent on the last page. */
  readonly nextCursor?: string;
}

export interface PaymentProvider {
  /** Creates the payment's intent, or returns the one already created for it (same idempotency key). */
  createIntent(req: CreateIntentRequest): Promise<ProviderIntent>;
  /**
   * Confirms the intent with the payment method. Resolves with the intent after the call (succeeded,
   * processing, requires_action, ...); throws ProviderError (declined carries the intent).
   * Idempotency key: `confirmIdempotencyKey(paymentId, attempt)`.
   */
  confirmIntent(intentId: string, req: ConfirmIntentRequest): Promise<ProviderIntent>;
  /** The intent as the provider has it now. Throws ProviderError when it cannot be read. */
  retrieveIntent(intentId: string): Promise<ProviderIntent>;
  /** The intent created for this payment, if any (search by metadata). For when the create's answer was lost. */
  findIntentForPayment(paymentId: string): Promise<ProviderIntent | undefined>;
  /** Cancels the intent so it can never succeed. Throws `rejected` with the intent when it already succeeded. */
  cancelIntent(intentId: string, paymentId: string): Promise<ProviderIntent>;
  /** Refunds captured money idempotently (key derived from the intent and amount). */
  refund(req: RefundRequest): Promise<ProviderRefund>;
  /**
   * Intents created in [from, to), one page at a time, in the provider's order (Stripe: newest first, with no
   * ascending option); callers must not depend on the order. Pass `nextCursor` back as `startingAfter`.
   */
  listIntents(q: { readonly from: Date; readonly to: Date; readonly startingAfter?: string; readonly limit?: number }): Promise<IntentPage>;
}

/**
 * The provider idempotency key of a payment's intent: derived from the payment alone, so every create
 * returns the same intent. Only an operator re-open of a failed payment, whose intent was cancelled
 * first, moves to the next intent (`intentSeq`).
 */
export function intentIdempotencyKey(paymentId: string, intentSeq = 0): string {
  return intentSeq === 0 ? `intent-${paymentId}` : `intent-${paymentId}-r${intentSeq}`;
}

/** The provider idempotency key of one confirmation of a payment's intent. */
export function confirmIdempotencyKey(paymentId: string, attempt: number): string {
  if (!Number.isInteger(attempt) || attempt < 1) throw new RangeError(`attempt must be a positive integer, got ${attempt}`);
  return `confirm-${paymentId}-${attempt}`;
}

/**
 * The provider idempotency key of a cancel: one per intent (a re-opened payment's next intent is
 * cancelled under its own key; the provider refuses a key reused for another object).
 */
export function cancelIdempotencyKey(intentId: string): string {
  return `cancel-${intentId}`;
}

/** The provider idempotency key of a refund: one per intent and amount, so a repeated refund does nothing. */
export function refundIdempotencyKey(intentId: string, amountMinor: number | undefined): string {
  return `refund-${intentId}-${amountMinor ?? 'all'}`;
}
