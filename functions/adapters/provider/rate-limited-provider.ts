/**
 * Every provider call through the account's shared rate budget (core/ports/rate-budget.ts), added by
 * wiring around the real adapter like the tracing wrapper; the core never knows.
 *
 *   - Before each call: wait for a slot. No slot within the budget's wait bound, or the budget cannot be
 *     reached: the call is not sent and fails as `throttled` (RATE_BUDGET), the outcome of a provider 429,
 *     so the payment retries after the budget's Retry-After. Nothing happened at the provider.
 *   - A provider 429 (rate_limit, not a lock timeout or a key in flight, which concern one object): the
 *     whole fleet pauses until its Retry-After (default 1 s; Stripe may send none), then the error goes
 *     on to the core as before.
 */
import { ProviderError, type PaymentProvider } from '../../core/ports/payment-provider';
import { BudgetExhaustedError, type RateBudget } from '../../core/ports/rate-budget';

type Operation = keyof PaymentProvider;
/** Every operation of the port, so one added to it cannot bypass the budget (a missing key fails to compile). */
const EVERY_OPERATION: Record<Operation, true> = {
  createIntent: true,
  confirmIntent: true,
  retrieveIntent: true,
  findIntentsForPayment: true,
  cancelIntent: true,
  refund: true,
  retrieveRefund: true,
  listRefunds: true,
  listIntents: true,
};
const OPERATIONS = Object.keys(EVERY_OPERATION) as Operation[];

/** Pause after a provider 429 that names no Retry-After. */
export const DEFAULT_PROVIDER_PAUSE_MS = 1000;

/** A 429 about the account's rate, as opposed to one object's lock or an idempotency key in flight. */
export const isAccountRateLimit = (err: unknown): err is ProviderError =>
  err instanceof ProviderError && err.kind === 'throttled' && err.extra.httpStatus === 429 && err.code !== 'lock_timeout';

export function withRateBudget(provider: PaymentProvider, budget: RateBudget, now: () => number = Date.now): PaymentProvider {
  const limited = <K extends Operation>(operation: K): PaymentProvider[K] => {
    const call = (provider[operation] as (...args: unknown[]) => Promise<unknown>).bind(provider);
    const wrapped = async (...args: unknown[]): Promise<unknown> => {
      try {
        await budget.take();
      } catch (err) {
        const retryAfterMs = err instanceof BudgetExhaustedError ? err.retryAfterMs : DEFAULT_PROVIDER_PAUSE_MS;
        const why = err instanceof Error ? err.message : String(err);
        throw new ProviderError('throttled', 'RATE_BUDGET', `${operation} not sent: ${why}`, { retryAfterMs });
      }
      try {
        return await call(...args);
      } catch (err) {
        if (isAccountRateLimit(err)) {
          // Best effort: the error goes on whether or not the pause was recorded.
          await budget.pauseUntil(now() + (err.extra.retryAfterMs ?? DEFAULT_PROVIDER_PAUSE_MS)).catch(() => undefined);
        }
        throw err;
      }
    };
    return wrapped as PaymentProvider[K];
  };
  return Object.fromEntries(OPERATIONS.map((op) => [op, limited(op)])) as unknown as PaymentProvider;
}
