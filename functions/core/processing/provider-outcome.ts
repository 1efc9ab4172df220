/**
 * What a provider answer means for a payment. Pure: no I/O.
 *
 * Only explicit, definitive answers end an attempt: a succeeded intent, a decline, a cancelled intent, an
 * intent that needs the customer (3-D Secure: a server-side confirm can never complete it). An intent the
 * provider is still processing is waited for. Everything unclear (timeouts, resets, 5xx, unreadable
 * answers) is `unknown` and is settled only by retrieving the intent later. Credential and account errors
 * are an `outage`: the provider refuses us, not the card, so they are never a decline.
 */
import { ProviderError, type ProviderIntent } from '../ports/payment-provider';

export type Outcome =
  /** Money moved, once, on this intent. */
  | { readonly kind: 'succeeded'; readonly intent: ProviderIntent }
  /** The card was refused. Final for the payment (after its intent is cancelled). */
  | { readonly kind: 'declined'; readonly code: string; readonly message: string; readonly intent?: ProviderIntent }
  /** The intent is cancelled: it can never succeed. */
  | { readonly kind: 'canceled'; readonly intent: ProviderIntent }
  /** The card needs the customer (3-D Secure): final for the payment, after its intent is cancelled. */
  | { readonly kind: 'needs_action'; readonly intent: ProviderIntent }
  /** The provider is processing the confirmation: wait for it (no retry spent), within the open deadline. */
  | { readonly kind: 'processing'; readonly intent: ProviderIntent }
  /** The provider did not act (rate limited, locked): try again after a wait. */
  | { readonly kind: 'retryable'; readonly code: string; readonly message: string; readonly retryAfterMs?: number }
  /** The provider refuses our credentials or account: an outage. Keep the payment, burn no retry. */
  | { readonly kind: 'outage'; readonly code: string; readonly message: string }
  /** Anything may have happened. Resolve by retrieving the intent. */
  | { readonly kind: 'unknown'; readonly code: string; readonly message: string };

/** Where an intent stands, read from the provider. */
export type IntentState =
  | { readonly kind: 'succeeded'; readonly intent: ProviderIntent }
  | { readonly kind: 'canceled'; readonly intent: ProviderIntent }
  /** The last confirmation was declined and nothing is in flight. */
  | { readonly kind: 'declined'; readonly code: string; readonly message: string; readonly intent: ProviderIntent }
  /** Waiting for a confirmation: no confirmation took effect (as far as the provider shows). */
  | { readonly kind: 'confirmable'; readonly intent: ProviderIntent }
  /** The confirmation needs the customer (requires_action): nobody completes it on a server-side confirm. */
  | { readonly kind: 'needs_action'; readonly intent: ProviderIntent }
  /** A confirmation is under way at the provider (processing; requires_capture, which automatic capture passes through). */
  | { readonly kind: 'in_flight'; readonly intent: ProviderIntent };

export function intentState(intent: ProviderIntent): IntentState {
  switch (intent.status) {
    case 'succeeded':
      return { kind: 'succeeded', intent };
    case 'canceled':
      return { kind: 'canceled', intent };
    case 'requires_payment_method':
      return intent.lastError
        ? { kind: 'declined', code: declineCode(intent.lastError.declineCode ?? intent.lastError.code), message: intent.lastError.message, intent }
        : { kind: 'confirmable', intent };
    case 'requires_confirmation':
      return { kind: 'confirmable', intent };
    case 'requires_action':
      return { kind: 'needs_action', intent };
    case 'processing':
    case 'requires_capture':
      return { kind: 'in_flight', intent };
  }
}

/** The outcome of a confirm that answered with an intent. */
export function confirmOutcome(intent: ProviderIntent): Outcome {
  const s = intentState(intent);
  switch (s.kind) {
    case 'succeeded':
    case 'canceled':
      return s;
    case 'declined':
      return { kind: 'declined', code: s.code, message: s.message, intent };
    case 'needs_action':
      return { kind: 'needs_action', intent };
    case 'in_flight':
      return { kind: 'processing', intent };
    case 'confirmable':
      return { kind: 'unknown', code: 'INTENT_NOT_FINAL', message: `the intent is ${intent.status} after confirmation` };
  }
}

/** The outcome of a provider call that threw. Errors that are not ProviderError are not outcomes: rethrown. */
export function errorOutcome(err: unknown): Outcome {
  if (!(err instanceof ProviderError)) throw err;
  // Raised before the request left (our input cannot be sent): nothing happened, and nothing will change
  // by trying again. Final for the payment, never an unclear outcome.
  if (err.extra.notSent) return { kind: 'declined', code: 'REQUEST_NOT_SENT', message: err.message };
  switch (err.kind) {
    case 'declined':
      return {
        kind: 'declined',
        code: declineCode(err.extra.declineCode ?? err.code),
        message: err.message,
        ...(err.extra.intent ? { intent: err.extra.intent } : {}),
      };
    case 'rejected':
      // A refusal of a payment method the provider cannot use is a decline of this card.
      return { kind: 'declined', code: declineCode(err.code), message: err.message, ...(err.extra.intent ? { intent: err.extra.intent } : {}) };
    case 'throttled':
      return {
        kind: 'retryable',
        // RATE_BUDGET: our own fleet-wide limiter kept the call back (nothing was sent); see isFleetThrottle.
        code: err.code === RATE_BUDGET ? RATE_BUDGET : 'RATE_LIMITED',
        message: err.message,
        ...(err.extra.retryAfterMs !== undefined ? { retryAfterMs: err.extra.retryAfterMs } : {}),
      };
    case 'outage':
      return { kind: 'outage', code: 'PROVIDER_AUTH_ERROR', message: err.message };
    case 'unknown':
      return { kind: 'unknown', code: unknownCode(err.code), message: err.message };
  }
}

/** The confirm was refused because the intent is not confirmable (already succeeded, cancelled, in flight). */
export const isUnexpectedState = (err: unknown): err is ProviderError =>
  err instanceof ProviderError && err.kind === 'rejected' && /unexpected_state/.test(err.code);

/** Whether the outcome says the provider is unhealthy (for the circuit breaker). */
export const isProviderFailure = (o: Outcome): boolean =>
  o.kind === 'unknown' || o.kind === 'outage' || (o.kind === 'retryable' && !isFleetThrottle(o));

/** The code of a call the fleet's provider rate budget did not send (adapters/provider/rate-limited-provider.ts). */
export const RATE_BUDGET = 'RATE_BUDGET';

/**
 * The call was never sent because the whole fleet is at the provider's rate limit: it says nothing about
 * this card or about the provider's health, so it spends no retry and casts no breaker vote. The payment
 * waits its turn, bounded by the open deadline like every open payment.
 */
export const isFleetThrottle = (o: Outcome): boolean => o.kind === 'retryable' && o.code === RATE_BUDGET;

/** Our stable decline codes from the provider's codes. */
export function declineCode(providerCode: string): string {
  switch (providerCode) {
    case 'insufficient_funds':
      return 'INSUFFICIENT_FUNDS';
    case 'card_declined':
    case 'generic_decline':
    case 'do_not_honor':
      return 'CARD_DECLINED';
    case 'resource_missing':
    case 'payment_method_invalid':
    case 'invalid_payment_method':
    case 'payment_method_unexpected_state':
      return 'INVALID_TOKEN';
    default:
      return /^[a-z0-9_]+$/.test(providerCode) ? providerCode.toUpperCase() : 'CARD_DECLINED';
  }
}

function unknownCode(code: string): string {
  if (code === 'TIMEOUT' || code === 'PROVIDER_TIMEOUT') return 'PROVIDER_TIMEOUT';
  if (code === 'NETWORK_ERROR' || code === 'INVALID_RESPONSE') return code;
  return 'PROVIDER_UNAVAILABLE';
}

/**
 * A refusal that holds for this payment however soon it is asked again: a decline, an outage of our
 * credentials, or our own rate budget. Anything else (a timeout, a 5xx, a provider 429, another request
 * with the same idempotency key still in flight) says nothing settled about the payment.
 */
export const isClearRefusal = (o: Outcome): boolean => o.kind === 'declined' || o.kind === 'outage' || isFleetThrottle(o);
