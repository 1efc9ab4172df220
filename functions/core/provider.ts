/**
 * Port to the card payment provider. Pure types and helpers, no I/O.
 *
 * Every charge carries an idempotency key `<paymentId>:<attempt>`. The provider guarantees that one key
 * moves money at most once, and it can be asked afterwards what happened to a key (`lookup`). Adapters
 * for real providers (for example Stripe PaymentIntents, which accept an `Idempotency-Key` header) must
 * keep both promises: send the key with the charge, and record it on the provider side (e.g. in the
 * intent's metadata) so that `lookup` can find the charge even when the charge response was lost.
 *
 * Adapters never throw for a provider outcome: declines, provider errors, timeouts and network failures
 * are all returned as a `ChargeResult`. `lookup` rejects with `ProviderLookupError` only when it cannot
 * tell whether a charge exists; callers must then treat the attempt as still unknown.
 */

export interface ChargeRequest {
  /** `<paymentId>:<attempt>`; see `chargeIdempotencyKey`. */
  readonly idempotencyKey: string;
  readonly paymentId: string;
  /** Integer minor units (cents). */
  readonly amountMinor: number;
  /** ISO 4217, upper case. */
  readonly currency: string;
  /** Provider card token. Never log it in full. */
  readonly token: string;
  readonly metadata?: Record<string, string>;
}

/** Decline codes the service knows about. Adapters may return others; callers treat any decline as final. */
export const DECLINE_CODES = ['CARD_DECLINED', 'INSUFFICIENT_FUNDS', 'INVALID_TOKEN', 'IDEMPOTENCY_MISMATCH'] as const;
/** Codes for errors where the provider did not charge and a later attempt may succeed. */
export const RETRYABLE_CODES = ['PROVIDER_UNAVAILABLE', 'RATE_LIMITED'] as const;
/** Codes for failures where the charge may or may not have happened. */
export const UNKNOWN_CODES = ['PROVIDER_TIMEOUT', 'NETWORK_ERROR', 'INVALID_RESPONSE'] as const;

export type ChargeResult =
  /** Money moved. */
  | { readonly outcome: 'succeeded'; readonly chargeId: string }
  /** The provider refused the charge. Final: retrying the same card will not help. */
  | { readonly outcome: 'declined'; readonly code: string; readonly message: string }
  /** The provider did not charge; another attempt later may succeed. */
  | { readonly outcome: 'retryable_error'; readonly code: string; readonly message: string; readonly retryAfterMs?: number }
  /** No answer: the charge may or may not have happened. Resolve with `lookup` before charging again. */
  | { readonly outcome: 'unknown'; readonly code: string; readonly message: string };

export type ChargeOutcome = ChargeResult['outcome'];

/** A recorded result is always definitive: `succeeded` or `declined`, never `unknown`. */
export type RecordedChargeResult = Extract<ChargeResult, { outcome: 'succeeded' | 'declined' }>;

export type LookupResult =
  | { readonly found: false }
  | { readonly found: true; readonly result: RecordedChargeResult };

export interface PaymentProvider {
  /** Charges once per idempotency key. Resolves with the outcome; never rejects for provider outcomes. */
  charge(req: ChargeRequest): Promise<ChargeResult>;
  /**
   * What the provider recorded for this key. `{ found: false }` means no charge was made with it.
   * Rejects with `ProviderLookupError` when the provider cannot be asked right now.
   */
  lookup(idempotencyKey: string): Promise<LookupResult>;
  /** Successful charges made in [from, to), for reconciliation against our payments. */
  listCharges?(from: Date, to: Date): Promise<SettledCharge[]>;
}

export interface SettledCharge {
  readonly idempotencyKey: string;
  readonly paymentId: string;
  readonly chargeId: string;
  readonly amountMinor: number;
  readonly currency: string;
  readonly at: string;
}

/** The provider could not say whether a charge exists (unreachable, timed out, error response). */
export class ProviderLookupError extends Error {
  override readonly name = 'ProviderLookupError';
  constructor(
    readonly code: string,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** The provider idempotency key of attempt `attempt` (1-based) of a payment. */
export function chargeIdempotencyKey(paymentId: string, attempt: number): string {
  if (!Number.isInteger(attempt) || attempt < 1) throw new RangeError(`attempt must be a positive integer, got ${attempt}`);
  return `${paymentId}:${attempt}`;
}

/** Splits `<paymentId>:<attempt>`; the payment id itself may contain ':'. */
export function parseChargeIdempotencyKey(key: string): { paymentId: string; attempt: number } | undefined {
  const i = key.lastIndexOf(':');
  if (i <= 0) return undefined;
  const attempt = Number(key.slice(i + 1));
  if (!Number.isInteger(attempt) || attempt < 1) return undefined;
  return { paymentId: key.slice(0, i), attempt };
}

/** True when the result settles the attempt (money moved or refused for good). */
export const isDefinitive = (r: ChargeResult): r is RecordedChargeResult =>
  r.outcome === 'succeeded' || r.outcome === 'declined';

