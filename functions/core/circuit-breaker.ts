/**
 * Circuit breaker for calls to the payment provider: it opens on provider-wide failure only.
 *
 * What counts. Each result is recorded against the payment (and tenant) it was for, and only a
 * payment's latest result inside the sliding time window counts: a card that fails ten times in the
 * window is one failing payment, not ten failures. The breaker opens when all of these hold:
 *   - at least `minFailingPayments` distinct payments failed in the window (K);
 *   - the share of failing payments among all payments with a result in the window reaches
 *     `failureRateThreshold`;
 *   - no tenant with at least `minTenantPayments` results in the window is healthy (its own failure
 *     share below the threshold). A tenant whose payments go through proves the provider is up, so
 *     another tenant's always-failing cards cannot close the provider to everyone.
 * With one tenant the last rule is the rate rule again; with many it is what keeps them apart.
 *
 *   closed    calls pass; results are recorded.
 *   open      calls are refused until `openMs` after opening (`retryAt` says when); then half-open.
 *   half-open ordinary payments are admitted as probes, at most `halfOpenProbes` in flight.
 *             `successesToClose` successful probes close the breaker; probes of `failuresToReopen`
 *             distinct payments failing open it again (so one bad card drawn as a probe cannot).
 *             Callers beyond the probe slots are refused with `retryAt` a short `halfOpenRetryMs` later,
 *             not another whole open period. A probe whose caller never reports frees its slot after
 *             `probeTimeoutMs`.
 *
 * Quiet by design: refusals are counted, not logged; the one line per state change carries the counts
 * of the period that just ended (see logStateChange).
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
  /** Calls refused while in `from` (one number instead of one log line per refused call). */
  readonly refused: number;
  /** Distinct payments and tenants with a failure in the window when the breaker opened. */
  readonly failingPayments?: number;
  readonly failingTenants?: number;
  /** State changes since creation, this one included (a counter for metrics). */
  readonly transitions: number;
}

export interface CircuitBreakerOptions {
  /** Length of the sliding window results are counted over. Default 30 s. */
  readonly windowMs?: number;
  /** Share (0..1] of the window's payments whose latest result failed that opens the breaker; 0 never opens. Default 0.5. */
  readonly failureRateThreshold?: number;
  /** Distinct failing payments needed in the window before the rate counts (K). Default 10. */
  readonly minFailingPayments?: number;
  /** A tenant with at least this many payments in the window and a failure share below the threshold keeps the breaker closed. Default 5. */
  readonly minTenantPayments?: number;
  /** How long the breaker stays open before probing. Default 30 s. */
  readonly openMs?: number;
  /** Probes (ordinary payments) admitted at a time while half-open. Default 3. */
  readonly halfOpenProbes?: number;
  /** Successful probes needed to close. Default 2. */
  readonly successesToClose?: number;
  /** Failed probes (distinct payments) that open the breaker again. Default 2 (1 with a single probe slot). */
  readonly failuresToReopen?: number;
  /** A caller refused while half-open may come back after this. Default 5 s. */
  readonly halfOpenRetryMs?: number;
  /** An admitted probe that never reports frees its slot after this. Default 30 s. */
  readonly probeTimeoutMs?: number;
  /** Epoch ms clock. Default Date.now. */
  readonly now?: () => number;
  /** Called on every state change (wiring logs it with `logStateChange`); by default nothing. */
  readonly onStateChange?: (change: BreakerStateChange) => void;
}

/** Who a provider call is for. Without it each call counts as a payment of its own. */
export interface BreakerCaller {
  readonly paymentId: string;
  readonly tenantId?: string;
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
  /** Payments with a result in the window, and how many of them failed last. */
  readonly windowPayments: number;
  readonly failingPayments: number;
  readonly failingTenants: number;
  readonly openedAt?: number;
  readonly openUntil?: number;
  readonly probesInFlight: number;
  readonly refused: number;
  /** Number of state changes since creation. */
  readonly transitions: number;
}

/** One log line per state change (never one per call), carrying the counts a dashboard needs. */
export const logStateChange =
  (logger: Logger) =>
  (c: BreakerStateChange): void => {
    const attrs = {
      breaker: c.name,
      from: c.from,
      to: c.to,
      reason: c.reason,
      at: new Date(c.at).toISOString(),
      refusedWhile: c.refused,
      breakerTransitions: c.transitions,
      ...(c.failingPayments !== undefined ? { failingPayments: c.failingPayments, failingTenants: c.failingTenants } : {}),
    };
    if (c.to === 'open') logger.warn('circuit breaker opened', attrs);
    else logger.info(`circuit breaker ${c.to === 'closed' ? 'closed' : 'half-open'}`, attrs);
  };

interface WindowEntry {
  readonly tenantId: string;
  readonly failed: boolean;
  readonly at: number;
}

export class CircuitBreaker {
  private readonly windowMs: number;
  private readonly rateThreshold: number;
  private readonly minFailing: number;
  private readonly minTenantPayments: number;
  private readonly openMs: number;
  private readonly halfOpenProbes: number;
  private readonly successesToClose: number;
  private readonly failuresToReopen: number;
  private readonly halfOpenRetryMs: number;
  private readonly probeTimeoutMs: number;
  private readonly now: () => number;
  private readonly onStateChange: (change: BreakerStateChange) => void;

  private current: BreakerState = 'closed';
  /** Incremented on every state change; permits from an older generation are ignored. */
  private generation = 0;
  private transitions = 0;
  /** Latest result per payment, oldest first (an update moves the payment to the end). */
  private readonly window = new Map<string, WindowEntry>();
  private openedAt: number | undefined;
  private openUntil: number | undefined;
  private probeSuccesses = 0;
  private readonly probeFailures = new Set<string>();
  private refused = 0;
  private readonly probes = new Map<number, number>();
  private nextProbeId = 1;
  private anonymous = 0;

  constructor(
    readonly name: string,
    opts: CircuitBreakerOptions = {},
  ) {
    this.windowMs = opts.windowMs ?? 30_000;
    this.rateThreshold = opts.failureRateThreshold ?? 0.5;
    this.minFailing = opts.minFailingPayments ?? 10;
    this.minTenantPayments = opts.minTenantPayments ?? 5;
    this.openMs = opts.openMs ?? 30_000;
    this.halfOpenProbes = opts.halfOpenProbes ?? 3;
    this.successesToClose = opts.successesToClose ?? 2;
    this.failuresToReopen = opts.failuresToReopen ?? Math.min(2, this.halfOpenProbes);
    this.halfOpenRetryMs = opts.halfOpenRetryMs ?? 5_000;
    this.probeTimeoutMs = opts.probeTimeoutMs ?? 30_000;
    this.now = opts.now ?? Date.now;
    this.onStateChange = opts.onStateChange ?? (() => {});
    const int = (v: number, min: number, what: string) => {
      if (!Number.isInteger(v) || v < min) throw new RangeError(`${what} must be an integer >= ${min}, got ${v}`);
    };
    int(this.minFailing, 1, 'minFailingPayments');
    int(this.minTenantPayments, 1, 'minTenantPayments');
    int(this.halfOpenProbes, 1, 'halfOpenProbes');
    int(this.successesToClose, 1, 'successesToClose');
    int(this.failuresToReopen, 1, 'failuresToReopen');
    if (!(this.rateThreshold >= 0 && this.rateThreshold <= 1)) throw new RangeError('failureRateThreshold must be in [0, 1]');
    for (const [what, v] of [['windowMs', this.windowMs], ['openMs', this.openMs], ['halfOpenRetryMs', this.halfOpenRetryMs], ['probeTimeoutMs', this.probeTimeoutMs]] as const) {
      if (!(v > 0)) throw new RangeError(`${what} must be > 0`);
    }
  }

  /** The state now (an open breaker whose open time is over reports, and becomes, half-open). */
  get state(): BreakerState {
    this.tick();
    return this.current;
  }

  snapshot(): BreakerSnapshot {
    this.tick();
    this.prune();
    const { payments, failing, failingTenants } = this.tally();
    return {
      name: this.name,
      state: this.current,
      windowPayments: payments,
      failingPayments: failing,
      failingTenants: failingTenants.size,
      ...(this.openedAt !== undefined ? { openedAt: this.openedAt } : {}),
      ...(this.openUntil !== undefined ? { openUntil: this.openUntil } : {}),
      probesInFlight: this.probes.size,
      refused: this.refused,
      transitions: this.transitions,
    };
  }

  /** Asks to make one provider interaction now, for `caller`'s payment. */
  acquire(caller?: BreakerCaller): BreakerPermit | BreakerDenial {
    this.tick();
    const now = this.now();
    const who = caller ?? { paymentId: `anonymous-${++this.anonymous}` };
    if (this.current === 'open') {
      this.refused++;
      return { allowed: false, state: 'open', retryAt: this.openUntil ?? now + this.openMs };
    }
    if (this.current === 'closed') return this.permit(who, undefined);

    // half-open: free the slots of probes that never reported, then admit if a slot is free.
    for (const [id, startedAt] of this.probes) if (now - startedAt >= this.probeTimeoutMs) this.probes.delete(id);
    if (this.probes.size >= this.halfOpenProbes) {
      this.refused++;
      return { allowed: false, state: 'half_open', retryAt: now + this.halfOpenRetryMs };
    }
    const id = this.nextProbeId++;
    this.probes.set(id, now);
    return this.permit(who, id);
  }

  /** Runs `fn` under a permit, recording a rejection or `isFailure(result)` as a failure. */
  async call<T>(fn: () => Promise<T>, isFailure: (result: T) => boolean = () => false, caller?: BreakerCaller): Promise<T> {
    const p = this.acquire(caller);
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

  private permit(caller: BreakerCaller, probeId: number | undefined): BreakerPermit {
    const generation = this.generation;
    let done = false;
    const finish = (outcome: 'success' | 'failure' | 'release') => {
      if (done) return;
      done = true;
      if (probeId !== undefined) this.probes.delete(probeId);
      if (outcome === 'release' || generation !== this.generation) return;
      this.record(caller, outcome === 'failure', probeId !== undefined);
    };
    return {
      allowed: true,
      probe: probeId !== undefined,
      success: () => finish('success'),
      failure: () => finish('failure'),
      release: () => finish('release'),
    };
  }

  private record(caller: BreakerCaller, failed: boolean, probe: boolean): void {
    if (this.current === 'half_open' && probe) {
      if (failed) {
        this.probeFailures.add(caller.paymentId);
        if (this.probeFailures.size >= this.failuresToReopen) this.open(`${this.probeFailures.size} half-open probe(s) failed`);
        return;
      }
      this.probeSuccesses++;
      if (this.probeSuccesses >= this.successesToClose) this.transition('closed', `${this.probeSuccesses} probe(s) succeeded`);
      return;
    }
    if (this.current !== 'closed') return;
    const now = this.now();
    this.window.delete(caller.paymentId);
    this.window.set(caller.paymentId, { tenantId: caller.tenantId ?? '', failed, at: now });
    this.prune();
    if (!failed || this.rateThreshold === 0) return;
    const { payments, failing, failingTenants, healthyTenant } = this.tally();
    if (failing < this.minFailing || failing / payments < this.rateThreshold) return;
    if (healthyTenant !== undefined) return;
    this.open(`${failing} of ${payments} payments failed within ${this.windowMs} ms`, { failingPayments: failing, failingTenants: failingTenants.size });
  }

  /** Drops results older than the window (the map is in time order). */
  private prune(): void {
    const from = this.now() - this.windowMs;
    for (const [id, e] of this.window) {
      if (e.at > from) break;
      this.window.delete(id);
    }
  }

  private tally() {
    let failing = 0;
    const failingTenants = new Set<string>();
    const perTenant = new Map<string, { n: number; failed: number }>();
    for (const e of this.window.values()) {
      const t = perTenant.get(e.tenantId) ?? { n: 0, failed: 0 };
      t.n++;
      if (e.failed) {
        t.failed++;
        failing++;
        failingTenants.add(e.tenantId);
      }
      perTenant.set(e.tenantId, t);
    }
    let healthyTenant: string | undefined;
    for (const [tenant, t] of perTenant) {
      if (t.n >= this.minTenantPayments && t.failed / t.n < this.rateThreshold) healthyTenant = tenant;
    }
    return { payments: this.window.size, failing, failingTenants, healthyTenant };
  }

  private open(reason: string, counts: { failingPayments?: number; failingTenants?: number } = {}): void {
    const now = this.now();
    this.openedAt = now;
    this.openUntil = now + this.openMs;
    this.transition('open', reason, counts);
  }

  private tick(): void {
    if (this.current === 'open' && this.openUntil !== undefined && this.now() >= this.openUntil) {
      this.transition('half_open', `open for ${this.openMs} ms`);
    }
  }

  private transition(to: BreakerState, reason: string, counts: { failingPayments?: number; failingTenants?: number } = {}): void {
    const from = this.current;
    if (from === to) return;
    const refused = this.refused;
    this.current = to;
    this.generation++;
    this.transitions++;
    this.refused = 0;
    this.probes.clear();
    this.probeSuccesses = 0;
    this.probeFailures.clear();
    this.window.clear();
    if (to === 'closed') {
      this.openedAt = undefined;
      this.openUntil = undefined;
    }
    if (to === 'half_open') this.openUntil = undefined;
    try {
      this.onStateChange({ name: this.name, from, to, at: this.now(), reason, refused, transitions: this.transitions, ...counts });
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
