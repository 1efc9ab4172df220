/**
 * One attempt on a claimed payment: make sure its intent exists and is stored on the payment, confirm
 * it, and settle what the provider said. Every attempt confirms the same intent, so however many
 * attempts run (late, duplicated, after a crash), money moves at most once. An unclear answer is checked
 * once right away by retrieving the intent; if that does not settle it, the payment is retrying with the
 * outcome marked unknown, and the next attempt retrieves the intent before anything else.
 *
 * Nothing is confirmed past the payment's open deadline: an attempt that finds it passed expires the
 * payment instead (its intent cancelled first). An intent that needs the customer (3-D Secure) ends the
 * payment as failed AUTHENTICATION_REQUIRED; one the provider is processing is waited for.
 */
import type { Payment } from '../payment';
import type { ProviderIntent } from '../ports/payment-provider';
import { pastDeadline, type Ctx, type ProcessResult } from './context';
import { finishNotPaid } from './finish';
import { obtainIntent } from './intent';
import { confirmOutcome, errorOutcome, intentState, isFleetThrottle, isProviderFailure, isUnexpectedState, type IntentState, type Outcome } from './provider-outcome';
import { publicMessage } from './public-messages';
import { awaitProvider, expiredError, holdForBudget, holdForOutage, retryOrFail, succeed } from './settle';

/**
 * `report(failed)` tells the circuit breaker whether the provider looked unhealthy. `madeOutcome` is the
 * provider's answer to making the intent before the claim, when that answer was not an intent.
 */
export async function runAttempt(ctx: Ctx, claimed: Payment, report: (providerFailed: boolean) => void, madeOutcome?: Outcome): Promise<ProcessResult> {
  let p = claimed;
  let intentId = p.intentId;
  let outcome: Outcome;
  if (madeOutcome) outcome = madeOutcome;
  else {
    try {
      if (intentId === undefined) {
        const got = await obtainIntent(ctx, p);
        if ('lost' in got) return { kind: 'ignored', reason: 'concurrent_update' };
        p = got.payment;
        intentId = got.intent.id;
      }
      if (pastDeadline(ctx, p)) return expireNow(ctx, p, `attempt ${p.attempt} found the payment past its open deadline; not confirmed`);
      outcome = await confirm(ctx, p, intentId);
    } catch (err) {
      outcome = errorOutcome(err);
    }
  }
  if (outcome.kind === 'unknown' && intentId) outcome = await checkOnce(ctx, intentId, outcome);
  report(isProviderFailure(outcome));
  ctx.metrics.count('PaymentAttempts', 1, { outcome: ATTEMPT_OUTCOME[outcome.kind] });
  ctx.log.info('attempt outcome', { paymentId: p.id, attempt: p.attempt, outcome: outcome.kind, ...('code' in outcome ? { code: outcome.code } : {}) });
  return settleOutcome(ctx, p, outcome, intentId);
}

/** The payment is past its open deadline: expired, its intent cancelled first (a success found then wins). */
export function expireNow(ctx: Ctx, p: Payment, reason: string): Promise<ProcessResult> {
  return finishNotPaid(ctx, p, { to: 'expired', lastError: expiredError(ctx.clock(), ctx.openDeadlineMs), action: 'expired', reason });
}

/** The `outcome` dimension of PaymentAttempts: a cancelled intent is a refusal like a decline. */
const ATTEMPT_OUTCOME: Record<Outcome['kind'], string> = {
  succeeded: 'succeeded',
  declined: 'declined',
  canceled: 'declined',
  needs_action: 'authentication_required',
  processing: 'processing',
  unknown: 'unknown',
  retryable: 'provider_error',
  outage: 'outage',
};

async function confirm(ctx: Ctx, p: Payment, intentId: string): Promise<Outcome> {
  try {
    const intent = await ctx.deps.provider.confirmIntent(intentId, { paymentId: p.id, attempt: p.attempt, paymentMethod: p.paymentMethod.token });
    return confirmOutcome(intent);
  } catch (err) {
    if (!isUnexpectedState(err)) throw err;
    // The intent is past confirmation (succeeded, cancelled) or busy: ask where it stands. A read that
    // fails here leaves the outcome unknown (never a decline).
    try {
      return stateOutcome(intentState(err.extra.intent ?? (await ctx.deps.provider.retrieveIntent(intentId))));
    } catch (readErr) {
      errorOutcome(readErr); // rethrows what is not a provider answer
      return { kind: 'unknown', code: 'INTENT_NOT_CONFIRMED', message: 'the intent refused the confirmation and could not be read' };
    }
  }
}

/** An unclear answer: look at the intent once. Anything still unclear stays unknown. */
async function checkOnce(ctx: Ctx, intentId: string, unknown: Outcome): Promise<Outcome> {
  try {
    const s = intentState(await ctx.deps.provider.retrieveIntent(intentId));
    return s.kind === 'confirmable' ? unknown : stateOutcome(s);
  } catch (err) {
    errorOutcome(err); // rethrows what is not a provider answer
    return unknown;
  }
}

export function stateOutcome(s: IntentState): Outcome {
  switch (s.kind) {
    case 'succeeded':
    case 'canceled':
      return s;
    case 'declined':
      return { kind: 'declined', code: s.code, message: s.message, intent: s.intent };
    case 'confirmable':
      return { kind: 'unknown', code: 'INTENT_NOT_CONFIRMED', message: 'the intent shows no confirmation yet' };
    case 'needs_action':
      return { kind: 'needs_action', intent: s.intent };
    case 'in_flight':
      return { kind: 'processing', intent: s.intent };
  }
}

/** The card needs the customer, which a server-side confirm never gets: cancel the intent, then failed. */
export function failAuthenticationRequired(ctx: Ctx, p: Payment, intent: ProviderIntent): Promise<ProcessResult> {
  const code = 'AUTHENTICATION_REQUIRED';
  return finishNotPaid(ctx, p.intentId ? p : { ...p, intentId: intent.id }, {
    to: 'failed',
    lastError: { code, message: publicMessage(code), retryable: false, timestamp: ctx.clock().toISOString(), details: { attempt: p.attempt } },
    action: 'charge_declined',
    reason: `attempt ${p.attempt} ${code}: the intent needs the customer (3-D Secure)`,
  });
}

export async function settleOutcome(ctx: Ctx, p: Payment, o: Outcome, intentId: string | undefined): Promise<ProcessResult> {
  const now = ctx.clock();
  switch (o.kind) {
    case 'succeeded':
      return succeed(ctx, p, o.intent, 'confirm', `attempt ${p.attempt} succeeded`);
    case 'declined':
    case 'canceled': {
      const code = o.kind === 'declined' ? o.code : 'PAYMENT_CANCELED';
      return finishNotPaid(
        ctx,
        intentId && !p.intentId ? { ...p, intentId } : p,
        {
          to: 'failed',
          lastError: { code, message: publicMessage(code), retryable: false, timestamp: now.toISOString(), details: { attempt: p.attempt } },
          action: 'charge_declined',
          reason: `attempt ${p.attempt} ${code}`,
        },
        o.kind === 'canceled' ? o.intent : (o.intent as ProviderIntent | undefined),
      );
    }
    case 'retryable':
      if (isFleetThrottle(o)) return holdForBudget(ctx, p, o.retryAfterMs, intentId);
      return retryOrFail(
        ctx,
        p,
        { code: o.code, message: publicMessage(o.code), outcome: 'error', ...(o.retryAfterMs !== undefined ? { retryAfterMs: o.retryAfterMs } : {}) },
        'confirm',
        intentId,
      );
    case 'unknown':
      return retryOrFail(ctx, p, { code: o.code, message: publicMessage(o.code), outcome: 'unknown' }, 'confirm', intentId);
    case 'outage':
      return holdForOutage(ctx, p, o.code, publicMessage(o.code), intentId);
    case 'needs_action':
      return failAuthenticationRequired(ctx, p, o.intent);
    case 'processing':
      return awaitProvider(ctx, p, o.intent.id, 'confirm');
  }
}
