/**
 * Claiming a payment: a conditional move to `processing` with a lease. Only the claimer talks to the
 * provider about this payment; everyone else backs off. A lease that runs out means the claimer died:
 * whoever comes next retrieves the intent (see resolve.ts), it never confirms blind.
 */
import { ConcurrentUpdateError } from '../errors';
import type { Payment } from '../payment';
import { WORKER, type Ctx } from './context';

export type Claim = { readonly claimed: Payment } | { readonly lost: true };

/**
 * Claims the payment for a new attempt (attempt + 1), or, with `attempt: 'same'`, only to settle what
 * the provider already shows (retrying → success must pass through processing).
 */
export async function claim(
  ctx: Ctx,
  p: Payment,
  why: { action: string; reason: string; attempt: 'next' | 'same'; intentId?: string },
): Promise<Claim> {
  const now = ctx.clock();
  const leaseUntil = now.getTime() + ctx.leaseMs;
  const attempt = why.attempt === 'next' ? p.attempt + 1 : p.attempt;
  try {
    const claimed = await ctx.deps.store.transition(p, {
      to: 'processing',
      now,
      change: { action: why.action, actor: WORKER, reason: why.reason },
      // An intent made before the claim is stored by it (conditional on the version read, which had none).
      set: { attempt, leaseUntil, ...(why.intentId !== undefined && p.intentId === undefined ? { intentId: why.intentId } : {}) },
      remove: ['nextAttemptAt'],
      dueAt: claimDueAt(p.dueAt, leaseUntil, ctx.stuckAfterMs),
    });
    return { claimed };
  } catch (err) {
    if (err instanceof ConcurrentUpdateError) {
      lostRace(ctx, p, why.action);
      return { lost: true };
    }
    throw err;
  }
}

/**
 * The due time a claim leaves on the payment: when the reconciler looks at it if the claimer dies.
 *
 * Kept when leaseUntil <= dueAt <= leaseUntil + stuckAfter, moved to leaseUntil otherwise.
 *   - Not before the lease end: the reconciler must not find a payment whose claimer may still be at
 *     work (it would only postpone it, a write of its own). A retry's due time (nextAttemptAt + grace,
 *     the grace being the lease) falls inside the lease of the claim it schedules, so a retry moves it,
 *     as does a claim made late, after its due time passed.
 *   - At most stuckAfter past the lease end: a claimer that dies is then found at most stuckAfter after
 *     its lease lapsed, the bound already accepted for a message a worker took and died with (a pending
 *     payment is due stuckAfter after its create). With the defaults (stuckAfter 240 s, lease 60 s) a
 *     payment claimed within 180 s of its create or re-queue keeps that due time.
 * Why keep it at all: the open-payments index is keyed on the due time, so moving it is a delete and a
 * put in the index (2 WCU); keeping it, the claim of a happy payment writes no index entry.
 */
export function claimDueAt(dueAt: number | undefined, leaseUntil: number, stuckAfterMs: number): number {
  return dueAt !== undefined && dueAt >= leaseUntil && dueAt <= leaseUntil + stuckAfterMs ? dueAt : leaseUntil;
}

export function lostRace(ctx: Ctx, p: Payment, step: string): void {
  ctx.log.warn('payment changed by another writer; message dropped', { paymentId: p.id, step, version: p.version, status: p.status });
}
