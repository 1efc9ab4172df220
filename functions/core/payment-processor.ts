/**
 * The payment-attempt use case run by the worker for each queue message. Dependencies are injected.
 *
 * Money safety rests on three rules:
 *   1. Attempt N charges with the provider idempotency key `<paymentId>:<N>`. The provider moves money
 *      at most once per key, so any repetition of attempt N (duplicate message, redelivery, two workers)
 *      cannot charge twice.
 *   2. A new attempt N+1 starts only when attempt N is known not to have charged: every path that
 *      leaves attempt N's outcome open (provider timeout, network error, a worker that died holding the
 *      lease) asks the provider `lookup(<id>:<N>)` before N+1 is charged, and does not charge if the
 *      lookup cannot answer.
 *   3. An attempt is claimed with a conditional write (version + status) and a lease. Only the claimer
 *      charges; everyone else acks. A lease that runs out means the claimer died: its outcome is
 *      recovered by lookup (rule 2), never by charging again.
 *
 * Residual risk: a charge for key N that the provider records only after both the immediate lookup and
 * the pre-charge lookup of attempt N+1 said "not found" (a request stuck in the provider for longer than
 * the backoff) can coexist with a charge for N+1. The provider key prevents a double charge for the same
 * attempt, not across attempts; the failed/success record keeps `lastError.details.outcome = 'unknown'`
 * history in the audit log, and the reconciler can compare the ledger with terminal payments.
 */
import type { TransitionRequest } from '../adapters/dynamo/payment-repository';
import type { PaymentMessage, PaymentQueue } from '../adapters/sqs/payment-queue';
import { logger as defaultLogger } from '../shared/logger';
import type { BreakerDenial, BreakerPermit } from './circuit-breaker';
import { ConcurrentUpdateError } from './errors';
import { isTerminal, type Payment, type PaymentError, type PaymentStatus } from './payment';
import {
  chargeIdempotencyKey,
  ProviderLookupError,
  type ChargeRequest,
  type ChargeResult,
  type LookupResult,
  type PaymentProvider,
} from './provider';
import { canScheduleRetry, retryDelayMs, scheduleFor, validateBackoff, type RandomSource } from './retry-policy';

/** A queue message as the worker reads it. `forAttempt` is set on messages that schedule a retry. */
export interface WorkerMessage extends PaymentMessage {
  /** The attempt number this message was scheduled to start; stale once the payment's attempt reached it. */
  readonly forAttempt?: number;
}

export interface ProcessorRepository {
  get(id: string): Promise<Payment | undefined>;
  transition(current: Payment, req: TransitionRequest): Promise<Payment>;
}

/** The part of CircuitBreaker the processor uses. */
export interface ProviderGate {
  acquire(): BreakerPermit | BreakerDenial;
}

export interface ProcessorLogger {
  debug(message: string, attrs?: Record<string, unknown>): void;
  info(message: string, attrs?: Record<string, unknown>): void;
  warn(message: string, attrs?: Record<string, unknown>): void;
  error(message: string, attrs?: Record<string, unknown>): void;
}

export interface ProcessorConfig {
  readonly retryBaseSeconds: number;
  readonly retryCapSeconds: number;
  readonly leaseSeconds: number;
  readonly providerTimeoutMs: number;
  /** A retrying payment is due for the reconciler this long after nextAttemptAt. Default: the lease. */
  readonly retryGraceMs?: number;
  /** Hard bound on one charge call, enforced here even if the adapter hangs. Default providerTimeoutMs + 1000. */
  readonly chargeDeadlineMs?: number;
  /** Spread of re-sends deferred by an open breaker, so they do not all come back at once. Default 1000. */
  readonly deferJitterMs?: number;
}

export interface FaultInjection {
  /**
   * Throws InjectedCrashError right after the provider reported a successful charge, before the payment
   * is updated: simulates a worker dying between the charge and the state write.
   */
  readonly crashAfterCharge?: boolean | ((payment: Payment) => boolean);
}

export interface PaymentProcessorDeps {
  readonly repository: ProcessorRepository;
  readonly provider: PaymentProvider;
  readonly queue: PaymentQueue;
  readonly breaker: ProviderGate;
  readonly config: ProcessorConfig;
  readonly clock?: () => Date;
  readonly random?: RandomSource;
  readonly logger?: ProcessorLogger;
  readonly faults?: FaultInjection;
}

export type IgnoredReason =
  /** No payment with this id. */
  | 'not_found'
  /** The payment is final: duplicate or late message. */
  | 'terminal'
  /** Another worker holds a live lease on the current attempt. */
  | 'leased'
  /** A retry message for an attempt that has already started. */
  | 'stale'
  /** Another writer changed the payment between our read and our write. */
  | 'concurrent_update';

export type ProcessResult =
  | { readonly kind: 'ignored'; readonly reason: IgnoredReason; readonly status?: PaymentStatus }
  /** Early message (notBefore in the future) re-sent with the remaining delay. */
  | { readonly kind: 'rescheduled'; readonly notBefore: number; readonly delaySeconds: number }
  /** Provider breaker open: re-sent for later, payment untouched, no retry consumed. */
  | { readonly kind: 'deferred'; readonly notBefore: number; readonly delaySeconds: number }
  /** The payment moved: to success, failed or retrying. */
  | { readonly kind: 'settled'; readonly status: PaymentStatus; readonly attempt: number; readonly via: 'charge' | 'lookup' };

/** The provider could not say whether an earlier attempt charged; the message must be redelivered later. */
export class OutcomeUnresolvedError extends Error {
  override readonly name = 'OutcomeUnresolvedError';
  readonly retryable = true;
  constructor(
    readonly paymentId: string,
    readonly idempotencyKey: string,
    readonly lookupError: unknown,
  ) {
    super(`cannot resolve the outcome of ${idempotencyKey}: ${errorText(lookupError)}`);
  }
}

/** Thrown by the crash-after-charge fault hook. */
export class InjectedCrashError extends Error {
  override readonly name = 'InjectedCrashError';
  constructor(readonly paymentId: string) {
    super(`injected crash after a successful charge of ${paymentId}`);
  }
}

/** A message whose notBefore is at most this far ahead is processed now (clock skew between hosts). */
export const NOT_BEFORE_TOLERANCE_MS = 250;

const ACTOR = 'worker';

type Failure = {
  readonly code: string;
  readonly message: string;
  readonly retryAfterMs?: number;
  /** 'unknown': the attempt may have charged; the next attempt looks its key up first. */
  readonly outcome: 'error' | 'unknown';
};

type Verdict = 'success' | 'failure' | 'release';

export class PaymentProcessor {
  private readonly clock: () => Date;
  private readonly random: RandomSource;
  private readonly log: ProcessorLogger;
  private readonly leaseMs: number;
  private readonly graceMs: number;
  private readonly chargeDeadlineMs: number;
  private readonly deferJitterMs: number;

  constructor(private readonly deps: PaymentProcessorDeps) {
    const c = deps.config;
    validateBackoff({ baseSeconds: c.retryBaseSeconds, capSeconds: c.retryCapSeconds });
    this.clock = deps.clock ?? (() => new Date());
    this.random = deps.random ?? Math.random;
    this.log = deps.logger ?? sharedLogger;
    this.leaseMs = c.leaseSeconds * 1000;
    this.graceMs = c.retryGraceMs ?? this.leaseMs;
    this.chargeDeadlineMs = c.chargeDeadlineMs ?? c.providerTimeoutMs + 1000;
    this.deferJitterMs = c.deferJitterMs ?? 1000;
    if (!(this.leaseMs > 0)) throw new RangeError('leaseSeconds must be > 0');
    // The attempt must be settled (charge, maybe a lookup, the write) while the lease still holds.
    if (!(this.chargeDeadlineMs > 0 && this.chargeDeadlineMs * 2 < this.leaseMs)) {
      throw new RangeError(
        `the charge deadline (${this.chargeDeadlineMs} ms) must be positive and less than half the lease (${this.leaseMs} ms)`,
      );
    }
  }

  async process(message: WorkerMessage): Promise<ProcessResult> {
    const ctx = { paymentId: message.paymentId, messageReason: message.reason };
    const p = await this.deps.repository.get(message.paymentId);
    if (!p) {
      this.log.warn('message for an unknown payment; dropped', ctx);
      return { kind: 'ignored', reason: 'not_found' };
    }
    if (isTerminal(p.status)) {
      this.log.info('payment already final; message dropped', { ...ctx, status: p.status });
      return { kind: 'ignored', reason: 'terminal', status: p.status };
    }
    const now = this.clock().getTime();
    if (message.notBefore !== undefined && message.notBefore - now > NOT_BEFORE_TOLERANCE_MS) {
      const s = scheduleFor(message.notBefore - now, now);
      await this.deps.queue.send({ ...message }, s.delaySeconds);
      this.log.debug('message early; re-sent with the remaining delay', { ...ctx, notBefore: message.notBefore, delaySeconds: s.delaySeconds });
      return { kind: 'rescheduled', notBefore: message.notBefore, delaySeconds: s.delaySeconds };
    }

    if (p.status === 'processing') {
      if (p.leaseUntil !== undefined && p.leaseUntil > now) {
        // The owner settles the attempt; if it dies, its own message comes back after the visibility
        // timeout (longer than the lease) and the reconciler finds the lapsed lease (dueAt = leaseUntil).
        this.log.info('attempt leased by another worker; message dropped', { ...ctx, attempt: p.attempt, leaseUntil: p.leaseUntil });
        return { kind: 'ignored', reason: 'leased', status: p.status };
      }
      return this.recoverLapsedLease(p, message);
    }

    // pending or retrying
    if (message.forAttempt !== undefined && message.forAttempt <= p.attempt) {
      this.log.info('retry message for an attempt that already started; dropped', { ...ctx, forAttempt: message.forAttempt, attempt: p.attempt });
      return { kind: 'ignored', reason: 'stale', status: p.status };
    }
    return this.attempt(p, message);
  }

  /** pending/retrying: resolve an unknown previous attempt if needed, claim the next attempt, charge. */
  private async attempt(p: Payment, message: WorkerMessage): Promise<ProcessResult> {
    const permit = this.deps.breaker.acquire();
    if (!permit.allowed) return this.defer(p, message, permit.retryAt);
    let verdict: Verdict = 'release';
    const saw = (failed: boolean) => {
      verdict = failed || verdict === 'failure' ? 'failure' : 'success';
    };
    try {
      const unresolved = unresolvedAttempt(p);
      if (unresolved !== undefined) {
        const key = chargeIdempotencyKey(p.id, unresolved);
        let found: LookupResult;
        try {
          found = await this.deps.provider.lookup(key);
          saw(false);
        } catch (err) {
          saw(true);
          throw this.unresolved(p, key, err);
        }
        if (found.found) return await this.settleFoundBeforeClaim(p, unresolved, found.result);
        this.log.info('previous attempt has no charge; starting the next one', { paymentId: p.id, previousAttempt: unresolved });
      }

      const now = this.clock();
      const attempt = p.attempt + 1;
      const leaseUntil = now.getTime() + this.leaseMs;
      let claimed: Payment;
      try {
        claimed = await this.deps.repository.transition(p, {
          to: 'processing',
          now,
          change: { action: 'attempt_started', actor: ACTOR, reason: `attempt ${attempt} (${message.reason})` },
          set: { attempt, leaseUntil },
          remove: ['nextAttemptAt'],
          dueAt: leaseUntil,
        });
      } catch (err) {
        if (err instanceof ConcurrentUpdateError) return this.lostRace(p, 'claim');
        throw err;
      }

      const key = chargeIdempotencyKey(p.id, attempt);
      const result = await this.charge(claimed, key);
      saw(result.outcome === 'retryable_error' || result.outcome === 'unknown');
      this.log.info('provider charge result', {
        paymentId: p.id,
        attempt,
        outcome: result.outcome,
        ...(result.outcome === 'succeeded' ? {} : { code: result.code }),
      });
      if (result.outcome === 'succeeded' && this.shouldCrash(claimed)) throw new InjectedCrashError(p.id);

      switch (result.outcome) {
        case 'succeeded':
          return await this.succeed(claimed, result.chargeId, 'charge', `attempt ${attempt} charged`);
        case 'declined':
          return await this.decline(claimed, result.code, result.message, 'charge');
        case 'retryable_error':
          return await this.retryOrFail(claimed, { code: result.code, message: result.message, retryAfterMs: result.retryAfterMs, outcome: 'error' }, 'charge');
        case 'unknown': {
          // The charge may have happened: ask once, right away.
          let found: LookupResult | undefined;
          let lookupError: unknown;
          try {
            found = await this.deps.provider.lookup(key);
          } catch (err) {
            lookupError = err;
          }
          if (found?.found) {
            const r = found.result;
            this.log.info('unknown charge outcome resolved by lookup', { paymentId: p.id, attempt, outcome: r.outcome });
            return r.outcome === 'succeeded'
              ? await this.succeed(claimed, r.chargeId, 'lookup', `attempt ${attempt} ${result.code}; charge found by lookup`)
              : await this.decline(claimed, r.code, r.message, 'lookup');
          }
          const why = lookupError ? `lookup failed: ${lookupError instanceof Error ? lookupError.message : String(lookupError)}` : 'lookup found no charge';
          return await this.retryOrFail(claimed, { code: result.code, message: `${result.message}; ${why}`, outcome: 'unknown' }, 'charge');
        }
      }
    } finally {
      (permit[verdict] as () => void)();
    }
  }

  /** processing with a lapsed lease: the attempt's outcome is unknown. Look it up; never charge here. */
  private async recoverLapsedLease(p: Payment, message: WorkerMessage): Promise<ProcessResult> {
    const permit = this.deps.breaker.acquire();
    if (!permit.allowed) return this.defer(p, message, permit.retryAt);
    let verdict: Verdict = 'release';
    try {
      const attempt = Math.max(1, p.attempt);
      const key = chargeIdempotencyKey(p.id, attempt);
      let found: LookupResult;
      try {
        found = await this.deps.provider.lookup(key);
        verdict = 'success';
      } catch (err) {
        verdict = 'failure';
        throw this.unresolved(p, key, err);
      }
      this.log.warn('attempt lease lapsed; outcome recovered by lookup', {
        paymentId: p.id,
        attempt,
        leaseUntil: p.leaseUntil,
        found: found.found,
        ...(found.found ? { outcome: found.result.outcome } : {}),
      });
      if (!found.found) {
        return await this.retryOrFail(
          p,
          {
            code: 'ATTEMPT_ABANDONED',
            message: `attempt ${attempt} did not finish before its lease ran out and the provider has no charge for it`,
            outcome: 'unknown',
          },
          'lookup',
        );
      }
      const r = found.result;
      return r.outcome === 'succeeded'
        ? await this.succeed(p, r.chargeId, 'lookup', `attempt ${attempt} lease lapsed; charge found by lookup`)
        : await this.decline(p, r.code, r.message, 'lookup');
    } finally {
      (permit[verdict] as () => void)();
    }
  }

  /** retrying whose previous attempt turned out to have a recorded result. */
  private async settleFoundBeforeClaim(
    p: Payment,
    attempt: number,
    r: Extract<ChargeResult, { outcome: 'succeeded' | 'declined' }>,
  ): Promise<ProcessResult> {
    this.log.warn('late result of a previous attempt found before the next attempt', { paymentId: p.id, attempt, outcome: r.outcome });
    if (r.outcome === 'declined') return this.decline(p, r.code, r.message, 'lookup');
    // retrying → success is not a transition: take the payment through processing without a new attempt.
    const now = this.clock();
    const leaseUntil = now.getTime() + this.leaseMs;
    let claimed: Payment;
    try {
      claimed = await this.deps.repository.transition(p, {
        to: 'processing',
        now,
        change: { action: 'attempt_recovered', actor: ACTOR, reason: `charge of attempt ${attempt} found by lookup` },
        set: { leaseUntil },
        remove: ['nextAttemptAt'],
        dueAt: leaseUntil,
      });
    } catch (err) {
      if (err instanceof ConcurrentUpdateError) return this.lostRace(p, 'recover');
      throw err;
    }
    return this.succeed(claimed, r.chargeId, 'lookup', `charge of attempt ${attempt} found by lookup`);
  }

  private async succeed(p: Payment, chargeId: string, via: 'charge' | 'lookup', reason: string): Promise<ProcessResult> {
    const now = this.clock();
    return this.write(p, 'success', via, {
      to: 'success',
      now,
      change: { action: 'charge_succeeded', actor: ACTOR, reason },
      set: { processedAt: now.toISOString(), providerChargeId: chargeId },
      remove: ['lastError', 'nextAttemptAt'],
    });
  }

  private async decline(p: Payment, code: string, message: string, via: 'charge' | 'lookup'): Promise<ProcessResult> {
    const now = this.clock();
    const lastError: PaymentError = { code, message, retryable: false, timestamp: now.toISOString(), details: { attempt: p.attempt } };
    return this.write(p, 'failed', via, {
      to: 'failed',
      now,
      change: { action: 'charge_declined', actor: ACTOR, reason: `${code}: ${message}` },
      set: { lastError },
      remove: ['nextAttemptAt'],
    });
  }

  /** A failed attempt: schedule the next one if the budget allows, else fail with a retryable error. */
  private async retryOrFail(p: Payment, f: Failure, via: 'charge' | 'lookup'): Promise<ProcessResult> {
    const now = this.clock();
    const attempt = p.attempt;
    const details: Record<string, unknown> = { attempt, outcome: f.outcome };
    if (!canScheduleRetry(p.retryCount, p.maxRetries)) {
      const lastError: PaymentError = { code: f.code, message: f.message, retryable: true, timestamp: now.toISOString(), details };
      this.log.warn('retries exhausted; payment failed', { paymentId: p.id, attempt, retryCount: p.retryCount, maxRetries: p.maxRetries, code: f.code });
      return this.write(p, 'failed', via, {
        to: 'failed',
        now,
        change: { action: 'retries_exhausted', actor: ACTOR, reason: `attempt ${attempt} ${f.code}; ${p.retryCount} of ${p.maxRetries} retries used` },
        set: { lastError },
        remove: ['nextAttemptAt'],
      });
    }

    const retryCount = p.retryCount + 1;
    const { delayMs, capMs } = retryDelayMs(
      p.retryCount,
      { baseSeconds: this.deps.config.retryBaseSeconds, capSeconds: this.deps.config.retryCapSeconds },
      this.random,
      f.retryAfterMs,
    );
    const s = scheduleFor(delayMs, now);
    const lastError: PaymentError = {
      code: f.code,
      message: f.message,
      retryable: true,
      timestamp: now.toISOString(),
      details: { ...details, retry: retryCount, delayMs, backoffCapMs: capMs },
    };
    const result = await this.write(p, 'retrying', via, {
      to: 'retrying',
      now,
      change: {
        action: 'retry_scheduled',
        actor: ACTOR,
        reason: `attempt ${attempt} ${f.code}; retry ${retryCount} of ${p.maxRetries} in ${delayMs} ms (backoff cap ${capMs} ms)`,
      },
      set: { retryCount, nextAttemptAt: s.notBefore, lastError },
      remove: ['leaseUntil'],
      dueAt: s.notBefore + this.graceMs,
    });
    if (result.kind !== 'settled') return result;
    try {
      const next: WorkerMessage = { paymentId: p.id, reason: 'retry', notBefore: s.notBefore, forAttempt: attempt + 1 };
      await this.deps.queue.send(next, s.delaySeconds);
    } catch (err) {
      // The payment is retrying with dueAt = nextAttemptAt + grace: the reconciler re-queues it.
      this.log.error('retry message not sent; the reconciler will re-queue the payment', { paymentId: p.id, error: errorText(err) });
    }
    this.log.info('retry scheduled', { paymentId: p.id, attempt, retryCount, delayMs, backoffCapMs: capMs, code: f.code });
    return result;
  }

  private async write(p: Payment, status: PaymentStatus, via: 'charge' | 'lookup', req: TransitionRequest): Promise<ProcessResult> {
    try {
      const next = await this.deps.repository.transition(p, req);
      return { kind: 'settled', status, attempt: next.attempt, via };
    } catch (err) {
      if (err instanceof ConcurrentUpdateError) return this.lostRace(p, req.change.action);
      throw err;
    }
  }

  private lostRace(p: Payment, step: string): ProcessResult {
    this.log.warn('payment changed by another writer; message dropped', { paymentId: p.id, step, version: p.version, status: p.status });
    return { kind: 'ignored', reason: 'concurrent_update' };
  }

  /** Breaker open: send the same message again for later. No state change, no retry consumed. */
  private async defer(p: Payment, message: WorkerMessage, retryAt: number): Promise<ProcessResult> {
    const now = this.clock().getTime();
    const notBefore = Math.max(retryAt, now) + Math.round(this.random() * this.deferJitterMs);
    const s = scheduleFor(notBefore - now, now);
    await this.deps.queue.send({ ...message, reason: 'deferred', notBefore }, s.delaySeconds);
    this.log.warn('provider circuit open; attempt deferred', {
      paymentId: p.id,
      status: p.status,
      attempt: p.attempt,
      retryCount: p.retryCount,
      notBefore,
      delaySeconds: s.delaySeconds,
    });
    return { kind: 'deferred', notBefore, delaySeconds: s.delaySeconds };
  }

  private unresolved(p: Payment, key: string, err: unknown): OutcomeUnresolvedError {
    this.log.warn('provider lookup failed; the attempt outcome stays unknown and the message will be redelivered', {
      paymentId: p.id,
      idempotencyKey: key,
      code: err instanceof ProviderLookupError ? err.code : undefined,
      error: errorText(err),
    });
    return new OutcomeUnresolvedError(p.id, key, err);
  }

  /** One charge, bounded by chargeDeadlineMs whatever the adapter does; a throw counts as unknown. */
  private async charge(p: Payment, idempotencyKey: string): Promise<ChargeResult> {
    const req: ChargeRequest = {
      idempotencyKey,
      paymentId: p.id,
      amountMinor: p.amountMinor,
      currency: p.currency,
      token: p.paymentMethod.token,
      ...(p.metadata && Object.keys(p.metadata).length > 0 ? { metadata: p.metadata } : {}),
    };
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<ChargeResult>((resolve) => {
      timer = setTimeout(
        () => resolve({ outcome: 'unknown', code: 'PROVIDER_TIMEOUT', message: `no provider answer within ${this.chargeDeadlineMs} ms` }),
        this.chargeDeadlineMs,
      );
    });
    try {
      return await Promise.race([
        this.deps.provider.charge(req).catch(
          (err: unknown): ChargeResult => ({ outcome: 'unknown', code: 'NETWORK_ERROR', message: errorText(err) }),
        ),
        deadline,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  private shouldCrash(p: Payment): boolean {
    const c = this.deps.faults?.crashAfterCharge;
    return typeof c === 'function' ? c(p) : c === true;
  }
}

/** The service logger behind the ProcessorLogger shape. */
export const sharedLogger: ProcessorLogger = {
  debug: (m, a) => defaultLogger.debug(m, a ?? {}),
  info: (m, a) => defaultLogger.info(m, a ?? {}),
  warn: (m, a) => defaultLogger.warn(m, a ?? {}),
  error: (m, a) => defaultLogger.error(m, a ?? {}),
};

/** The attempt whose charge outcome is still open on a retrying payment, if any. */
export function unresolvedAttempt(p: Payment): number | undefined {
  if (p.status !== 'retrying' || p.attempt < 1) return undefined;
  const d = p.lastError?.details;
  return d?.outcome === 'unknown' && d.attempt === p.attempt ? p.attempt : undefined;
}

function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
