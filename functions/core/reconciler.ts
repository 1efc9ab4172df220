/**
 * Finds every payment left between two steps and finishes it, makes our payments agree with the
 * provider's intents, which are the truth for money, and follows the refunds the service owes.
 *
 * Open payments: reads only the sparse open-payments index (due items only), one page at a time, so
 * cost and memory grow with the open set, not the table. Every action is a conditional transition:
 * racing a worker, one of the two wins and the other backs off.
 *   - processing with a lapsed lease → settled from its intent (the worker's own rule; never confirms);
 *   - processing with a live lease → left to its claimer, due again when the lease ends (postponed, no
 *     new version), so the runs in between do not read it again;
 *   - past its deadline, in any open status (processing included, once its lease lapsed) → expired, after
 *     its intent is cancelled (a success if the intent had succeeded; still waiting if the provider is
 *     processing it and will not let it be cancelled yet);
 *   - pending never picked up, or retrying past its due time → re-queued (its message was lost).
 *
 * Budget: every page starts only while `hasTime()` says so. A run that stops early hands back a cursor
 * (ReconcilerCursor, saved by the caller) and the next run resumes there; a run that finishes moves
 * its starting open partition on by one, so under a backlog no partition waits behind the others. An
 * unfinished provider comparison is resumed first, in the same window, from the last intent checked.
 *
 * Captures: pages through the provider's intents by creation time, each with its charge expanded (what
 * was refunded), from a saved mark ("checked until", less an overlap for clock skew) to now less the
 * settle grace, so intents created while the reconciler was down, throttled or slow are compared when it
 * comes back: no gap, whatever the downtime (a long one is compared in windows of at most
 * `maxWindowMinutes`, the mark moving as each completes).
 *   - An intent without this deployment's tag (service and stage metadata) is another integration's
 *     (Checkout, Billing, another stage): counted, never touched.
 *   - A captured intent of ours that no payment accounts for (no payment, a failed or expired payment, or
 *     a second intent of a successful payment) gets a refund record (one per intent, written before
 *     anything is sent), is refunded through RefundProcessor, recorded on the payment as an audited
 *     version, and reported in the run. Its refund is followed to a final state by the refund sweep below,
 *     wherever the intent's date lies; one the provider ends failed is reported (REFUND_FAILED).
 *   - An open payment whose intent succeeded is settled now. A successful payment whose intent shows no
 *     capture is reported.
 *
 * Refunds: every run also moves on the refunds the service owes that are due (the sparse open-refunds
 * index of the Refunds table), so a refund whose answer was unclear or that is pending at the provider is
 * retried or read until it is final.
 */
import { ConcurrentUpdateError } from './errors';
import { isOpen, type Payment, type PaymentError, type RefundRecord } from './payment';
import type { Clock, Logger, Metrics, PaymentQueue, PaymentStore, RefundStore } from './ports';
import { isOurs, ProviderError, type PaymentProvider, type ProviderIntent, type ServiceTag } from './ports/payment-provider';
import { OutcomeUnresolvedError, type ProcessResult, type WorkerMessage } from './processing/context';
import { newRefund, unaccountedRefundId, type Refund } from './refund';
import { RefundProcessor } from './refund-processor';

export interface ReconcilerDeps {
  readonly store: Pick<PaymentStore, 'openPartitions' | 'openDue' | 'touch' | 'getMany' | 'postpone'>;
  readonly queue: PaymentQueue;
  /** The worker's processor: settles lapsed leases and expires payments (cancelling their intent first). */
  readonly processor: {
    process(message: WorkerMessage): Promise<ProcessResult>;
    expire(p: Payment, error: PaymentError, actor: string, reason: string): Promise<ProcessResult>;
  };
  readonly provider?: Pick<PaymentProvider, 'listIntents' | 'refund' | 'retrieveRefund' | 'listRefunds'>;
  /** The refunds the service owes; needed with `provider`. */
  readonly refunds?: RefundStore;
  readonly logger: Logger;
  /** RefundsFailed (from the refund processor). Default: none. */
  readonly metrics?: Metrics;
  readonly config: {
    readonly stuckAfterSeconds: number;
    readonly openDeadlineSeconds: number;
    /** Our tag on intents: only intents carrying it are ours to refund. */
    readonly tag: ServiceTag;
    /** How far back the very first capture check looks (no saved mark yet). Default 120. */
    readonly providerWindowMinutes?: number;
    /** An intent younger than this may still be settling in a worker: not checked yet. */
    readonly settleGraceMs?: number;
    /** Each comparison starts this long before the saved mark (clock skew, whole-second `created`). Default 60 s. */
    readonly checkOverlapMs?: number;
    /** Longest window one comparison covers; a longer gap is compared in several. Default 360. */
    readonly maxWindowMinutes?: number;
    readonly concurrency?: number;
    readonly pageSize?: number;
  };
  readonly clock?: Clock;
  /** Stop starting new work when this returns false (Lambda time running out). */
  readonly hasTime?: () => boolean;
}

export type DiscrepancyKind =
  /** Money captured that no payment accounts for: a refund is owed and the provider took it. */
  | 'UNACCOUNTED_CAPTURE_REFUNDED'
  /** Money captured that no payment accounts for: a refund is owed and not made yet (retried until final). */
  | 'UNACCOUNTED_CAPTURE'
  /** The provider ended a refund we owe failed: the money is still captured. An operator must act. */
  | 'REFUND_FAILED'
  /** A successful payment whose intent shows no capture. */
  | 'SUCCESS_WITHOUT_CAPTURE';

export interface Discrepancy {
  readonly kind: DiscrepancyKind;
  readonly paymentId: string;
  readonly intentId: string;
  readonly amountMinor: number;
  readonly currency: string;
  readonly status: string;
  /** Our refund record. */
  readonly refundId?: string;
}

/** Where the next run starts. Plain data: the caller stores it between runs. */
export interface ReconcilerCursor {
  /** Index into openPartitions() where the next run starts, and the page key it stopped at there. */
  readonly openPartition: number;
  readonly openStartKey?: Record<string, unknown>;
  /** Every intent of ours created before this (epoch ms) was compared: the next comparison starts here. */
  readonly checkedUntil?: number;
  /** An unfinished provider comparison: its window (epoch ms) and the last intent listed. */
  readonly captures?: { readonly from: number; readonly to: number; readonly after?: string };
  /** Where the next refund sweep starts (an index into the open-refunds partitions). */
  readonly refundPartition?: number;
}

export interface ReconcileResult {
  /** Where the next run starts. */
  readonly cursor: ReconcilerCursor;
  readonly counts: Record<string, number>;
  readonly itemsRead: number;
  readonly intentsRead: number;
  readonly discrepancies: Discrepancy[];
  readonly refundsIssued: number;
  readonly truncated: boolean;
}

const ACTOR = 'reconciler';

type Bump = (k: string) => void;
type Window = { readonly from: number; readonly to: number; readonly after?: string };
type Compared = { readonly discrepancies: Discrepancy[]; readonly intentsRead: number; readonly next?: Window };

export class Reconciler {
  private readonly clock: Clock;
  private readonly hasTime: () => boolean;
  private readonly refunder?: RefundProcessor;

  constructor(private readonly deps: ReconcilerDeps) {
    this.clock = deps.clock ?? (() => new Date());
    this.hasTime = deps.hasTime ?? (() => true);
    if (deps.provider) {
      if (!deps.refunds) throw new Error('Reconciler: a provider comparison needs the refund store');
      this.refunder = new RefundProcessor({
        refunds: deps.refunds,
        provider: deps.provider,
        logger: deps.logger,
        clock: this.clock,
        ...(deps.metrics ? { metrics: deps.metrics } : {}),
      });
    }
  }

  async run(cursor: ReconcilerCursor = { openPartition: 0 }): Promise<ReconcileResult> {
    const counts: Record<string, number> = {};
    const bump: Bump = (k) => (counts[k] = (counts[k] ?? 0) + 1);
    const discrepancies: Discrepancy[] = [];
    // Windows end at this run's start (less the settle grace): a run that compared up to there is caught up.
    const startedAt = this.clock().getTime();
    let intentsRead = 0;
    let mark = cursor.checkedUntil;
    let pending = cursor.captures;
    const compare = async (w: Window): Promise<void> => {
      const r = await this.checkCaptures(bump, w);
      discrepancies.push(...r.discrepancies);
      intentsRead += r.intentsRead;
      if (r.next) pending = r.next;
      else {
        pending = undefined;
        mark = Math.max(mark ?? 0, w.to);
      }
    };
    // An unfinished comparison goes first, so a standing open backlog cannot starve it.
    if (this.deps.provider && pending) await compare(pending);
    const open = await this.finishOpen(bump, cursor);
    const refunds = this.refunder ? await this.sweepRefunds(bump, cursor.refundPartition ?? 0) : { discrepancies: [], truncated: false, next: 0 };
    discrepancies.push(...refunds.discrepancies);
    // Then every window from the saved mark to now, while time allows.
    for (let w = this.nextWindow(mark, startedAt); this.deps.provider && !pending && w && this.hasTime(); w = this.nextWindow(mark, startedAt)) await compare(w);
    // One report per intent and kind (a refund found failed by the sweep and by the comparison alike).
    const seen = new Set<string>();
    const unique = discrepancies.filter((d) => !seen.has(`${d.kind}:${d.intentId}`) && seen.add(`${d.kind}:${d.intentId}`));
    return {
      cursor: {
        ...open.next,
        ...(mark !== undefined ? { checkedUntil: mark } : {}),
        ...(pending ? { captures: pending } : {}),
        refundPartition: refunds.next,
      },
      counts,
      itemsRead: open.itemsRead,
      intentsRead,
      discrepancies: unique,
      refundsIssued: unique.filter((d) => d.kind === 'UNACCOUNTED_CAPTURE_REFUNDED').length,
      truncated: open.truncated || refunds.truncated || pending !== undefined || (this.deps.provider !== undefined && this.nextWindow(mark, startedAt) !== undefined),
    };
  }

  // ---- Open payments -------------------------------------------------------------------------------

  private async finishOpen(bump: Bump, cursor: ReconcilerCursor): Promise<{ itemsRead: number; truncated: boolean; next: Pick<ReconcilerCursor, 'openPartition' | 'openStartKey'> }> {
    const concurrency = this.deps.config.concurrency ?? 8;
    const startedAt = this.clock().getTime();
    const partitions = this.deps.store.openPartitions();
    const first = ((cursor.openPartition % partitions.length) + partitions.length) % partitions.length;
    let itemsRead = 0;
    for (let k = 0; k < partitions.length; k++) {
      const index = (first + k) % partitions.length;
      const partition = partitions[index]!;
      let start: Record<string, unknown> | undefined = k === 0 ? cursor.openStartKey : undefined;
      do {
        if (!this.hasTime()) return { itemsRead, truncated: true, next: { openPartition: index, ...(start ? { openStartKey: start } : {}) } };
        const page = await this.deps.store.openDue(partition, startedAt, start, this.deps.config.pageSize ?? 100);
        itemsRead += page.scanned;
        start = page.next;
        // Bounded concurrency within a page; the page is dropped before the next one is read.
        await eachLimited(page.items, concurrency, async (p) => {
          try {
            bump(await this.resolve(p));
          } catch (err) {
            if (err instanceof ConcurrentUpdateError) bump('skipped_concurrent');
            else if (err instanceof OutcomeUnresolvedError) bump('unresolved_at_provider');
            else {
              bump('errors');
              this.deps.logger.error('reconciling a payment failed', { paymentId: p.id, error: (err as Error).name });
            }
          }
        });
      } while (start);
    }
    return { itemsRead, truncated: false, next: { openPartition: (first + 1) % partitions.length } };
  }

  /** Decides and applies one action; returns the action's name for the run's counts. */
  private async resolve(p: Payment): Promise<string> {
    const now = this.clock();
    const deadlineMs = this.deps.config.openDeadlineSeconds * 1000;
    const pastDeadline = now.getTime() - Date.parse(p.createdAt) >= deadlineMs;
    if (p.status === 'processing') {
      // Its claimer may still be at work: not ours to touch. A claim leaves the due time at or after its
      // lease end (claimDueAt), so this takes hosts whose clocks disagree; the lease end is when the
      // payment can be acted on, and it is due again then. Conditional on the version read: a claimer
      // that moved it on wins, and a postpone never makes a payment due earlier.
      const leaseUntil = p.leaseUntil ?? 0;
      if (leaseUntil > now.getTime()) return (await this.deps.store.postpone(p, leaseUntil)) ? 'postponed_leased' : 'skipped_leased';
      // The worker's own rule: settle from the intent; it never confirms here. Past the deadline the
      // payment is expired instead (after its intent is cancelled; a success found then wins).
      if (!pastDeadline) {
        const result = await this.deps.processor.process({ paymentId: p.id, reason: 'reconcile_lease' });
        return result.kind === 'settled' ? `lease_resolved_${result.status}` : `lease_${result.kind}`;
      }
    }
    if (pastDeadline) {
      const error: PaymentError = {
        code: 'PAYMENT_EXPIRED',
        message: `Payment did not complete within ${Math.round(this.deps.config.openDeadlineSeconds / 3600)} h`,
        retryable: false,
        timestamp: now.toISOString(),
      };
      const result = await this.deps.processor.expire(p, error, ACTOR, `open past its deadline in status ${p.status}`);
      return result.kind === 'settled' ? (result.status === 'expired' ? 'expired' : `deadline_${result.status}`) : `deadline_${result.kind}`;
    }

    // pending never picked up, or retrying past its due time: its queue message is lost. Re-queue it.
    await this.deps.store.touch(p, {
      now,
      dueAt: now.getTime() + this.deps.config.stuckAfterSeconds * 1000,
      change: { action: 'requeued', actor: ACTOR, reason: p.status === 'pending' ? 'not picked up in time' : 'retry overdue' },
    });
    await this.deps.queue.send({ paymentId: p.id, reason: 'requeue' });
    return `requeued_${p.status}`;
  }

  // ---- Captures ------------------------------------------------------------------------------------

  /** The next window to compare after the mark, up to `now` less the settle grace; undefined when caught up. */
  private nextWindow(mark: number | undefined, now: number): Window | undefined {
    const c = this.deps.config;
    const to = now - (c.settleGraceMs ?? 5 * 60_000);
    if (mark !== undefined && mark >= to) return undefined;
    const from = mark === undefined ? to - (c.providerWindowMinutes ?? 120) * 60_000 : mark - (c.checkOverlapMs ?? 60_000);
    return { from, to: Math.min(to, from + (c.maxWindowMinutes ?? 360) * 60_000) };
  }

  /** Compares one window (from its last listed intent, when resumed); `next` when it stopped early. */
  private async checkCaptures(bump: Bump, w: Window): Promise<Compared> {
    const provider = this.deps.provider!;
    const out: Discrepancy[] = [];
    let intentsRead = 0;
    let cursor: string | undefined = w.after;
    do {
      if (!this.hasTime()) return { discrepancies: out, intentsRead, next: { from: w.from, to: w.to, ...(cursor ? { after: cursor } : {}) } };
      let page;
      try {
        page = await provider.listIntents({ from: new Date(w.from), to: new Date(w.to), limit: 100, ...(cursor ? { startingAfter: cursor } : {}) });
      } catch (err) {
        if (!(err instanceof ProviderError)) throw err;
        // The provider cannot be listed now: the window is compared again from where it stopped.
        bump('captures_unreadable');
        return { discrepancies: out, intentsRead, next: { from: w.from, to: w.to, ...(cursor ? { after: cursor } : {}) } };
      }
      intentsRead += page.intents.length;
      cursor = page.nextCursor;
      const ours = page.intents.filter((i) => isOurs(i, this.deps.config.tag));
      for (const i of page.intents) if (!isOurs(i, this.deps.config.tag)) bump(i.amountReceived > (i.amountRefunded ?? 0) ? 'foreign_captures' : 'foreign_intents');
      const payments = await this.deps.store.getMany([...new Set(ours.map((i) => i.paymentId).filter((id) => id !== ''))]);
      for (const intent of ours) {
        const d = await this.checkIntent(intent, payments.get(intent.paymentId), bump);
        if (d) out.push(d);
      }
    } while (cursor);
    return { discrepancies: out, intentsRead };
  }

  private async checkIntent(intent: ProviderIntent, p: Payment | undefined, bump: Bump): Promise<Discrepancy | undefined> {
    const net = intent.amountReceived - (intent.amountRefunded ?? 0);
    const base = { paymentId: intent.paymentId, intentId: intent.id, amountMinor: net, currency: intent.currency, status: p?.status ?? 'missing' };
    if (net <= 0) {
      if (p?.status === 'success' && p.intentId === intent.id && intent.status !== 'succeeded') {
        bump('success_without_capture');
        return { ...base, kind: 'SUCCESS_WITHOUT_CAPTURE', amountMinor: 0 };
      }
      return undefined;
    }
    if (p?.status === 'success' && (p.intentId ?? intent.id) === intent.id) return undefined;
    if (p && isOpen(p.status)) {
      // The intent succeeded and the payment has not caught up yet: settle it now (from the intent).
      const r = await this.deps.processor.process({ paymentId: p.id, reason: 'reconcile_capture' }).catch(() => undefined);
      bump(r?.kind === 'settled' ? `capture_settled_${r.status}` : 'capture_open_pending');
      return undefined;
    }
    return this.oweRefund(intent, p, net, base, bump);
  }

  /**
   * Captured money that no payment accounts for goes back, once: one refund record per intent, written
   * before anything is sent; the refund processor sends it and follows it. Finding the same capture again
   * finds the same record: nothing is sent twice or counted twice.
   */
  private async oweRefund(intent: ProviderIntent, p: Payment | undefined, net: number, base: Omit<Discrepancy, 'kind'>, bump: Bump): Promise<Discrepancy | undefined> {
    const why = p ? `captured on intent ${intent.id} while the payment is ${p.status}${p.intentId && p.intentId !== intent.id ? ` with intent ${p.intentId}` : ''}` : `captured on intent ${intent.id} with no payment`;
    const now = this.clock();
    const { created, record } = await this.deps.refunds!.create(
      newRefund(
        {
          id: unaccountedRefundId(intent.id),
          kind: 'unaccounted_capture',
          paymentId: intent.paymentId,
          ...(p ? { tenantId: p.tenantId } : {}),
          intentId: intent.id,
          amountMinor: net,
          currency: intent.currency,
          reason: why,
        },
        now,
      ),
    );
    if (!created) {
      if (record.status === 'failed') return { ...base, kind: 'REFUND_FAILED', refundId: record.id };
      if (record.status === 'succeeded') {
        bump('refund_done_listing_behind');
        return undefined;
      }
      // Pending, yet the intent shows the money still captured: look at it now rather than at its due time.
      const step = await this.refunder!.process(record);
      bump('refund_in_progress');
      return step.kind === 'final' && step.refund.status === 'failed' ? { ...base, kind: 'REFUND_FAILED', refundId: record.id } : undefined;
    }
    this.deps.logger.error('unaccounted capture: refund owed', { paymentId: intent.paymentId, intentId: intent.id, amountMinor: net, refundId: record.id });
    if (p) await this.recordOnPayment(p, record, why);
    const step = await this.refunder!.process(record);
    const r = 'refund' in step ? step.refund : record;
    const taken = r.providerRefundId !== undefined && r.status !== 'failed';
    bump(taken ? 'refunds_issued' : 'refund_owed');
    if (r.status === 'failed') return { ...base, kind: 'REFUND_FAILED', refundId: r.id };
    return { ...base, kind: taken ? 'UNACCOUNTED_CAPTURE_REFUNDED' : 'UNACCOUNTED_CAPTURE', refundId: r.id };
  }

  /** The refund owed is an audited version of the payment; its status does not change. */
  private async recordOnPayment(p: Payment, refund: Refund, why: string): Promise<void> {
    if ((p.refunds ?? []).some((r) => r.refundId === refund.id)) return;
    const now = this.clock();
    const entry: RefundRecord = { refundId: refund.id, intentId: refund.intentId, amountMinor: refund.amountMinor, reason: why, at: now.toISOString() };
    await this.deps.store
      .touch(p, { now, change: { action: 'refund_issued', actor: ACTOR, reason: why }, set: { refunds: [...(p.refunds ?? []), entry] } })
      .catch((err) => this.deps.logger.warn('refund owed but not recorded on the payment (the refund record has it)', { paymentId: p.id, error: (err as Error).name }));
  }

  // ---- Refunds -------------------------------------------------------------------------------------

  /** Moves on every refund the service owes that is due, partition by partition from `first`. */
  private async sweepRefunds(bump: Bump, first: number): Promise<{ discrepancies: Discrepancy[]; truncated: boolean; next: number }> {
    const store = this.deps.refunds!;
    const partitions = store.openPartitions();
    const start = ((first % partitions.length) + partitions.length) % partitions.length;
    const now = this.clock().getTime();
    const out: Discrepancy[] = [];
    for (let k = 0; k < partitions.length; k++) {
      const index = (start + k) % partitions.length;
      let key: Record<string, unknown> | undefined;
      do {
        if (!this.hasTime()) return { discrepancies: out, truncated: true, next: index };
        const page = await store.openDue(partitions[index]!, now, key, this.deps.config.pageSize ?? 100);
        key = page.next;
        await eachLimited(page.items, this.deps.config.concurrency ?? 8, async (r) => {
          try {
            const step = await this.refunder!.process(r);
            bump(`refund_${step.kind === 'final' ? step.refund.status : step.kind}`);
            if (step.kind === 'final' && step.refund.status === 'failed') {
              out.push({ kind: 'REFUND_FAILED', paymentId: r.paymentId, intentId: r.intentId, amountMinor: r.amountMinor, currency: r.currency, status: 'refund_failed', refundId: r.id });
            }
          } catch (err) {
            bump('errors');
            this.deps.logger.error('moving a refund on failed', { refundId: r.id, error: (err as Error).name });
          }
        });
      } while (key);
    }
    return { discrepancies: out, truncated: false, next: (start + 1) % partitions.length };
  }
}

async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (i < items.length) await fn(items[i++]!);
    }),
  );
}
