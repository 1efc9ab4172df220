/**
 * The payment-attempt use case the worker runs for each queue message (and the reconciler for a lapsed
 * lease or a payment past its deadline).
 *
 * Money safety does not rest on timing:
 *   1. One provider intent per payment, created with a key derived from the payment and stored on the
 *      payment before it is confirmed (intent.ts). Every attempt confirms that intent; the provider lets an
 *      intent succeed at most once. Past the provider's key retention the intent is looked up, never made
 *      again.
 *   2. Every unclear answer (timeout, reset, 5xx, unreadable, still in flight) is unknown and is settled
 *      only by retrieving the intent (resolve.ts), never by confirming blind.
 *   3. A payment ends failed or expired only after its intent is cancelled (finish.ts); a cancelled
 *      intent can never succeed, and a cancel refused because the intent succeeded makes it a success.
 *   4. Only the claimer of an attempt (conditional write + lease, claim.ts) confirms, cancels or settles
 *      anything. Making the intent, which moves no money and answers the same intent for the same key,
 *      comes just before the claim, so the claim stores it in the same write.
 *   5. Nothing is confirmed past the payment's open deadline (holds and deferrals move its due time, not
 *      its deadline): it is expired instead, its intent cancelled first.
 */
import { isTerminal, type Payment, type PaymentError } from '../payment';
import { noMetrics } from '../ports';
import { scheduleFor, validateBackoff } from '../retry-policy';
import { expireNow, runAttempt } from './attempt';
import { claim } from './claim';
import { NOT_BEFORE_TOLERANCE_MS, OutcomeUnresolvedError, pastDeadline, type Ctx, type PaymentProcessorDeps, type ProcessResult, type WorkerMessage } from './context';
import { finishNotPaid } from './finish';
import { makeIntent } from './intent';
import { errorOutcome, isClearRefusal, type Outcome } from './provider-outcome';
import { hasUnresolvedOutcome, recoverLapsedLease, resolveBeforeAttempt, resolveOnEvent } from './resolve';

export class PaymentProcessor {
  private readonly ctx: Ctx;

  constructor(deps: PaymentProcessorDeps) {
    const c = deps.config;
    validateBackoff({ baseSeconds: c.retryBaseSeconds, capSeconds: c.retryCapSeconds });
    const leaseMs = c.leaseSeconds * 1000;
    if (!(leaseMs > 0)) throw new RangeError('leaseSeconds must be > 0');
    // A confirmation, a retrieve and a cancel must fit in the lease.
    if (!(c.providerTimeoutMs > 0 && c.providerTimeoutMs * 3 < leaseMs)) {
      throw new RangeError(`the provider timeout (${c.providerTimeoutMs} ms) must be positive and less than a third of the lease (${leaseMs} ms)`);
    }
    this.ctx = {
      deps,
      clock: deps.clock ?? (() => new Date()),
      random: deps.random ?? Math.random,
      log: deps.logger,
      metrics: deps.metrics ?? noMetrics,
      leaseMs,
      graceMs: c.retryGraceMs ?? leaseMs,
      stuckAfterMs: (c.stuckAfterSeconds ?? 0) * 1000,
      deferJitterMs: c.deferJitterMs ?? 10_000,
      outageDelayMs: c.outageDelayMs ?? 60_000,
      openDeadlineMs: (c.openDeadlineSeconds ?? 86_400) * 1000,
      keyRetentionMs: (c.providerKeyRetentionSeconds ?? 86_400) * 1000,
      providerWaitMs: c.providerWaitMs ?? 5000,
      ...(c.tag ? { tag: c.tag } : {}),
    };
  }

  async process(message: WorkerMessage): Promise<ProcessResult> {
    const ctx = this.ctx;
    const where = { paymentId: message.paymentId, messageReason: message.reason };
    const p = await ctx.deps.store.get(message.paymentId);
    if (!p) {
      ctx.log.warn('message for an unknown payment; dropped', where);
      return { kind: 'ignored', reason: 'not_found' };
    }
    if (isTerminal(p.status)) {
      ctx.log.info('payment already final; message dropped', { ...where, status: p.status });
      return { kind: 'ignored', reason: 'terminal', status: p.status };
    }
    // A provider event: settle from the intent, claim nothing (resolve.ts).
    if (message.resolveOnly) return this.withProvider(p, message, () => resolveOnEvent(ctx, p));
    const now = ctx.clock().getTime();
    if (message.notBefore !== undefined && message.notBefore - now > NOT_BEFORE_TOLERANCE_MS) {
      const s = scheduleFor(message.notBefore - now, now);
      await ctx.deps.queue.send({ ...message }, s.delaySeconds);
      ctx.log.debug('message early; re-sent with the remaining delay', { ...where, notBefore: message.notBefore, delaySeconds: s.delaySeconds });
      return { kind: 'rescheduled', notBefore: message.notBefore, delaySeconds: s.delaySeconds };
    }

    if (p.status === 'processing') {
      if (p.leaseUntil !== undefined && p.leaseUntil > now) {
        // The owner settles the attempt; if it dies, the reconciler finds the lapsed lease (at its due time,
        // at most stuckAfter after the lease end: claimDueAt).
        ctx.log.info('attempt leased by another worker; message dropped', { ...where, attempt: p.attempt, leaseUntil: p.leaseUntil });
        return { kind: 'ignored', reason: 'leased', status: p.status };
      }
      return this.withProvider(p, message, () => recoverLapsedLease(ctx, p));
    }

    // pending or retrying
    if (message.forAttempt !== undefined && message.forAttempt <= p.attempt) {
      ctx.log.info('retry message for an attempt that already started; dropped', { ...where, forAttempt: message.forAttempt, attempt: p.attempt });
      return { kind: 'ignored', reason: 'stale', status: p.status };
    }
    return this.withProvider(p, message, async (report) => {
      let intentId = p.intentId;
      if (hasUnresolvedOutcome(p)) {
        const resolved = await resolveBeforeAttempt(ctx, p);
        if (!('proceed' in resolved)) return resolved;
        intentId = resolved.proceed ?? intentId;
      }
      if (pastDeadline(ctx, p)) return expireNow(ctx, intentId && !p.intentId ? { ...p, intentId } : p, `open past its deadline in status ${p.status}; not confirmed`);
      // The intent is made before the claim so the claim stores it: one write, not a claim and then a
      // second same-version write of the intent id. Making it moves no money and answers the same intent
      // however often it runs. A clear refusal (isClearRefusal: a decline, an outage, our rate budget) is
      // settled after the claim as if the attempt had met it; any other answer (a timeout, a 5xx, a provider
      // 429, another worker's create of the same key in flight) leaves the claimed attempt to make the intent
      // again, as it did before the claim stored it, so it spends no retry. Anything but a provider answer
      // (our own storage failing) claims nothing.
      let madeOutcome: Outcome | undefined;
      if (intentId === undefined) {
        try {
          intentId = (await makeIntent(ctx, p)).id;
        } catch (err) {
          const o = errorOutcome(err);
          if (isClearRefusal(o)) madeOutcome = o;
        }
      }
      const attempt = p.attempt + 1;
      const c = await claim(ctx, p, { action: 'attempt_started', reason: `attempt ${attempt} (${message.reason})`, attempt: 'next', ...(intentId ? { intentId } : {}) });
      if ('lost' in c) return { kind: 'ignored', reason: 'concurrent_update' };
      return runAttempt(ctx, intentId && !c.claimed.intentId ? { ...c.claimed, intentId } : c.claimed, report, madeOutcome);
    });
  }

  /**
   * Ends an open payment past its deadline as expired, cancelling its intent first. If the intent had
   * succeeded, the payment is a success instead. Throws OutcomeUnresolvedError when the provider
   * cannot answer (the payment stays open and due).
   */
  async expire(p: Payment, error: PaymentError, actor: string, reason: string): Promise<ProcessResult> {
    return finishNotPaid(this.ctx, p, { to: 'expired', lastError: error, action: 'expired', actor, reason });
  }

  /**
   * The tenant's cancel of a pending or retrying payment: its intent is cancelled first, then the payment
   * is written canceled, conditional on the version read. A worker that claimed the payment after that read
   * makes the write fail (nothing is canceled while an attempt may charge), and a payment written canceled
   * can no longer be claimed (terminal; the claim is conditional on the version too). An intent the provider
   * says succeeded makes the payment a success instead. Throws OutcomeUnresolvedError when the provider
   * cannot answer: nothing is written.
   */
  async cancel(p: Payment, actor: string, reason: string): Promise<ProcessResult> {
    if (p.status !== 'pending' && p.status !== 'retrying') return { kind: 'ignored', reason: 'concurrent_update' };
    return finishNotPaid(this.ctx, p, { to: 'canceled', action: 'canceled', actor, reason });
  }

  /** Runs a provider step under the breaker; an open breaker defers the message without touching the payment. */
  private async withProvider(
    p: Payment,
    message: WorkerMessage,
    step: (report: (providerFailed: boolean) => void) => Promise<ProcessResult>,
  ): Promise<ProcessResult> {
    const permit = this.ctx.deps.breaker.acquire({ paymentId: p.id, tenantId: p.tenantId });
    if (!permit.allowed) return this.defer(p, message, permit.retryAt);
    let verdict: 'success' | 'failure' | 'release' = 'release';
    const report = (failed: boolean) => {
      verdict = failed || verdict === 'failure' ? 'failure' : 'success';
    };
    try {
      return await step(report);
    } catch (err) {
      // The provider could not be read: that says something about its health. An intent still in
      // flight says nothing.
      if (err instanceof OutcomeUnresolvedError && err.cause !== undefined) report(true);
      throw err;
    } finally {
      // A payment that already failed before and fails again is that payment's problem (a bad card, a
      // token the provider keeps refusing), not evidence about the provider: it casts no failure vote.
      // Otherwise the last failing cards of a backlog look like an outage and hold the breaker open.
      // Its success still counts: a working call is evidence of health.
      const v = verdict as 'success' | 'failure' | 'release'; // set inside `report`
      permit[v === 'failure' && p.attempt > 0 ? 'release' : v]();
    }
  }

  /**
   * Breaker refused: send the same message once more, due when the breaker admits calls again plus a
   * random spread, and move the payment's due time past it so the reconciler does not re-queue a payment
   * whose message is waiting. No status change, no retry consumed, no log line (the breaker counts
   * refusals and logs them with its next state change).
   */
  private async defer(p: Payment, message: WorkerMessage, retryAt: number): Promise<ProcessResult> {
    const ctx = this.ctx;
    const now = ctx.clock().getTime();
    const notBefore = Math.max(retryAt, now) + Math.round(ctx.random() * ctx.deferJitterMs);
    const s = scheduleFor(notBefore - now, now);
    await ctx.deps.queue.send({ ...message, reason: 'deferred', notBefore }, s.delaySeconds);
    if (p.dueAt !== undefined && p.dueAt < notBefore + ctx.graceMs) {
      // Best effort: if this write fails the reconciler may re-queue early, which is harmless.
      await ctx.deps.store.postpone(p, notBefore + ctx.graceMs).catch(() => false);
    }
    return { kind: 'deferred', notBefore, delaySeconds: s.delaySeconds };
  }
}
