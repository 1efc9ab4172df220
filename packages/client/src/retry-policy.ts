/**
 * When the client may send a request again, and how long it waits first.
 *
 * Safe means "cannot do a thing twice": reads, creates under one idempotency key (the server answers
 * a repeat with the first payment) and actions sent with an Idempotency-Key (the server answers a
 * repeat with the first response). Those are retried on no answer (network error, timeout), 429,
 * 409 CONCURRENT_UPDATE or IDEMPOTENCY_IN_PROGRESS and 5xx. A request without that guarantee is
 * retried only on answers that mean nothing happened: 429, 503 and 409 CONCURRENT_UPDATE. No other 4xx
 * is ever retried: sending the same request again cannot change it.
 */
export interface RetryOptions {
  /** Attempts in all, the first included. Default 4. */
  readonly maxAttempts?: number;
  /** Backoff base: attempt n waits random(0, min(maxDelayMs, baseDelayMs * 2^n)). Default 200 ms. */
  readonly baseDelayMs?: number;
  /** Default 10 s; also the most a Retry-After header can make the client wait. */
  readonly maxDelayMs?: number;
}

export type Idempotency = 'safe' | 'unsafe';

export interface Outcome {
  /** Undefined when no answer came (network error, timeout, connection reset, lost response). */
  readonly status?: number;
  /** error.code of an error body. */
  readonly code?: string | undefined;
  readonly retryAfter?: string | null | undefined;
}

export function isRetryable(outcome: Outcome, idempotency: Idempotency): boolean {
  const { status, code } = outcome;
  const concurrent = status === 409 && code === 'CONCURRENT_UPDATE';
  if (idempotency === 'unsafe') return status === 429 || status === 503 || concurrent;
  const inProgress = status === 409 && code === 'IDEMPOTENCY_IN_PROGRESS';
  return status === undefined || status === 429 || concurrent || inProgress || status >= 500;
}

/** Full jitter, but never sooner than the server's Retry-After (seconds or an HTTP date), capped. */
export function retryDelayMs(attempt: number, outcome: Outcome, options: RetryOptions = {}, random = Math.random, now = Date.now()): number {
  const base = options.baseDelayMs ?? 200;
  const cap = options.maxDelayMs ?? 10_000;
  const backoff = random() * Math.min(cap, base * 2 ** attempt);
  return Math.min(cap, Math.max(backoff, retryAfterMs(outcome.retryAfter, now)));
}

function retryAfterMs(header: string | null | undefined, now: number): number {
  if (!header) return 0;
  if (/^\d+$/.test(header.trim())) return Number(header.trim()) * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? 0 : Math.max(0, at - now);
}
