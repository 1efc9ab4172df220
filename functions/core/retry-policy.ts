/**
 * Retry policy for payment attempts: exponential backoff with full jitter, and the translation of a
 * wait into SQS delay-queue terms. (What a provider answer means lives in processing/provider-outcome.ts.)
 *
 * Semantics (see processing/settle.ts):
 *   - `retryCount` counts retries already scheduled. The retry scheduled after a failure of a payment
 *     whose retryCount is r waits `random(0, min(cap, base * 2^r))`: the first retry waits at most
 *     `base`, the second at most `2 * base`, ... never more than `cap` (the "cap" of retry r is
 *     non-decreasing in r, the jittered delay itself is not).
 *   - With maxRetries M a payment failing forever makes 1 + M attempts, then fails; a retry may be
 *     scheduled only while retryCount < M.
 *   - SQS caps DelaySeconds at 900. A longer wait is a chain: the message carries `notBefore` and a
 *     worker receiving it early re-sends it with the remaining delay.
 *
 * All durations are milliseconds internally; configuration is seconds and may be fractional
 * (RETRY_BASE_SECONDS=0.05 is valid, which tests use to run fast).
 */

/** SQS DelaySeconds upper bound. */
export const MAX_DELAY_SECONDS = 900;

export interface BackoffConfig {
  /** Base of the exponential, in seconds (may be fractional). */
  readonly baseSeconds: number;
  /** Upper bound of any single wait, in seconds (may be fractional). */
  readonly capSeconds: number;
}

/** Returns a float in [0, 1), like Math.random. */
export type RandomSource = () => number;

export function validateBackoff(cfg: BackoffConfig): void {
  if (!Number.isFinite(cfg.baseSeconds) || cfg.baseSeconds <= 0) throw new RangeError(`retry base must be > 0 seconds, got ${cfg.baseSeconds}`);
  if (!Number.isFinite(cfg.capSeconds) || cfg.capSeconds < cfg.baseSeconds) {
    throw new RangeError(`retry cap must be >= the base (${cfg.baseSeconds} s), got ${cfg.capSeconds}`);
  }
}

/** The upper bound of the wait before retry number `retryCount + 1`: min(cap, base * 2^retryCount), in ms. */
export function backoffCapMs(retryCount: number, cfg: BackoffConfig): number {
  if (!Number.isInteger(retryCount) || retryCount < 0) throw new RangeError(`retryCount must be a non-negative integer, got ${retryCount}`);
  const capMs = cfg.capSeconds * 1000;
  // 2^r overflows to Infinity for large r; min() keeps the result at the cap.
  return Math.round(Math.min(capMs, cfg.baseSeconds * 1000 * 2 ** retryCount));
}

/** Full jitter: a uniformly random wait in [0, backoffCapMs(retryCount)], whole milliseconds. */
export function backoffDelayMs(retryCount: number, cfg: BackoffConfig, random: RandomSource = Math.random): number {
  const cap = backoffCapMs(retryCount, cfg);
  const r = random();
  if (!(r >= 0 && r < 1)) throw new RangeError(`random() must return a number in [0, 1), got ${r}`);
  return Math.min(cap, Math.round(r * cap));
}

/**
 * The wait before the next attempt: the jittered backoff, but not shorter than a provider's Retry-After
 * (itself bounded by the cap, so a hostile Retry-After cannot park a payment for days).
 */
export function retryDelayMs(
  retryCount: number,
  cfg: BackoffConfig,
  random: RandomSource = Math.random,
  retryAfterMs?: number,
): { delayMs: number; capMs: number } {
  const capMs = backoffCapMs(retryCount, cfg);
  let delayMs = backoffDelayMs(retryCount, cfg, random);
  if (retryAfterMs !== undefined && Number.isFinite(retryAfterMs) && retryAfterMs > 0) {
    delayMs = Math.max(delayMs, Math.min(Math.round(retryAfterMs), cfg.capSeconds * 1000));
  }
  return { delayMs, capMs };
}

/** True while another retry may be scheduled: retryCount counts retries already scheduled. */
export const canScheduleRetry = (retryCount: number, maxRetries: number): boolean => retryCount < maxRetries;

export interface Schedule {
  /** What to pass as SQS DelaySeconds: whole seconds, 0..900 (rounded up, so never early). */
  readonly delaySeconds: number;
  /** Epoch ms before which the attempt must not run; a receiver re-sends the message if it is early. */
  readonly notBefore: number;
}

/**
 * A wait of `delayMs` from `now` in SQS terms. Waits over 900 s get delaySeconds 900 and a notBefore
 * further out: the receiver re-sends with the remaining delay (a chain of at most ceil(wait / 900) hops).
 */
export function scheduleFor(delayMs: number, now: Date | number): Schedule {
  const at = typeof now === 'number' ? now : now.getTime();
  const wait = Number.isFinite(delayMs) && delayMs > 0 ? delayMs : 0;
  return {
    delaySeconds: Math.min(MAX_DELAY_SECONDS, Math.ceil(wait / 1000)),
    notBefore: at + Math.ceil(wait),
  };
}
