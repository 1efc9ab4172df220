/**
 * What a client reads in `lastError.message`. Provider text is never passed through: it is unbounded,
 * may echo card data, and changes without notice. Our codes map to our sentences.
 */
const MESSAGES: Record<string, string> = {
  CARD_DECLINED: 'The card was declined',
  INSUFFICIENT_FUNDS: 'The card has insufficient funds',
  INVALID_TOKEN: 'The payment method is invalid or unusable',
  PAYMENT_CANCELED: 'The payment was cancelled at the provider',
  RATE_LIMITED: 'The provider asked us to slow down; the payment will be retried',
  PROVIDER_UNAVAILABLE: 'The provider is unavailable; the payment will be retried',
  PROVIDER_TIMEOUT: 'The provider did not answer in time; the payment is checked before any retry',
  NETWORK_ERROR: 'The provider could not be reached; the payment is checked before any retry',
  INVALID_RESPONSE: 'The provider gave an unreadable answer; the payment is checked before any retry',
  INTENT_NOT_CONFIRMED: 'The provider shows no confirmation yet; the payment is checked before any retry',
  INTENT_IN_FLIGHT: 'The provider is still processing the payment',
  ATTEMPT_ABANDONED: 'An attempt did not finish; the provider shows no charge for it',
  PROVIDER_AUTH_ERROR: 'The provider refused our credentials; the payment waits without using a retry',
  PAYMENT_EXPIRED: 'The payment did not complete in time',
  AUTHENTICATION_REQUIRED: 'The card requires authentication (3-D Secure), which this API cannot perform; use another card',
  INTENT_PROCESSING: 'The provider is processing the payment; it is checked again without using a retry',
  RATE_BUDGET: "The provider account's rate limit is reached; the payment waits its turn without using a retry",
  REQUEST_NOT_SENT: 'The payment could not be sent to the provider',
};

/** Every code with a sentence of its own. */
export const PUBLIC_MESSAGE_CODES: readonly string[] = Object.keys(MESSAGES);

/**
 * The sentence for a code that ended a payment (failed or expired), where the open sentence above
 * promises what will no longer happen (another attempt, a check before one, waiting).
 */
const FINAL_MESSAGES: Record<string, string> = {
  RATE_LIMITED: 'The provider kept asking us to slow down; the payment failed after its last retry',
  PROVIDER_UNAVAILABLE: 'The provider was unavailable; the payment failed after its last retry',
  PROVIDER_TIMEOUT: 'The provider did not answer in time; the payment failed after its last retry',
  NETWORK_ERROR: 'The provider could not be reached; the payment failed after its last retry',
  INVALID_RESPONSE: 'The provider gave unreadable answers; the payment failed after its last retry',
  INTENT_NOT_CONFIRMED: 'The provider showed no confirmation; the payment failed after its last retry',
  INTENT_IN_FLIGHT: 'The provider did not finish processing the payment; it failed after its last retry',
  PROVIDER_AUTH_ERROR: 'The provider refused our credentials; the payment did not complete',
  RATE_BUDGET: "The provider account's rate limit held the payment back until it could no longer complete",
};

/** Our sentence for a payment's last error code; `final` when the payment is over (failed, expired). */
export function publicMessage(code: string, final = false): string {
  return (final ? FINAL_MESSAGES[code] : undefined) ?? MESSAGES[code] ?? (code.startsWith('PROVIDER_') ? 'The provider reported an error' : 'The payment could not be completed');
}
