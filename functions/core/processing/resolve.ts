/**
 * Settling a payment whose last attempt has no clear outcome, from the intent alone. Never confirms:
 * it reads the intent and settles what the provider shows. When the provider cannot be read, or shows
 * a confirmation still under way, nothing is decided (OutcomeUnresolvedError): the message comes back,
 * and the reconciler finds the payment by its due time.
 *
 *   recoverLapsedLease    processing, and its claimer's lease ran out (it died or hung).
 *   resolveBeforeAttempt  retrying after an unknown outcome: before the next attempt is claimed.
 */
import type { Payment } from '../payment';
import { claim } from './claim';
import { OutcomeUnresolvedError, type Ctx, type ProcessResult } from './context';
import { finishNotPaid } from './finish';
import { currentIntent } from './intent';
import { ProviderError } from '../ports/payment-provider';
import { errorOutcome, intentState, type IntentState } from './provider-outcome';
import { publicMessage } from './public-messages';
import { retryOrFail, succeed } from './settle';

export async function recoverLapsedLease(ctx: Ctx, p: Payment): Promise<ProcessResult> {
  const s = await readState(ctx, p);
  ctx.log.warn('attempt lease lapsed; settled from the intent', { paymentId: p.id, attempt: p.attempt, leaseUntil: p.leaseUntil, intent: s.kind });
  switch (s.kind) {
    case 'succeeded':
      return succeed(ctx, p, s.intent, 'retrieve', `attempt ${p.attempt} lease lapsed; the intent had succeeded`);
    case 'canceled':
    case 'declined':
      return declined(ctx, p, s);
    case 'in_flight':
      throw new OutcomeUnresolvedError(p.id, `intent ${s.intent.status}`);
    case 'confirmable':
      return retryOrFail(ctx, p, { code: 'ATTEMPT_ABANDONED', message: publicMessage('ATTEMPT_ABANDONED'), outcome: 'unknown' }, 'retrieve', s.intent.id);
  }
}

/** `proceed` (with the intent read) when no confirmation took effect, so the next attempt may be claimed. */
export async function resolveBeforeAttempt(ctx: Ctx, p: Payment): Promise<ProcessResult | { proceed: string }> {
  const s = await readState(ctx, p);
  switch (s.kind) {
    case 'succeeded': {
      ctx.log.warn('an earlier attempt had succeeded; settling without a new attempt', { paymentId: p.id, attempt: p.attempt });
      const c = await claim(ctx, p, { action: 'attempt_recovered', reason: `attempt ${p.attempt} found succeeded on the intent`, attempt: 'same' });
      if ('lost' in c) return { kind: 'ignored', reason: 'concurrent_update' };
      return succeed(ctx, c.claimed, s.intent, 'retrieve', `attempt ${p.attempt} found succeeded on the intent`);
    }
    case 'canceled':
    case 'declined':
      return declined(ctx, p, s);
    case 'in_flight':
      throw new OutcomeUnresolvedError(p.id, `intent ${s.intent.status}`);
    case 'confirmable':
      return { proceed: s.intent.id };
  }
}

/** The payment's last attempt has an unclear outcome that must be resolved before anything else. */
export function hasUnresolvedOutcome(p: Payment): boolean {
  if (p.status !== 'retrying' || p.attempt < 1) return false;
  const d = p.lastError?.details;
  return d?.outcome === 'unknown' && d.attempt === p.attempt;
}

async function readState(ctx: Ctx, p: Payment): Promise<IntentState> {
  try {
    const s = intentState(await currentIntent(ctx, p));
    if (s.kind !== 'in_flight') ctx.metrics.count('UnknownOutcomesResolved', 1, { outcome: s.kind === 'confirmable' ? 'not_charged' : s.kind });
    return s;
  } catch (err) {
    errorOutcome(err); // rethrows what is not a provider answer
    // A read refused as "no such intent" right after the create is a read that lags, not a sick
    // provider: unresolved, without counting against the breaker.
    if (err instanceof ProviderError && err.kind === 'rejected') throw new OutcomeUnresolvedError(p.id, `intent not readable yet (${err.code})`);
    throw new OutcomeUnresolvedError(p.id, 'retrieve', err);
  }
}

function declined(ctx: Ctx, p: Payment, s: Extract<IntentState, { kind: 'canceled' | 'declined' }>): Promise<ProcessResult> {
  const code = s.kind === 'declined' ? s.code : 'PAYMENT_CANCELED';
  return finishNotPaid(
    ctx,
    p.intentId ? p : { ...p, intentId: s.intent.id },
    {
      to: 'failed',
      lastError: { code, message: publicMessage(code), retryable: false, timestamp: ctx.clock().toISOString(), details: { attempt: p.attempt } },
      action: 'charge_declined',
      reason: `attempt ${p.attempt} ${code} (found on the intent)`,
    },
    s.intent,
  );
}
