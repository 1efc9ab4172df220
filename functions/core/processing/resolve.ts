/**
 * Settling a payment whose last attempt has no clear outcome, from the intent alone. Never confirms:
 * it reads the intent and settles what the provider shows. When the provider cannot be read, nothing is
 * decided (OutcomeUnresolvedError): the message comes back, and the reconciler finds the payment by its
 * due time. An intent the provider is still processing is waited for (no retry spent, no version per
 * check), an intent that needs the customer (3-D Secure) ends the payment, and past the open deadline a
 * payment with no confirmation under way is expired.
 *
 *   recoverLapsedLease    processing, and its claimer's lease ran out (it died or hung).
 *   resolveBeforeAttempt  retrying after an unknown outcome, or while the provider processes: before the
 *                         next attempt is claimed.
 *   resolveOnEvent        a provider event said the payment's intent changed: settle what the intent shows
 *                         now, and claim nothing.
 */
import type { Payment } from '../payment';
import { ProviderError } from '../ports/payment-provider';
import { expireNow, failAuthenticationRequired } from './attempt';
import { claim } from './claim';
import { OutcomeUnresolvedError, pastDeadline, type Ctx, type ProcessResult } from './context';
import { finishNotPaid } from './finish';
import { currentIntent } from './intent';
import { errorOutcome, intentState, type IntentState } from './provider-outcome';
import { publicMessage } from './public-messages';
import { awaitProvider, retryOrFail, succeed, waitForProvider } from './settle';

export async function recoverLapsedLease(ctx: Ctx, p: Payment): Promise<ProcessResult> {
  const s = await readState(ctx, p);
  ctx.log.warn('attempt lease lapsed; settled from the intent', { paymentId: p.id, attempt: p.attempt, leaseUntil: p.leaseUntil, intent: s?.kind ?? 'none' });
  if (!s) {
    // No intent: the attempt died before anything reached the provider.
    if (pastDeadline(ctx, p)) return expireNow(ctx, p, `attempt ${p.attempt} lease lapsed past the open deadline; no intent`);
    return retryOrFail(ctx, p, { code: 'ATTEMPT_ABANDONED', message: publicMessage('ATTEMPT_ABANDONED'), outcome: 'unknown' }, 'retrieve', undefined);
  }
  switch (s.kind) {
    case 'succeeded':
      return succeed(ctx, p, s.intent, 'retrieve', `attempt ${p.attempt} lease lapsed; the intent had succeeded`);
    case 'canceled':
    case 'declined':
      return declined(ctx, p, s);
    case 'needs_action':
      return failAuthenticationRequired(ctx, p, s.intent);
    case 'in_flight':
      return awaitProvider(ctx, p, s.intent.id, 'retrieve');
    case 'confirmable':
      if (pastDeadline(ctx, p)) return expireNow(ctx, p, `attempt ${p.attempt} lease lapsed past the open deadline; the intent shows no charge`);
      return retryOrFail(ctx, p, { code: 'ATTEMPT_ABANDONED', message: publicMessage('ATTEMPT_ABANDONED'), outcome: 'unknown' }, 'retrieve', s.intent.id);
  }
}

/** `proceed` (with the intent read, if any) when no confirmation took effect, so the next attempt may be claimed. */
export async function resolveBeforeAttempt(ctx: Ctx, p: Payment): Promise<ProcessResult | { proceed: string | undefined }> {
  const s = await readState(ctx, p);
  if (!s) return { proceed: undefined };
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
    case 'needs_action':
      return failAuthenticationRequired(ctx, p, s.intent);
    case 'in_flight':
      // Still processing at the provider. Past the deadline, try to cancel (the provider may refuse while it
      // processes: then the payment keeps waiting); before it, check again later, without a new version.
      if (pastDeadline(ctx, p)) return expireNow(ctx, p, `open past its deadline while the provider processes attempt ${p.attempt}`);
      return waitForProvider(ctx, p);
    case 'confirmable':
      return { proceed: s.intent.id };
  }
}

/**
 * A provider event (webhook) named this payment: settle what its intent shows now, without ever claiming
 * an attempt, so an event can only make a payment end sooner, never run it sooner or twice.
 *   - processing, lease lapsed: as the reconciler would (recoverLapsedLease).
 *   - processing, lease live: only a succeeded intent settles it (money was taken: the attempt's owner
 *     can add nothing, and its own write loses the version race). Anything else stays with the owner.
 *   - retrying after an unclear outcome: resolved as the next attempt would resolve it first; when the
 *     intent shows no charge, the scheduled retry keeps its time.
 *   - pending, or retrying after a clear error: nothing happened at the provider that we do not know.
 */
export async function resolveOnEvent(ctx: Ctx, p: Payment): Promise<ProcessResult> {
  const nothing: ProcessResult = { kind: 'ignored', reason: 'nothing_to_resolve', status: p.status };
  if (p.status === 'processing') {
    if (p.leaseUntil === undefined || p.leaseUntil <= ctx.clock().getTime()) return recoverLapsedLease(ctx, p);
    const s = await readState(ctx, p);
    if (s?.kind !== 'succeeded') return { kind: 'ignored', reason: 'leased', status: p.status };
    return succeed(ctx, p, s.intent, 'retrieve', `attempt ${p.attempt} found succeeded on the intent (provider event)`);
  }
  if (!hasUnresolvedOutcome(p)) return nothing;
  const resolved = await resolveBeforeAttempt(ctx, p);
  return 'proceed' in resolved ? nothing : resolved;
}

/** The payment's last attempt has an outcome that must be resolved before anything else. */
export function hasUnresolvedOutcome(p: Payment): boolean {
  if (p.status !== 'retrying' || p.attempt < 1) return false;
  const d = p.lastError?.details;
  return (d?.outcome === 'unknown' || d?.outcome === 'processing') && d.attempt === p.attempt;
}

/** Where the payment's intent stands; undefined when it has none (nothing can have been charged). */
async function readState(ctx: Ctx, p: Payment): Promise<IntentState | undefined> {
  try {
    const intent = await currentIntent(ctx, p);
    if (!intent) return undefined;
    const s = intentState(intent);
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
