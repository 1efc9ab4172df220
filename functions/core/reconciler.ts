/**
 * Finds every payment left between two steps and finishes it, and makes our payments agree with the
 * provider's intents, which are the truth for money.
 *
 * Open payments: reads only the sparse open-payments index (due items only), one page at a time, so
 * cost and memory grow with the open set, not the table. Every action is a conditional transition:
 * racing a worker, one of the two wins and the other backs off.
 *   - processing with a lapsed lease → settled from its intent (the worker's own rule; never confirms);
 *   - past its deadline → expired, after its intent is cancelled (a success if the intent had succeeded);
 *   - pending never picked up, or retrying past its due time → re-queued (its message was lost).
 *
 * Budget: every page starts only while `hasTime()` says so. A run that stops early hands back a cursor
 * (ReconcilerCursor, saved by the caller) and the next run resumes there; a run that finishes moves
 * its starting open partition on by one, so under a backlog no partition waits behind the others. An
 * unfinished provider comparison is resumed first, in the same window, from the last intent checked.
 *
 * Captures: pages through the provider's intents of a time window. A captured intent that no payment
 * accounts for (no payment, a failed or expired payment, or a second intent of a successful payment) is
 * refunded with an idempotent refund, recorded on the payment as an audited version, and reported in
 * the run. An open payment whose intent succeeded is settled now. A successful payment whose intent
 * shows no capture is reported.
 */
import { ConcurrentUpdateError } from './errors';
import { isOpen, type Payment, type PaymentError, type RefundRecord } from './payment';
import type { Clock, Logger, PaymentQueue, PaymentStore } from './ports';
import type { PaymentProvider, ProviderIntent } from './ports/payment-provider';
import { OutcomeUnresolvedError, type ProcessResult, type WorkerMessage } from './processing/context';

export interface ReconcilerDeps {
  readonly store: Pick<PaymentStore, 'openPartitions' | 'openDue' | 'touch' | 'getMany'>;
  readonly queue: PaymentQueue;
  /** The worker's processor: settles lapsed leases and expires payments (cancelling their intent first). */
  readonly processor: {
    process(message: WorkerMessage): Promise<ProcessResult>;
    expire(p: Payment, error: PaymentError, actor: string, reason: string): Promise<ProcessResult>;
  };
  readonly provider?: Pick<PaymentProvider, 'listIntents' | 'refund'>;
  readonly logger: Logger;
  readonly config: {
    readonly stuckAfterSeconds: number;
    readonly openDeadlineSeconds: number;
    /** How far back the capture check pages through the provider's intents. */
    readonly providerWindowMinutes?: number;
    /** An intent younger than this may still be settling in a worker: not checked yet. */
    readonly settleGraceMs?: number;
    readonly concurrency?: number;
    readonly pageSize?: number;
  };
  readonly clock?: Clock;
  /** Stop starting new work when this returns false (Lambda time running out). */
  readonly hasTime?: () => boolean;
}

export type DiscrepancyKind =
  /** Money captured that no payment accounts for: refunded. */
  | 'UNACCOUNTED_CAPTURE_REFUNDED'
  /** Money captured that no payment accounts for, and the refund could not be made this run. */
  | 'UNACCOUNTED_CAPTURE'
  /** A successful payment whose intent shows no capture. */
  | 'SUCCESS_WITHOUT_CAPTURE';

export interface Discrepancy {
  readonly kind: DiscrepancyKind;
  readonly paymentId: string;
  readonly intentId: string;
  readonly amountMinor: number;
  readonly currency: string;
  readonly status: string;
  readonly refundId?: string;
}

/** Where the next run starts. Plain data: the caller stores it between runs. */
export interface ReconcilerCursor {
  /** Index into openPartitions() where the next run starts, and the page key it stopped at there. */
  readonly openPartition: number;
  readonly openStartKey?: Record<string, unknown>;
  /** An unfinished provider comparison: its window (epoch ms) and the last intent listed. */
  readonly captures?: { readonly from: number; readonly to: number; readonly after?: string };
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

export class Reconciler {
  private readonly clock: Clock;
  private readonly hasTime: () => boolean;

  constructor(private readonly deps: ReconcilerDeps) {
    this.clock = deps.clock ?? (() => new Date());
    this.hasTime = deps.hasTime ?? (() => true);
  }

  async run(cursor: ReconcilerCursor = { openPartition: 0 }): Promise<ReconcileResult> {
    const counts: Record<string, number> = {};
    const bump = (k: string) => (counts[k] = (counts[k] ?? 0) + 1);
    const noCaptures = { discrepancies: [] as Discrepancy[], intentsRead: 0, truncated: false, next: undefined };
    // An unfinished comparison goes first, so a standing open backlog cannot starve it.
    const resumed = this.deps.provider && cursor.captures ? await this.checkCaptures(bump, cursor.captures) : noCaptures;
    const open = await this.finishOpen(bump, cursor);
    const fresh = this.deps.provider && !cursor.captures ? await this.checkCaptures(bump) : noCaptures;
    const captures = cursor.captures ? resumed : fresh;
    const discrepancies = [...resumed.discrepancies, ...(cursor.captures ? [] : fresh.discrepancies)];
    return {
      cursor: { ...open.next, ...(captures.next ? { captures: captures.next } : {}) },
      counts,
      itemsRead: open.itemsRead,
      intentsRead: resumed.intentsRead + (cursor.captures ? 0 : fresh.intentsRead),
      discrepancies,
      refundsIssued: discrepancies.filter((d) => d.kind === 'UNACCOUNTED_CAPTURE_REFUNDED').length,
      truncated: open.truncated || captures.truncated,
    };
  }

  // ---- Open payments -------------------------------------------------------------------------------

  private async finishOpen(
    bump: (k: string) => void,
    cursor: ReconcilerCursor,
  ): Promise<{ itemsRead: number; truncated: boolean; next: Pick<ReconcilerCursor, 'openPartition' | 'openStartKey'> }> {
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
    if (p.status === 'processing') {
      if ((p.leaseUntil ?? 0) > now.getTime()) return 'skipped_leased';
      // The worker's own rule: settle from the intent; it never confirms here.
      const result = await this.deps.processor.process({ paymentId: p.id, reason: 'reconcile_lease' });
      return result.kind === 'settled' ? `lease_resolved_${result.status}` : `lease_${result.kind}`;
    }

    const pastDeadline = now.getTime() - Date.parse(p.createdAt) > this.deps.config.openDeadlineSeconds * 1000;
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

  private async checkCaptures(
    bump: (k: string) => void,
    resume?: ReconcilerCursor['captures'],
  ): Promise<{ discrepancies: Discrepancy[]; intentsRead: number; truncated: boolean; next: ReconcilerCursor['captures'] }> {
    const provider = this.deps.provider!;
    const now = this.clock().getTime();
    const to = new Date(resume?.to ?? now - (this.deps.config.settleGraceMs ?? 5 * 60_000));
    const from = new Date(resume?.from ?? now - (this.deps.config.providerWindowMinutes ?? 120) * 60_000);
    const out: Discrepancy[] = [];
    let intentsRead = 0;
    let cursor: string | undefined = resume?.after;
    do {
      if (!this.hasTime()) {
        return { discrepancies: out, intentsRead, truncated: true, next: { from: from.getTime(), to: to.getTime(), ...(cursor ? { after: cursor } : {}) } };
      }
      const page = await provider.listIntents({ from, to, limit: 100, ...(cursor ? { startingAfter: cursor } : {}) });
      intentsRead += page.intents.length;
      cursor = page.nextCursor;
      const payments = await this.deps.store.getMany([...new Set(page.intents.map((i) => i.paymentId).filter((id) => id !== ''))]);
      for (const intent of page.intents) {
        const d = await this.checkIntent(intent, payments.get(intent.paymentId), bump);
        if (d) out.push(d);
      }
    } while (cursor);
    return { discrepancies: out, intentsRead, truncated: false, next: undefined };
  }

  private async checkIntent(intent: ProviderIntent, p: Payment | undefined, bump: (k: string) => void): Promise<Discrepancy | undefined> {
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
    return this.refundUnaccounted(intent, p, net, base, bump);
  }

  /** Captured money that no payment accounts for goes back, once (the refund key is derived from the intent). */
  private async refundUnaccounted(
    intent: ProviderIntent,
    p: Payment | undefined,
    net: number,
    base: Omit<Discrepancy, 'kind'>,
    bump: (k: string) => void,
  ): Promise<Discrepancy> {
    const why = p ? `captured on intent ${intent.id} while the payment is ${p.status}${p.intentId && p.intentId !== intent.id ? ` with intent ${p.intentId}` : ''}` : `captured on intent ${intent.id} with no payment`;
    let refundId: string;
    try {
      const refund = await this.deps.provider!.refund({ intentId: intent.id, paymentId: intent.paymentId, amountMinor: net, reason: why });
      refundId = refund.id;
    } catch (err) {
      bump('refund_failed');
      this.deps.logger.error('refund of an unaccounted capture failed; retried next run', { paymentId: intent.paymentId, intentId: intent.id, error: (err as Error).name });
      return { ...base, kind: 'UNACCOUNTED_CAPTURE' };
    }
    bump('refunds_issued');
    this.deps.logger.error('unaccounted capture refunded', { paymentId: intent.paymentId, intentId: intent.id, amountMinor: net, refundId });
    if (p && !(p.refunds ?? []).some((r) => r.refundId === refundId)) {
      const now = this.clock();
      const record: RefundRecord = { refundId, intentId: intent.id, amountMinor: net, reason: why, at: now.toISOString() };
      await this.deps.store
        .touch(p, { now, change: { action: 'refund_issued', actor: ACTOR, reason: why }, set: { refunds: [...(p.refunds ?? []), record] } })
        .catch((err) => this.deps.logger.warn('refund issued but not recorded on the payment (the run record has it)', { paymentId: p.id, error: (err as Error).name }));
    }
    return { ...base, kind: 'UNACCOUNTED_CAPTURE_REFUNDED', refundId };
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
