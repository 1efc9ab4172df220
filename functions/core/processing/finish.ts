/**
 * Finishing a payment as not paid (failed or expired) without ever leaving money behind.
 *
 * A cancelled intent can never succeed, so the payment's intent is cancelled first and the payment is
 * written as failed/expired only once the provider confirms the cancellation. If the provider answers
 * that the intent already succeeded (a late confirmation landed), the payment becomes a success
 * instead. If the provider is still processing the intent (it cannot be cancelled while it does), the
 * payment waits for it, visibly scheduled. If the provider cannot answer, nothing is written:
 * OutcomeUnresolvedError, and the payment stays open and due, to be finished later.
 *
 * No intent is created to be cancelled: without a recorded intent, one that may exist is looked up by its
 * metadata (an intent never recorded was never confirmed, so it holds no money either way). Each cancel
 * call has its own provider key, so a 5xx saved under one cannot block the expiry.
 */
import type { Payment, PaymentError } from '../payment';
import type { ProviderIntent } from '../ports/payment-provider';
import { claim } from './claim';
import { OutcomeUnresolvedError, WORKER, type Ctx, type ProcessResult } from './context';
import { intentsToCancel } from './intent';
import { isUnexpectedState } from './provider-outcome';
import { awaitProvider, succeed, waitForProvider, write } from './settle';

export interface NotPaid {
  /** canceled: the tenant's cancel (cancel.ts), from pending or retrying only. */
  readonly to: 'failed' | 'expired' | 'canceled';
  readonly lastError?: PaymentError;
  readonly action: string;
  readonly reason: string;
  readonly actor?: string;
}

export async function finishNotPaid(ctx: Ctx, p: Payment, end: NotPaid, known?: ProviderIntent): Promise<ProcessResult> {
  let cancelled: ProviderIntent | undefined;
  if (known?.status === 'canceled') {
    cancelled = known;
  } else {
    let ids: string[];
    try {
      ids = await intentsToCancel(ctx, p);
    } catch (err) {
      throw new OutcomeUnresolvedError(p.id, 'find the intent before cancelling', err);
    }
    for (const id of ids) {
      const intent = await cancelIntent(ctx, p, id);
      if (intent.status === 'succeeded') return succeedInstead(ctx, p, intent);
      if (intent.status === 'processing' || intent.status === 'requires_capture') {
        ctx.log.info('intent still processing at the provider; the payment waits for it before it can end', { paymentId: p.id, intentId: id, to: end.to });
        return p.status === 'processing' ? awaitProvider(ctx, p, intent.id, 'cancel') : waitForProvider(ctx, p);
      }
      if (intent.status !== 'canceled') throw new OutcomeUnresolvedError(p.id, `cancel left the intent ${intent.status}`);
      cancelled ??= intent;
    }
  }
  const now = ctx.clock();
  return write(ctx, p, end.to, 'cancel', {
    to: end.to,
    now,
    change: { action: end.action, actor: end.actor ?? WORKER, reason: end.reason },
    set: { lastError: end.lastError, ...(cancelled && !p.intentId ? { intentId: cancelled.id } : {}) },
    remove: ['nextAttemptAt'],
  });
}

/** Cancels one intent; an intent that cannot be cancelled now is read back as it is. */
async function cancelIntent(ctx: Ctx, p: Payment, id: string): Promise<ProviderIntent> {
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
