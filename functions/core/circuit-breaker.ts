/**
 * Circuit breaker for calls to the payment provider, one per provider (see CircuitBreakerRegistry).
 *
 *   closed    calls pass. Each result is recorded; the breaker opens when `consecutiveFailures` results
 *             in a row failed, or when at least `minimumCalls` of the last `windowSize` results are
 *             recorded and the failure share among them reaches `failureRateThreshold`.
 *   open      calls are refused until `openMs` after opening (`retryAt` says when); then half-open.
 *   half-open up to `halfOpenProbes` calls at a time are let through as probes. `successesToClose`
 *             successful probes close the breaker; one failed probe opens it again. A probe whose caller
 *             never reports (crashed) frees its slot after `probeTimeoutMs`.
 *
 * State lives in memory, so in Lambda each function instance has its own breaker: it protects the
 * provider from this instance's traffic and spares the instance calls that would fail anyway, it is not
 * a fleet-wide switch. Results of calls admitted before the last state change are ignored, so a slow
 * call from before the breaker opened cannot close or re-open it.
 */
import type { Logger } from './ports';

export type BreakerState = 'closed' | 'open' | 'half_open';

export interface BreakerStateChange {
  readonly name: string;
  readonly from: BreakerState;
  readonly to: BreakerState;
  /** Epoch ms. */
  readonly at: number;
  readonly reason: string;
}

export interface CircuitBreakerOptions {
  /** Open after this many consecutive failures; 0 disables the rule. Default 5. */
  readonly consecutiveFailures?: number;
  /** Failure share (0..1] of the window that opens the breaker; 0 disables the rule. Default 0.5. */
  readonly failureRateThreshold?: number;
  /** Number of most recent results the failure rate is computed over. Default 20. */
  readonly windowSize?: number;
  /** The rate rule applies only with at least this many results in the window. Default 10. */
  readonly minimumCalls?: number;
  /** How long the breaker stays open before probing. Default 30 s. */
  readonly openMs?: number;
  /** Concurrent probes admitted while half-open. Default 1. */
  readonly halfOpenProbes?: number;
  /** Successful probes needed to close. Default 1. */
  readonly successesToClose?: number;
  /** An admitted probe that never reports frees its slot after this. Default openMs. */
  readonly probeTimeoutMs?: number;
  /** Epoch ms clock. Default Date.now. */
  readonly now?: () => number;
  /** Called on every state change (wiring logs it with `logStateChange`); by default nothing. */
  readonly onStateChange?: (change: BreakerStateChange) => void;
}

/** Permission for one provider interaction; report exactly one of success/failure/release. */
export interface BreakerPermit {
  readonly allowed: true;
  /** Whether this call is a half-open probe. */
  readonly probe: boolean;
  success(): void;
  failure(): void;
  /** The call was not made after all (e.g. the payment moved under us): record nothing. */
  release(): void;
}

export interface BreakerDenial {
  readonly allowed: false;
  readonly state: BreakerState;
  /** Epoch ms at which a call may be admitted again. */
  readonly retryAt: number;
}

export interface BreakerSnapshot {
  readonly name: string;
  readonly state: BreakerState;
  readonly consecutiveFailures: number;
  readonly windowCalls: number;
  readonly windowFailures: number;
  readonly openedAt?: number;
  readonly openUntil?: number;
  readonly probesInFlight: number;
  /** Number of state changes since creation. */
  readonly transitions: number;
}

/** One log line per state change (never one per call). */
export const logStateChange =
  (logger: Logger) =>
  (c: BreakerStateChange): void => {
    const attrs = { breaker: c.name, from: c.from, to: c.to, reason: c.reason, at: new Date(c.at).toISOString() };
    if (c.to === 'open') logger.warn('circuit breaker opened', attrs);
    else logger.info(`circuit breaker ${c.to === 'closed' ? 'closed' : 'half-open'}`, attrs);
  };

export class CircuitBreaker {
  private readonly consecutiveThreshold: number;
  private readonly rateThreshold: number;
  private readonly windowSize: number;
  private readonly minimumCalls: number;
  private readonly openMs: number;
  private readonly halfOpenProbes: number;
  private readonly successesToClose: number;
  private readonly probeTimeoutMs: number;
  private readonly now: () => number;
  private readonly onStateChange: (change: BreakerStateChange) => void;

  private current: BreakerState = 'closed';
  /** Incremented on every state change; permits from an older generation are ignored. */
  private generation = 0;
  private transitions = 0;
  private consecutive = 0;
  /** Ring of the last results in closed state: true = failure. */
  private window: boolean[] = [];
  private openedAt: number | undefined;
  private openUntil: number | undefined;
  private probeSuccesses = 0;
  private readonly probes = new Map<number, number>();
  private nextProbeId = 1;

  constructor(
    readonly name: string,
    opts: CircuitBreakerOptions = {},
  ) {
    this.consecutiveThreshold = opts.consecutiveFailures ?? 5;
    this.rateThreshold = opts.failureRateThreshold ?? 0.5;
    this.windowSize = opts.windowSize ?? 20;
    this.minimumCalls = opts.minimumCalls ?? 10;
    this.openMs = opts.openMs ?? 30_000;
    this.halfOpenProbes = opts.halfOpenProbes ?? 1;
    this.successesToClose = opts.successesToClose ?? 1;
    this.probeTimeoutMs = opts.probeTimeoutMs ?? this.openMs;
    this.now = opts.now ?? Date.now;
    this.onStateChange = opts.onStateChange ?? (() => {});
    const int = (v: number, min: number, what: string) => {
      if (!Number.isInteger(v) || v < min) throw new RangeError(`${what} must be an integer >= ${min}, got ${v}`);
    };
    int(this.consecutiveThreshold, 0, 'consecutiveFailures');
    int(this.windowSize, 1, 'windowSize');
    int(this.minimumCalls, 1, 'minimumCalls');
    int(this.halfOpenProbes, 1, 'halfOpenProbes');
    int(this.successesToClose, 1, 'successesToClose');
    if (!(this.rateThreshold >= 0 && this.rateThreshold <= 1)) throw new RangeError('failureRateThreshold must be in [0, 1]');
    if (!(this.openMs > 0) || !(this.probeTimeoutMs > 0)) throw new RangeError('openMs and probeTimeoutMs must be > 0');
    if (this.consecutiveThreshold === 0 && this.rateThreshold === 0) throw new RangeError('at least one opening rule must be enabled');
  }

  /** The state now (an open breaker whose open time is over reports, and becomes, half-open). */
  get state(): BreakerState {
    this.tick();
    return this.current;
  }

  snapshot(): BreakerSnapshot {
    this.tick();
    return {
      name: this.name,
      state: this.current,
      consecutiveFailures: this.consecutive,
      windowCalls: this.window.length,
      windowFailures: this.window.filter(Boolean).length,
      ...(this.openedAt !== undefined ? { openedAt: this.openedAt } : {}),
      ...(this.openUntil !== undefined ? { openUntil: this.openUntil } : {}),
      probesInFlight: this.probes.size,
      transitions: this.transitions,
    };
  }

  /** Asks to make one provider interaction now. */
  acquire(): BreakerPermit | BreakerDenial {
    this.tick();
    const now = this.now();
    if (this.current === 'open') {
      return { allowed: false, state: 'open', retryAt: this.openUntil ?? now + this.openMs };
    }
    if (this.current === 'closed') return this.permit(undefined);

    // half-open: free the slots of probes that never reported, then admit if a slot is free.
    for (const [id, startedAt] of this.probes) if (now - startedAt >= this.probeTimeoutMs) this.probes.delete(id);
    if (this.probes.size >= this.halfOpenProbes) {
      const oldest = Math.min(...this.probes.values());
      return { allowed: false, state: 'half_open', retryAt: oldest + this.probeTimeoutMs };
    }
    const id = this.nextProbeId++;
    this.probes.set(id, now);
    return this.permit(id);
  }

  /** Runs `fn` under a permit, recording a rejection or `isFailure(result)` as a failure. */
  async call<T>(fn: () => Promise<T>, isFailure: (result: T) => boolean = () => false): Promise<T> {
    const p = this.acquire();
    if (!p.allowed) throw new CircuitOpenError(this.name, p.retryAt);
    try {
      const result = await fn();
      if (isFailure(result)) p.failure();
      else p.success();
      return result;
    } catch (err) {
      p.failure();
      throw err;
    }
  }

  private permit(probeId: number | undefined): BreakerPermit {
    const generation = this.generation;
    let done = false;
    const finish = (outcome: 'success' | 'failure' | 'release') => {
      if (done) return;
      done = true;
      if (probeId !== undefined) this.probes.delete(probeId);
      if (outcome === 'release' || generation !== this.generation) return;
      this.record(outcome === 'failure', probeId !== undefined);
    };
    return {
      allowed: true,
      probe: probeId !== undefined,
      success: () => finish('success'),
      failure: () => finish('failure'),
      release: () => finish('release'),
    };
  }

  private record(failed: boolean, probe: boolean): void {
    if (this.current === 'half_open' && probe) {
      if (failed) return this.open('half-open probe failed');
      this.probeSuccesses++;
      if (this.probeSuccesses >= this.successesToClose) this.transition('closed', `${this.probeSuccesses} probe(s) succeeded`);
      return;
    }
    if (this.current !== 'closed') return;
    this.consecutive = failed ? this.consecutive + 1 : 0;
    this.window.push(failed);
    if (this.window.length > this.windowSize) this.window.shift();
    if (!failed) return;
    if (this.consecutiveThreshold > 0 && this.consecutive >= this.consecutiveThreshold) {
      return this.open(`${this.consecutive} consecutive failures`);
    }
    const failures = this.window.filter(Boolean).length;
    if (this.rateThreshold > 0 && this.window.length >= this.minimumCalls && failures / this.window.length >= this.rateThreshold) {
      return this.open(`failure rate ${failures}/${this.window.length}`);
    }
  }

  private open(reason: string): void {
    const now = this.now();
    this.openedAt = now;
    this.openUntil = now + this.openMs;
    this.transition('open', reason);
  }

  private tick(): void {
    if (this.current === 'open' && this.openUntil !== undefined && this.now() >= this.openUntil) {
      this.transition('half_open', `open for ${this.openMs} ms`);
    }
  }

  private transition(to: BreakerState, reason: string): void {
    const from = this.current;
    if (from === to) return;
    this.current = to;
    this.generation++;
    this.transitions++;
    this.probes.clear();
    this.probeSuccesses = 0;
    if (to === 'closed') {
      this.consecutive = 0;
      this.window = [];
      this.openedAt = undefined;
      this.openUntil = undefined;
    }
    if (to === 'half_open') this.openUntil = undefined;
    try {
      this.onStateChange({ name: this.name, from, to, at: this.now(), reason });
    } catch {
      /* a failing listener must not break the breaker */
    }
  }
}

export class CircuitOpenError extends Error {
  override readonly name = 'CircuitOpenError';
  constructor(
    readonly breaker: string,
    readonly retryAt: number,
  ) {
    super(`circuit breaker ${breaker} is open until ${new Date(retryAt).toISOString()}`);
  }
}

/** One breaker per key (e.g. the provider's base URL), all with the same options. */
export class CircuitBreakerRegistry {
  private readonly breakers = new Map<string, CircuitBreaker>();

  constructor(private readonly opts: CircuitBreakerOptions = {}) {}

  get(key: string): CircuitBreaker {
    let b = this.breakers.get(key);
    if (!b) this.breakers.set(key, (b = new CircuitBreaker(key, this.opts)));
    return b;
  }

  /** The state of every breaker, for metrics and health output. */
  snapshots(): BreakerSnapshot[] {
    return [...this.breakers.values()].map((b) => b.snapshot());
  }
}
