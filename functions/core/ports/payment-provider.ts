/**
 * Port to the card payment provider, modelled on payment intents (Stripe PaymentIntents).
 *
 * The money promise rests on the provider, not on luck:
 *   - Each payment has exactly one provider intent. It is created with a provider idempotency key derived
 *     from the payment id (`intentIdempotencyKey`), so every create for a payment returns the same
 *     intent while the provider keeps the key, and the intent records our payment id, its sequence and
 *     this service's tag (service and stage) in its metadata so it can be found again and told apart from
 *     the intents of other integrations on the same account.
 *   - Every attempt confirms that same intent, and only once its id is stored on the payment. The provider
 *     lets an intent succeed at most once: a late, duplicated or concurrent confirmation can never move
 *     money a second time.
 *   - A canceled intent can never succeed. A payment becomes failed or expired only after its intent is
 *     canceled (or was never confirmed), so no late confirmation can capture money for a payment we
 *     reported as not paid.
 *
 * The provider keeps an idempotency key for a limited time (Stripe: 24 h) and saves the first answer under
 * it, a 5xx included: a replayed answer says so (`extra.replayed`), and a replayed error is not a fresh
 * outcome: the object is looked up instead (search by metadata, or the intent's refunds).
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
  /** This service's tag, from the intent's metadata: absent on intents other integrations made. */
  readonly service?: string;
  readonly stage?: string;
  /** Which intent of the payment (metadata `intent_seq`; 0 when absent). */
  readonly intentSeq?: number;
}

/** Whose intents the service may act on: the tag it writes on every intent and refund. */
export interface ServiceTag {
  readonly service: string;
  readonly stage: string;
}

/** Only intents carrying exactly our tag are ours; anything else is reported, never touched. */
export const isOurs = (intent: Pick<ProviderIntent, 'service' | 'stage'>, tag: ServiceTag): boolean =>
  intent.service === tag.service && intent.stage === tag.stage;

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
      /** The provider replayed the answer it saved under the request's idempotency key (not a fresh outcome). */
      readonly replayed?: boolean;
      /** Raised before the request left (our input could not be encoded): nothing happened at the provider. */
      readonly notSent?: boolean;
    } = {},
  ) {
    super(message);
  }
}

export interface CreateIntentRequest {
  readonly paymentId: string;
  /** Which intent of the payment (0 unless an operator re-opened it): part of the idempotency key. */
  readonly intentSeq?: number;
  /**
   * Which key of that intent (0 first): moves on only after the key's saved answer was an error and a
   * lookup found no intent, so a saved 5xx cannot block the payment for the key's retention.
   */
  readonly keyGeneration?: number;
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
  /** Our refund record's id: in the refund's metadata (`refund_id`) and in its idempotency key. */
  readonly refundId: string;
  /** Which key of the refund (0 first); see refundIdempotencyKey. */
  readonly keyGeneration: number;
  readonly intentId: string;
  readonly paymentId: string;
  /** Minor units (ours, ISO 4217). */
  readonly amountMinor: number;
  /** ISO 4217, upper case: the intent's currency. */
  readonly currency: string;
  /** Why we refund (kept in the refund's metadata). */
  readonly reason: string;
}

export type ProviderRefundStatus = 'pending' | 'requires_action' | 'succeeded' | 'failed' | 'canceled';

export interface ProviderRefund {
  readonly id: string;
  readonly intentId: string;
  readonly amountMinor: number;
  readonly currency: string;
  readonly status: ProviderRefundStatus;
  /** Our refund record's id, from the refund's metadata; absent on refunds made elsewhere (Dashboard). */
  readonly refundId?: string;
  readonly failureReason?: string;
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
  /**
   * Every intent carrying this payment id in its metadata (search). The index lags (Stripe: up to about a
   * minute): an empty answer about an intent made moments ago means "not found yet".
   */
  findIntentsForPayment(paymentId: string): Promise<ProviderIntent[]>;
  /**
   * Cancels the intent so it can never succeed. Throws `rejected` with the intent when it already succeeded
   * (or cannot be cancelled now, e.g. processing). Cancelling is naturally idempotent, so each call has its
   * own key: a 5xx saved under one call's key cannot block the next.
   */
  cancelIntent(intentId: string, paymentId: string): Promise<ProviderIntent>;
  /** Refunds captured money; the key is `refundIdempotencyKey(refundId, keyGeneration)`. */
  refund(req: RefundRequest): Promise<ProviderRefund>;
  /** A refund as the provider has it now (its charge expanded). */
  retrieveRefund(providerRefundId: string): Promise<ProviderRefund>;
  /** The refunds of an intent (a list, not a search: it does not lag), newest first. */
  listRefunds(intentId: string): Promise<ProviderRefund[]>;
  /**
   * Intents created in [from, to), one page at a time, in the provider's order (Stripe: newest first, with no
   * ascending option); callers must not depend on the order. Pass `nextCursor` back as `startingAfter`.
   */
  listIntents(q: { readonly from: Date; readonly to: Date; readonly startingAfter?: string; readonly limit?: number }): Promise<IntentPage>;
}

/**
 * The provider idempotency key of a payment's intent: derived from the payment, so every create returns
 * the same intent. Only an operator re-open of a failed payment, whose intent was cancelled first, moves
 * to the next intent (`intentSeq`); a key whose saved answer is an error, when no intent was found for it,
 * moves to the next key generation.
 */
export function intentIdempotencyKey(paymentId: string, intentSeq = 0, keyGeneration = 0): string {
  const base = intentSeq === 0 ? `intent-${paymentId}` : `intent-${paymentId}-r${intentSeq}`;
  return keyGeneration === 0 ? base : `${base}-k${keyGeneration}`;
}

/** The provider idempotency key of one confirmation of a payment's intent. */
export function confirmIdempotencyKey(paymentId: string, attempt: number): string {
  if (!Number.isInteger(attempt) || attempt < 1) throw new RangeError(`attempt must be a positive integer, got ${attempt}`);
  return `confirm-${paymentId}-${attempt}`;
}

/**
 * The provider idempotency key of one cancel call. Cancelling twice is harmless (the second answers that
 * the intent is cancelled), so every call has its own key (`nonce`): a 5xx saved under one key must not
 * block the cancel, and with it the payment's expiry, for the key's retention.
 */
export function cancelIdempotencyKey(intentId: string, nonce: string): string {
  return `cancel-${intentId}-${nonce}`;
}

/**
 * The provider idempotency key of a refund: derived from our refund record, so re-sending it cannot
 * refund twice. A refund is not naturally idempotent: the key moves to the next generation only when its
 * saved answer was an error and the intent's refunds show none carrying our refund id.
 */
export function refundIdempotencyKey(refundId: string, keyGeneration: number): string {
  return keyGeneration === 0 ? `refund-${refundId}` : `refund-${refundId}-k${keyGeneration}`;
}

/**
 * What the provider can take, known before anything is sent, so the API refuses at create what the
 * provider would refuse later. The adapter owns the facts (its amount table, its metadata limits).
 */
export interface ChargeRules {
  /** Metadata keys the adapter writes on every intent: refused as tenant keys, and the room they take. */
  readonly reservedMetadataKeys: readonly string[];
  readonly metadata: { readonly maxKeys: number; readonly maxKeyLength: number; readonly maxValueLength: number; readonly forbiddenKeyCharacters?: RegExp };
  /** Why the provider would refuse this amount; undefined when it can charge it. */
  amountProblem(amountMinor: number, currency: string): ChargeProblem | undefined;
}

export type ChargeProblem =
  /** The currency is not one the provider charges in. */
  | { readonly code: 'UNSUPPORTED_CURRENCY'; readonly message: string }
  /** Finer than the provider's unit for the currency (MGA in whole units, three-decimal amounts ending in 0). */
  | { readonly code: 'AMOUNT_PRECISION_EXCEEDED'; readonly message: string; readonly step: number }
  /** Below the provider's minimum charge. */
  | { readonly code: 'AMOUNT_BELOW_MINIMUM'; readonly message: string; readonly minimumMinor: number }
  /** Over what the provider takes in one charge. */
  | { readonly code: 'AMOUNT_TOO_LARGE'; readonly message: string };
