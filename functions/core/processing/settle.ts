/**
 * Writing what an attempt found out. Each step is one conditional transition; losing the race to
 * another writer drops the message (the winner carries on).
 *
 *   succeed      the intent succeeded → success.
 *   retryOrFail  the attempt did not charge (or we cannot tell yet) → retrying with backoff, or, with
 *                the retry budget spent, finish as not paid.
 *   holdForOutage the provider refuses our credentials → retrying after a long wait, no retry spent.
 *   awaitProvider the provider is processing the confirmation → retrying, checked again later, no retry
 *                spent; waitForProvider checks it again without a new version (due time postponed).
 *   finishNotPaid see finish.ts: cancel the intent first, then failed / expired.
 */
import { ConcurrentUpdateError } from '../errors';
import type { Payment, PaymentError, PaymentStatus } from '../payment';
import type { TransitionRequest } from '../ports';
import type { ProviderIntent } from '../ports/payment-provider';
import { canScheduleRetry, retryDelayMs, scheduleFor } from '../retry-policy';
import { lostRace } from './claim';
import { errorText, WORKER, type Ctx, type ProcessResult } from './context';
import { finishNotPaid } from './finish';
import { RATE_BUDGET } from './provider-outcome';
import { publicMessage } from './public-messages';

type Via = 'confirm' | 'retrieve' | 'cancel';

export interface AttemptFailure {
  readonly code: string;
  readonly message: string;
  readonly retryAfterMs?: number;
  /** 'unknown': a confirmation may still take effect; the next attempt retrieves the intent first. */
  readonly outcome: 'error' | 'unknown';
}

/** The last error of a payment expired by its deadline (worker or reconciler). */
export function expiredError(now: Date, openDeadlineMs: number): PaymentError {
  return {
    code: 'PAYMENT_EXPIRED',
    message: `Payment did not complete within ${Math.round(openDeadlineMs / 3_600_000)} h`,
    retryable: false,
    timestamp: now.toISOString(),
  };
}

export async function succeed(ctx: Ctx, p: Payment, intent: ProviderIntent, via: Via, reason: string): Promise<ProcessResult> {
  const now = ctx.clock();
  return write(ctx, p, 'success', via, {
    to: 'success',
    now,
    change: { action: 'charge_succeeded', actor: WORKER, reason },
    set: { processedAt: now.toISOString(), providerChargeId: intent.latestChargeId ?? intent.id, intentId: intent.id },
    remove: ['lastError', 'nextAttemptAt'],
  });
}

/** A failed attempt: schedule the next one if the budget allows, else finish the payment as not paid. */
export async function retryOrFail(ctx: Ctx, p: Payment, f: AttemptFailure, via: Via, intentId: string | undefined): Promise<ProcessResult> {
  const now = ctx.clock();
  const attempt = p.attempt;
  const details: Record<string, unknown> = { attempt, outcome: f.outcome };
  if (!canScheduleRetry(p.retryCount, p.maxRetries)) {
    ctx.log.warn('retries exhausted; finishing the payment as not paid', {
      paymentId: p.id,
      attempt,
      retryCount: p.retryCount,
      maxRetries: p.maxRetries,
      code: f.code,
    });
    const lastError: PaymentError = { code: f.code, message: f.message, retryable: true, timestamp: now.toISOString(), details };
    return finishNotPaid(ctx, withIntent(p, intentId), {
      to: 'failed',
      lastError,
      action: 'retries_exhausted',
      reason: `attempt ${attempt} ${f.code}; ${p.retryCount} of ${p.maxRetries} retries used`,
    });
  }

  const retryCount = p.retryCount + 1;
  const { delayMs, capMs } = retryDelayMs(
    p.retryCount,
    { baseSeconds: ctx.deps.config.retryBaseSeconds, capSeconds: ctx.deps.config.retryCapSeconds },
    ctx.random,
    f.retryAfterMs,
  );
  const lastError: PaymentError = {
    code: f.code,
    message: f.message,
    retryable: true,
    timestamp: now.toISOString(),
    details: { ...details, retry: retryCount, delayMs, backoffCapMs: capMs },
  };
  const result = await scheduleNext(ctx, p, via, delayMs, {
    action: 'retry_scheduled',
    reason: `attempt ${attempt} ${f.code}; retry ${retryCount} of ${p.maxRetries} in ${delayMs} ms (backoff cap ${capMs} ms)`,
    set: { retryCount, lastError, ...(intentId ? { intentId } : {}) },
  });
  if (result.kind === 'settled') {
    ctx.metrics.count('RetriesScheduled');
    ctx.log.info('retry scheduled', { paymentId: p.id, attempt, retryCount, delayMs, backoffCapMs: capMs, code: f.code });
  }
  return result;
}

/**
 * The provider refuses our credentials or account: nothing is wrong with the card and no retry is spent.
 * The payment waits (retrying) for the outage to end; the ProviderAuthFailures metric pages an operator
 * (alarm of the same name).
 */
export async function holdForOutage(ctx: Ctx, p: Payment, code: string, message: string, intentId: string | undefined): Promise<ProcessResult> {
  ctx.metrics.count('ProviderAuthFailures');
  ctx.log.error('provider refuses our credentials or account; payment held without spending a retry', { paymentId: p.id, code, delayMs: ctx.outageDelayMs });
  return holdWithoutRetry(ctx, p, { code, message, outcome: 'outage', action: 'provider_outage', delayMs: ctx.outageDelayMs }, intentId);
}

/**
 * The fleet's provider rate budget kept the call back (nothing was sent): the payment waits for the
 * budget's Retry-After plus a spread of up to a second, so the waiting payments do not all come back in
 * the same slot. No retry spent: the card has not failed.
 */
export async function holdForBudget(ctx: Ctx, p: Payment, retryAfterMs: number | undefined, intentId: string | undefined): Promise<ProcessResult> {
  const delayMs = (retryAfterMs ?? 1000) + Math.round(ctx.random() * 1000);
  return holdWithoutRetry(ctx, p, { code: RATE_BUDGET, message: publicMessage(RATE_BUDGET), outcome: 'not_sent', action: 'rate_budget_wait', delayMs }, intentId);
}

/** processing → retrying after `delayMs` with the same retry count. */
function holdWithoutRetry(
  ctx: Ctx,
  p: Payment,
  h: { code: string; message: string; outcome: string; action: string; delayMs: number },
  intentId: string | undefined,
): Promise<ProcessResult> {
  const lastError: PaymentError = {
    code: h.code,
    message: h.message,
    retryable: true,
    timestamp: ctx.clock().toISOString(),
    details: { attempt: p.attempt, outcome: h.outcome, delayMs: h.delayMs },
  };
  return scheduleNext(ctx, p, 'confirm', h.delayMs, {
    action: h.action,
    reason: `attempt ${p.attempt} ${h.code}; held ${h.delayMs} ms, no retry spent`,
    set: { lastError, ...(intentId ? { intentId } : {}) },
  });
}

/**
 * The provider is processing the payment's confirmation (its intent is `processing`): the payment moves to
 * retrying once (one audited version), with its outcome marked `processing`, so the next message reads the
 * intent before anything else. No retry is spent: the card has not failed. The open deadline still
 * applies (the payment is expired once the provider lets the intent be cancelled; a success wins).
 */
export async function awaitProvider(ctx: Ctx, p: Payment, intentId: string, via: Via): Promise<ProcessResult> {
  const now = ctx.clock();
  const delayMs = ctx.providerWaitMs;
  const lastError: PaymentError = {
    code: 'INTENT_PROCESSING',
    message: publicMessage('INTENT_PROCESSING'),
    retryable: true,
    timestamp: now.toISOString(),
    details: { attempt: p.attempt, outcome: 'processing', since: now.toISOString() },
  };
  return scheduleNext(ctx, p, via, delayMs, {
    action: 'awaiting_provider',
    reason: `attempt ${p.attempt}: the provider is processing the intent; checked again in ${delayMs} ms, no retry spent`,
    set: { lastError, intentId },
  });
}

/**
 * Still processing at the provider: check again later without a new version. The wait grows with the time
 * already waited (half of it, at least providerWaitMs, at most the backoff cap); the due time is postponed
 * past the check, so the reconciler does not re-queue a payment whose check is waiting. A message is sent
 * only when this call moved the due time (another check already scheduled later carries on instead).
 */
export async function waitForProvider(ctx: Ctx, p: Payment): Promise<ProcessResult> {
  const now = ctx.clock().getTime();
  const since = Date.parse(String(p.lastError?.details?.since ?? p.lastError?.timestamp ?? p.updatedAt));
  const waitMs = Math.min(ctx.deps.config.retryCapSeconds * 1000, Math.max(ctx.providerWaitMs, Math.round((now - (Number.isNaN(since) ? now : since)) / 2)));
  const s = scheduleFor(waitMs, now);
  const moved = await ctx.deps.store.postpone(p, s.notBefore + ctx.graceMs).catch(() => false);
  if (moved) await ctx.deps.queue.send({ paymentId: p.id, reason: 'await_provider', notBefore: s.notBefore, forAttempt: p.attempt + 1 }, s.delaySeconds);
  ctx.log.debug('intent still processing at the provider; checked again later', { paymentId: p.id, waitMs, moved });
  return { kind: 'waiting', notBefore: s.notBefore };
}

/** processing → retrying with a delayed queue message for the next attempt. */
async function scheduleNext(
  ctx: Ctx,
  p: Payment,
  via: Via,
  delayMs: number,
  what: { action: string; reason: string; set: TransitionRequest['set'] },
): Promise<ProcessResult> {
  const now = ctx.clock();
  const s = scheduleFor(delayMs, now);
  const result = await write(ctx, p, 'retrying', via, {
    to: 'retrying',
    now,
    change: { action: what.action, actor: WORKER, reason: what.reason },
    set: { ...what.set, nextAttemptAt: s.notBefore },
    remove: ['leaseUntil'],
    dueAt: s.notBefore + ctx.graceMs,
  });
  if (result.kind !== 'settled') return result;
  try {
    await ctx.deps.queue.send({ paymentId: p.id, reason: 'retry', notBefore: s.notBefore, forAttempt: p.attempt + 1 }, s.delaySeconds);
  } catch (err) {
    // The payment is retrying with dueAt = nextAttemptAt + grace: the reconciler re-queues it.
    ctx.log.error('retry message not sent; the reconciler will re-queue the payment', { paymentId: p.id, error: errorText(err) });
  }
  return result;
}

export async function write(ctx: Ctx, p: Payment, status: PaymentStatus, via: Via, req: TransitionRequest): Promise<ProcessResult> {
  try {
    const next = await ctx.deps.store.transition(p, req);
    return { kind: 'settled', status, attempt: next.attempt, via };
  } catch (err) {
    if (err instanceof ConcurrentUpdateError) {
      lostRace(ctx, p, req.change.action);
      return { kind: 'ignored', reason: 'concurrent_update' };
    }
    throw err;
  }
}

const withIntent = (p: Payment, intentId: string | undefined): Payment => (intentId && !p.intentId ? { ...p, intentId } : p);
