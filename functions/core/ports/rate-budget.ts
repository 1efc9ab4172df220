/**
 * Port to a rate budget shared by every caller of one provider account (the whole worker fleet and the
 * reconciler): at most `opsPerSecond` calls start per second, whatever the number of function instances.
 * Stripe's default live limit is 100 operations a second for the whole account; calls above it are
 * answered 429 and do nothing.
 *
 * `take()` resolves when this caller's call may start (after waiting for its slot, at most the budget's
 * wait bound); when no slot is free within the bound it rejects with BudgetExhaustedError, and nothing
 * was sent. `pauseUntil()` holds every caller back: after a provider 429, the whole fleet honours its
 * Retry-After, not just the call that got it.
 */
export interface RateBudget {
  take(): Promise<void>;
  /** No call starts before this epoch ms (best effort: a budget that cannot be reached keeps its pace). */
  pauseUntil(epochMs: number): Promise<void>;
}

/** No slot within the wait bound: the caller tries again after `retryAfterMs`. Nothing was sent. */
export class BudgetExhaustedError extends Error {
  override readonly name = 'BudgetExhaustedError';
  constructor(
    readonly retryAfterMs: number,
    message = `provider rate budget exhausted; retry in ${retryAfterMs} ms`,
  ) {
    super(message);
  }
}

/** A budget that never waits (tests and tools that call the provider directly). */
export const unlimitedBudget: RateBudget = { take: async () => {}, pauseUntil: async () => {} };
