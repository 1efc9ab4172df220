/**
 * What every processing step shares: its dependencies, settings and the result types. The steps
 * (claim, attempt, resolve, settle, finish) are plain functions over this context, so each file reads
 * top to bottom.
 */
import type { BreakerCaller, BreakerDenial, BreakerPermit } from '../circuit-breaker';
import type { PaymentStatus } from '../payment';
import type { Clock, Logger, Metrics, PaymentMessage, PaymentQueue, PaymentStore } from '../ports';
import type { PaymentProvider, ServiceTag } from '../ports/payment-provider';
import type { RandomSource } from '../retry-policy';

/** The part of PaymentStore the processor uses. */
export type ProcessorStore = Pick<PaymentStore, 'get' | 'transition' | 'postpone' | 'recordIntent'>;

/** The part of CircuitBreaker the processor uses. */
export interface ProviderGate {
  acquire(caller?: BreakerCaller): BreakerPermit | BreakerDenial;
}

export interface ProcessorConfig {
  readonly retryBaseSeconds: number;
  readonly retryCapSeconds: number;
  readonly leaseSeconds: number;
  readonly providerTimeoutMs: number;
  /** A retrying payment is due for the reconciler this long after nextAttemptAt. Default: the lease. */
  readonly retryGraceMs?: number;
  /**
   * STUCK_AFTER_SECONDS: a claim keeps a due time at most this long after its lease end (claimDueAt in
   * claim.ts). Default 0: every claim moves the due time to the lease end.
   */
  readonly stuckAfterSeconds?: number;
  /**
   * Spread of re-sends deferred by an open breaker, added after the breaker's retry time, so they do not
   * all come back at once. Default 10 s (wiring: half the open period).
   */
  readonly deferJitterMs?: number;
  /** How long a payment waits when the provider refuses our credentials (an outage). Default 60 s. */
  readonly outageDelayMs?: number;
  /**
   * A payment is confirmed only before it is this old; past it, it is expired (its intent cancelled first).
   * Default 24 h. The reconciler expires by the same deadline.
   */
  readonly openDeadlineSeconds?: number;
  /** How long the provider keeps an idempotency key (Stripe: 24 h). Default 24 h. */
  readonly providerKeyRetentionSeconds?: number;
  /** Our tag on intents: a lookup by payment id ignores intents tagged for another deployment. */
  readonly tag?: ServiceTag;
  /** First wait while the provider keeps an intent processing; it grows with the wait, capped at retryCapSeconds. Default 5 s. */
  readonly providerWaitMs?: number;
}

export interface PaymentProcessorDeps {
  readonly store: ProcessorStore;
  readonly provider: PaymentProvider;
  readonly queue: PaymentQueue;
  readonly breaker: ProviderGate;
  readonly config: ProcessorConfig;
  readonly logger: Logger;
  /** Default: none. */
  readonly metrics?: Metrics;
  readonly clock?: Clock;
  readonly random?: RandomSource;
}

/** A queue message as the worker reads it. */
export type WorkerMessage = PaymentMessage;

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
  | 'concurrent_update'
  /** A resolve-only message found nothing the intent could settle now (no attempt open, or none ended). */
  | 'nothing_to_resolve';

export type ProcessResult =
  | { readonly kind: 'ignored'; readonly reason: IgnoredReason; readonly status?: PaymentStatus }
  /** Early message (notBefore in the future) re-sent with the remaining delay. */
  | { readonly kind: 'rescheduled'; readonly notBefore: number; readonly delaySeconds: number }
  /** Provider breaker open: re-sent for later, payment untouched, no retry consumed. */
  | { readonly kind: 'deferred'; readonly notBefore: number; readonly delaySeconds: number }
  /** The payment moved: to success, failed, expired or retrying. */
  | { readonly kind: 'settled'; readonly status: PaymentStatus; readonly attempt: number; readonly via: 'confirm' | 'retrieve' | 'cancel' }
  /** The provider is still processing the payment's intent: checked again later, payment untouched (no version). */
  | { readonly kind: 'waiting'; readonly notBefore: number };

/**
 * The provider could not tell us where the payment's intent stands (or refused to cancel it right now).
 * Nothing is decided: the message is redelivered, and the reconciler finds the payment by its due time.
 */
export class OutcomeUnresolvedError extends Error {
  override readonly name = 'OutcomeUnresolvedError';
  readonly retryable = true;
  constructor(
    readonly paymentId: string,
    readonly step: string,
    override readonly cause?: unknown,
  ) {
    super(`the provider state of ${paymentId} is unresolved (${step})${cause ? `: ${errorText(cause)}` : ''}`);
  }
}

/** A message whose notBefore is at most this far ahead is processed now (clock skew between hosts). */
export const NOT_BEFORE_TOLERANCE_MS = 250;

export const WORKER = 'worker';

/** The resolved context every step receives. */
export interface Ctx {
  readonly deps: PaymentProcessorDeps;
  readonly clock: Clock;
  readonly random: RandomSource;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly leaseMs: number;
  readonly graceMs: number;
  readonly stuckAfterMs: number;
  readonly deferJitterMs: number;
  readonly outageDelayMs: number;
  readonly openDeadlineMs: number;
  readonly keyRetentionMs: number;
  readonly tag?: ServiceTag;
  readonly providerWaitMs: number;
}

/** Whether the payment is past its open deadline: it may not be confirmed any more, only finished. */
export const pastDeadline = (ctx: Pick<Ctx, 'clock' | 'openDeadlineMs'>, p: { readonly createdAt: string }): boolean =>
  ctx.clock().getTime() - Date.parse(p.createdAt) >= ctx.openDeadlineMs;

export function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
