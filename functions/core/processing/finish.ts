/**
 * Finishing a payment as not paid (failed or expired) without ever leaving money behind.
 *
 * A cancelled intent can never succeed, so the payment's intent is cancelled first and the payment is
 * written as failed/expired only once the provider confirms the cancellation. If the provider answers
 * that the intent already succeeded (a late confirmation landed), the payment becomes a success
 * instead. If the provider cannot answer, nothing is written: OutcomeUnresolvedError, and the payment
 * stays open and due, to be finished later.
 */
import type { Payment, PaymentError } from '../payment';
import { ProviderError, type ProviderIntent } from '../ports/payment-provider';
import { claim } from './claim';
import { OutcomeUnresolvedError, WORKER, type Ctx, type ProcessResult } from './context';
import { ensureIntent, mayHaveIntent } from './intent';
import { isUnexpectedState } from './provider-outcome';
import { succeed, write } from './settle';

export interface NotPaid {
  readonly to: 'failed' | 'expired';
  readonly lastError: PaymentError;
  readonly action: string;
  readonly reason: string;
  readonly actor?: string;
}

export async function finishNotPaid(ctx: Ctx, p: Payment, end: NotPaid, known?: ProviderIntent): Promise<ProcessResult> {
  let intent: ProviderIntent | undefined;
  if (known?.status === 'canceled') {
    intent = known;
  } else if (mayHaveIntent(p)) {
    intent = await cancelIntent(ctx, p);
    if (intent?.status === 'succeeded') return succeedInstead(ctx, p, intent);
    if (intent && intent.status !== 'canceled') throw new OutcomeUnresolvedError(p.id, `cancel left the intent ${intent.status}`);
  }
  const now = ctx.clock();
  return write(ctx, p, end.to, 'cancel', {
    to: end.to,
    now,
    change: { action: end.action, actor: end.actor ?? WORKER, reason: end.reason },
    set: { lastError: end.lastError, ...(intent ? { intentId: intent.id } : {}) },
    remove: ['nextAttemptAt'],
  });
}

/**
 * Cancels the payment's intent; an intent that cannot be cancelled any more is read back as it is.
 * Undefined when the provider refused to create the intent at all (so none exists).
 */
async function cancelIntent(ctx: Ctx, p: Payment): Promise<ProviderIntent | undefined> {
  let id = p.intentId;
  if (id === undefined) {
    try {
      id = (await ensureIntent(ctx, p)).id;
    } catch (err) {
      if (err instanceof ProviderError && err.kind === 'rejected') return undefined;
      throw new OutcomeUnresolvedError(p.id, 'create before cancel', err);
    }
  }
  try {
    return await ctx.deps.provider.cancelIntent(id, p.id);
  } catch (err) {
    if (!isUnexpectedState(err)) throw new OutcomeUnresolvedError(p.id, 'cancel', err);
    if (err.extra.intent) return err.extra.intent;
    try {
      return await ctx.deps.provider.retrieveIntent(id);
    } catch (readErr) {
      throw new OutcomeUnresolvedError(p.id, 'retrieve after a refused cancel', readErr);
    }
  }
}

async function succeedInstead(ctx: Ctx, p: Payment, intent: ProviderIntent): Promise<ProcessResult> {
  const why = 'the intent had succeeded when we tried to cancel it';
  ctx.log.warn('cancel refused: the intent already succeeded; the payment is a success', { paymentId: p.id, intentId: intent.id });
  if (p.status === 'processing') return succeed(ctx, p, intent, 'cancel', why);
  const c = await claim(ctx, p, { action: 'attempt_recovered', reason: why, attempt: 'same' });
  if ('lost' in c) return { kind: 'ignored', reason: 'concurrent_update' };
  return succeed(ctx, c.claimed, intent, 'cancel', why);
}
