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
      dueAt: leaseUntil,
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

export function lostRace(ctx: Ctx, p: Payment, step: string): void {
  ctx.log.warn('payment changed by another writer; message dropped', { paymentId: p.id, step, version: p.version, status: p.status });
}
