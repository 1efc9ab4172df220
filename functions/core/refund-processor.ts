/**
 * Moving a refund the service owes to a final state at the provider, one step at a time. The record is
 * written before anything is sent (refund.ts); every step reads the provider and writes what it learned,
 * conditional on the record's version, so two processors (the worker and the reconciler) never both act.
 *
 * A refund is not naturally idempotent, so money can never go back twice:
 *   1. it is sent under a key derived from the record (`refund-<id>`), and carries the record id in its
 *      metadata;
 *   2. once a request may have reached the provider (`sends` > 0), the intent's refunds are read before
 *      anything is sent again: one carrying our id is adopted, never sent a second time;
 *   3. the key moves to a new generation only when its saved answer is an error the provider replays
 *      (the first request under it is over, and failed) and the intent holds no refund of ours: a 5xx saved
 *      for 24 h then blocks nothing. An unclear answer (timeout, fresh 5xx) is sent again under the same key;
 *   4. a refund the provider took is followed (pending → succeeded or failed), read with its charge, until
 *      it is final, whenever its intent was created.
 * A refund the provider ended failed (or that cannot be made: nothing left to refund) is final and
 * reported; money that could not go back needs an operator (RefundsFailed).
 */
import { ConcurrentUpdateError } from './errors';
import { noMetrics, type Clock, type Logger, type Metrics, type RefundStore } from './ports';
import { ProviderError, type PaymentProvider, type ProviderRefund } from './ports/payment-provider';
import type { Refund, RefundChange } from './refund';

export interface RefundProcessorDeps {
  readonly refunds: RefundStore;
  readonly provider: Pick<PaymentProvider, 'refund' | 'retrieveRefund' | 'listRefunds'>;
  readonly logger: Logger;
  readonly metrics?: Metrics;
  readonly clock?: Clock;
  /** First wait before a refund is looked at again (pending, or an unclear answer). Default 30 s. */
  readonly retryBaseMs?: number;
  /** Longest such wait. Default 1 h. */
  readonly retryCapMs?: number;
}

export type RefundStepResult =
  | { readonly kind: 'final'; readonly refund: Refund }
  /** Still pending at the provider, or not sent yet: looked at again at `refund.dueAt`. */
  | { readonly kind: 'pending'; readonly refund: Refund }
  /** Another processor changed the record first; it carries on. */
  | { readonly kind: 'lost_race' }
  | { readonly kind: 'not_found' };

/** Sends per call at most: one under the current key, one more after a saved error moved the key on. */
const SENDS_PER_STEP = 2;

export class RefundProcessor {
  private readonly clock: Clock;
  private readonly metrics: Metrics;
  private readonly baseMs: number;
  private readonly capMs: number;

  constructor(private readonly deps: RefundProcessorDeps) {
    this.clock = deps.clock ?? (() => new Date());
    this.metrics = deps.metrics ?? noMetrics;
    this.baseMs = deps.retryBaseMs ?? 30_000;
    this.capMs = deps.retryCapMs ?? 3_600_000;
  }

  /** Moves the refund on as far as the provider allows now. */
  async process(refundOrId: Refund | string): Promise<RefundStepResult> {
    let r = typeof refundOrId === 'string' ? await this.deps.refunds.get(refundOrId) : refundOrId;
    if (!r) return { kind: 'not_found' };
    try {
      for (let round = 0; r.status === 'pending'; round++) {
        const next = await this.step(r, round < SENDS_PER_STEP);
        if (next.version === r.version || next.status !== 'pending' || next.keyGeneration === r.keyGeneration) return this.result(next);
        r = next; // the key moved on after a saved error: send under the new one now
      }
      return this.result(r);
    } catch (err) {
      if (err instanceof ConcurrentUpdateError) return { kind: 'lost_race' };
      throw err;
    }
  }

  private result(r: Refund): RefundStepResult {
    return r.status === 'pending' ? { kind: 'pending', refund: r } : { kind: 'final', refund: r };
  }

  /** One step: read what the provider has, or send. Returns the record as written (or as read, unchanged). */
  private async step(r: Refund, maySend: boolean): Promise<Refund> {
    try {
      if (r.providerRefundId) return await this.settle(r, await this.deps.provider.retrieveRefund(r.providerRefundId));
      if (r.sends > 0) {
        const mine = await this.ours(r);
        if (mine) return await this.settle(r, mine);
      }
      if (!maySend) return r;
      return await this.send(r);
    } catch (err) {
      if (!(err instanceof ProviderError)) throw err;
      // A read that failed: nothing learned, look again later.
      return this.later(r, { lastError: this.error(err) });
    }
  }

  private async send(r: Refund): Promise<Refund> {
    let refund: ProviderRefund;
    try {
      refund = await this.deps.provider.refund({
        refundId: r.id,
        keyGeneration: r.keyGeneration,
        intentId: r.intentId,
        paymentId: r.paymentId,
        amountMinor: r.amountMinor,
        currency: r.currency,
        reason: r.reason,
      });
    } catch (err) {
      if (!(err instanceof ProviderError)) throw err;
      return this.sendFailed(r, err);
    }
    return this.settle({ ...r, sends: r.sends + 1 }, refund, r);
  }

  private async sendFailed(r: Refund, err: ProviderError): Promise<Refund> {
    const lastError = this.error(err);
    switch (err.kind) {
      case 'unknown': {
        if (!err.extra.replayed) return this.later(r, { sends: r.sends + 1, lastError });
        // The key's saved answer is an error: its request is over. Adopt a refund of ours if the intent has
        // one (a refund made, then a 5xx); otherwise the key moves on, so the saved error blocks nothing.
        const mine = await this.ours(r);
        if (mine) return this.settle({ ...r, sends: r.sends + 1 }, mine, r);
        this.deps.logger.warn('refund key replays a saved error; no refund of ours on the intent; next key', { refundId: r.id, intentId: r.intentId, keyGeneration: r.keyGeneration + 1 });
        return this.write(r, { keyGeneration: r.keyGeneration + 1, sends: r.sends + 1, lastError }, this.clock().getTime());
      }
      case 'throttled':
      case 'outage':
        // Nothing was done (429, 401/403): the same key later.
        return this.later(r, { lastError });
      case 'declined':
      case 'rejected': {
        // Refused: maybe because our refund exists already (charge_already_refunded, amount_too_large).
        const mine = r.sends > 0 || /refund|amount/.test(err.code) ? await this.ours(r) : undefined;
        if (mine) return this.settle({ ...r, sends: r.sends + 1 }, mine, r);
        return this.finish(r, 'failed', { lastError, failureReason: err.code });
      }
    }
  }

  /** The refund of ours on the intent, if the provider has one (matched by the id in its metadata). */
  private async ours(r: Refund): Promise<ProviderRefund | undefined> {
    const list = await this.deps.provider.listRefunds(r.intentId);
    return list.find((x) => x.refundId === r.id);
  }

  /** Writes what the provider says of our refund; `base` is the version to write on (the record read). */
  private settle(r: Refund, pr: ProviderRefund, base: Refund = r): Promise<Refund> {
    const seen: RefundChange = { providerRefundId: pr.id, providerStatus: pr.status, ...(r.sends !== base.sends ? { sends: r.sends } : {}) };
    if (pr.status === 'succeeded') return this.finish(base, 'succeeded', seen);
    if (pr.status === 'failed' || pr.status === 'canceled') return this.finish(base, 'failed', { ...seen, failureReason: pr.failureReason ?? pr.status });
    return this.later(base, seen);
  }

  private async finish(r: Refund, status: 'succeeded' | 'failed', change: RefundChange): Promise<Refund> {
    const done = await this.write(r, { ...change, status, finishedAt: this.clock().toISOString() });
    const where = { refundId: r.id, paymentId: r.paymentId, intentId: r.intentId, amountMinor: r.amountMinor, kind: r.kind };
    if (status === 'failed') {
      this.metrics.count('RefundsFailed');
      this.deps.logger.error('refund failed at the provider; the money is still captured', { ...where, failureReason: done.failureReason, code: done.lastError?.code });
    } else {
      if (r.kind === 'tenant') this.metrics.count('RefundsSucceeded');
      this.deps.logger.info('refund succeeded', where);
    }
    return done;
  }

  /** Looked at again after a wait that grows with the refund's age: 30 s at first, at most an hour. */
  private later(r: Refund, change: RefundChange): Promise<Refund> {
    const now = this.clock().getTime();
    const age = now - Date.parse(r.createdAt);
    const wait = Math.min(this.capMs, Math.max(this.baseMs, Math.round(age / 4)));
    return this.write(r, change, now + wait);
  }

  private write(r: Refund, change: RefundChange, dueAt?: number): Promise<Refund> {
    return this.deps.refunds.update(r, { ...change, updatedAt: this.clock().toISOString() }, dueAt);
  }

  private error(err: ProviderError) {
    return { code: err.code, message: err.message.slice(0, 300), at: this.clock().toISOString() };
  }
}
