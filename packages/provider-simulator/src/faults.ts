/**
 * The faults a real provider produces, as settings (`POST /v1/faults` replaces the set). Each is a rate
 * drawn from one seeded RNG, or a duration. See the README for what each does.
 */

export interface FaultConfig {
  /** Confirm: 500 api_error, nothing captured (saved under the key). */
  readonly errorRate?: number;
  /** Confirm: the answer hangs past the client's timeout; captured or not (timeoutCommitRate). */
  readonly timeoutRate?: number;
  /** Probability that a timed-out confirm captured. Default 0.5. */
  readonly timeoutCommitRate?: number;
  /** Confirm: captured, then 500 (saved: replays say 500 too). */
  readonly commitThenErrorRate?: number;
  /** Confirm: holds the key and the intent's lock for lateCommitMs, then captures. */
  readonly lateCommitRate?: number;
  /** How long a late commit waits. Default 3000. */
  readonly lateCommitMs?: number;
  /** Confirm: captured, then the socket is destroyed (replays of the key too). */
  readonly resetAfterCommitRate?: number;
  /** Create intent: 500 saved under the key; the intent was made first with savedErrorCommitRate. */
  readonly createErrorRate?: number;
  /** Cancel: 500 saved under the key; the cancel took effect first with savedErrorCommitRate. */
  readonly cancelErrorRate?: number;
  /** Refund: 500 saved under the key; the refund was made first with savedErrorCommitRate. */
  readonly refundErrorRate?: number;
  /** Share of the saved 500s of create, cancel and refund that acted before failing. Default 0.5. */
  readonly savedErrorCommitRate?: number;
  /** Refunds stay pending this long before they end. Default 0 (final at once). */
  readonly refundPendingMs?: number;
  /** Share of refunds that end failed (after refundPendingMs): the money stays captured. */
  readonly refundFailureRate?: number;
  /** How long a saved answer is replayed under its key; then the key is forgotten. Default 24 h. */
  readonly idempotencyTtlMs?: number;
  /** Added to every POST while it holds its key and lock. */
  readonly latencyMs?: number;
  /** Lookups show each intent as it was this long ago. */
  readonly lookupLagMs?: number;
  /** Lookups answer 500. */
  readonly lookupErrorRate?: number;
  /** Every Stripe route answers 401. */
  readonly authFailure?: boolean;
  /** Webhook events wait a random time in [0, webhookDelayMs] before they are sent: late and reordered. */
  readonly webhookDelayMs?: number;
  /** Share of webhook events sent twice (the copy with its own delay). */
  readonly webhookDuplicateRate?: number;
  /** Share of webhook events never sent. */
  readonly webhookDropRate?: number;
  /** Reseeds the fault RNG when given. */
  readonly seed?: number;
}

export type ActiveFaults = Required<Omit<FaultConfig, 'seed'>>;

export const DAY_MS = 24 * 3600 * 1000;

export const NO_FAULTS: ActiveFaults = {
  errorRate: 0,
  timeoutRate: 0,
  timeoutCommitRate: 0.5,
  commitThenErrorRate: 0,
  lateCommitRate: 0,
  lateCommitMs: 3000,
  resetAfterCommitRate: 0,
  createErrorRate: 0,
  cancelErrorRate: 0,
  refundErrorRate: 0,
  savedErrorCommitRate: 0.5,
  refundPendingMs: 0,
  refundFailureRate: 0,
  idempotencyTtlMs: DAY_MS,
  latencyMs: 0,
  lookupLagMs: 0,
  lookupErrorRate: 0,
  authFailure: false,
  webhookDelayMs: 0,
  webhookDuplicateRate: 0,
  webhookDropRate: 0,
};

const RATES = [
  'errorRate',
  'timeoutRate',
  'timeoutCommitRate',
  'commitThenErrorRate',
  'lateCommitRate',
  'resetAfterCommitRate',
  'createErrorRate',
  'cancelErrorRate',
  'refundErrorRate',
  'savedErrorCommitRate',
  'refundFailureRate',
  'lookupErrorRate',
  'webhookDuplicateRate',
  'webhookDropRate',
] as const;
const DURATIONS = ['lateCommitMs', 'refundPendingMs', 'idempotencyTtlMs', 'latencyMs', 'lookupLagMs', 'webhookDelayMs'] as const;

/** Checks a fault set; missing fields take `defaults`. Throws RangeError naming the bad field. */
export function validateFaults(raw: unknown, defaults: ActiveFaults = NO_FAULTS): ActiveFaults {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new RangeError('faults must be an object');
  const f = raw as Record<string, unknown>;
  const known = new Set([...Object.keys(NO_FAULTS), 'seed']);
  for (const k of Object.keys(f)) if (!known.has(k)) throw new RangeError(`unknown fault: ${k}`);
  const out: Record<string, number | boolean> = {};
  for (const name of RATES) {
    const v = f[name] ?? defaults[name];
    if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw new RangeError(`${name} must be a number in [0, 1]`);
    out[name] = v;
  }
  for (const name of DURATIONS) {
    const v = f[name] ?? defaults[name];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new RangeError(`${name} must be a number >= 0`);
    out[name] = v;
  }
  const auth = f.authFailure ?? defaults.authFailure;
  if (typeof auth !== 'boolean') throw new RangeError('authFailure must be a boolean');
  out.authFailure = auth;
  const a = out as ActiveFaults;
  const sum = a.errorRate + a.timeoutRate + a.commitThenErrorRate + a.lateCommitRate + a.resetAfterCommitRate;
  if (sum > 1 + 1e-9) throw new RangeError('errorRate + timeoutRate + commitThenErrorRate + lateCommitRate + resetAfterCommitRate must be at most 1');
  if (f.seed !== undefined && !Number.isInteger(f.seed)) throw new RangeError('seed must be an integer');
  return a;
}

/** Small, fast, seedable PRNG returning floats in [0, 1) (also used by load scripts for repeatable mixes). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The active faults and the RNG they are drawn with, shared by every endpoint. */
export class Faults {
  private rng: () => number;
  private active: ActiveFaults;

  constructor(
    private readonly defaults: ActiveFaults,
    seed: number | undefined,
  ) {
    this.active = { ...defaults };
    this.rng = mulberry32(seed ?? Math.floor(Math.random() * 2 ** 32));
  }

  get now(): ActiveFaults {
    return this.active;
  }

  /** Replaces the set (missing fields take their defaults). Throws RangeError when invalid. */
  set(f: FaultConfig): void {
    this.active = validateFaults(f, this.defaults);
    if (f.seed !== undefined) this.rng = mulberry32(f.seed);
  }

  /** One draw in [0, 1). */
  draw(): number {
    return this.rng();
  }

  /** True with probability `rate` (no draw when the rate is 0, so a fault-free run uses no randomness). */
  hit(rate: number): boolean {
    return rate > 0 && this.rng() < rate;
  }
}
