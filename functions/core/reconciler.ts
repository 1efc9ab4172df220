/**
 * Finds every payment left between two steps and finishes it. Reads only the sparse open-payments
 * index (due items only), one page at a time, so cost and memory grow with the open set, not the table.
 * Every action is a conditional transition: racing a worker, one of the two wins and the other backs off.
 */
import type { Payment, PaymentError } from './payment';
import type { PaymentProvider, SettledCharge } from './provider';
import type { PaymentQueue } from '../adapters/sqs/payment-queue';
import type { TransitionRequest } from '../adapters/dynamo/payment-repository';
import { ConcurrentUpdateError } from './errors';
import type { ProcessResult, WorkerMessage } from './payment-processor';

export interface ReconcilerStore {
  openDue(shard: string, dueBefore: number, startKey?: Record<string, unknown>, limit?: number): Promise<{ items: Payment[]; next?: Record<string, unknown>; scanned: number }>;
  transition(current: Payment, req: TransitionRequest): Promise<Payment>;
  touch(current: Payment, req: { change: Payment['lastChange']; now: Date; dueAt: number }): Promise<Payment>;
  get(id: string): Promise<Payment | undefined>;
  settledIn(bucket: string, startKey?: Record<string, unknown>): Promise<{ items: Array<Pick<Payment, 'id' | 'status' | 'providerChargeId'> & { settledAt?: number }>; next?: Record<string, unknown> }>;
}

export interface ReconcilerDeps {
  readonly store: ReconcilerStore;
  readonly queue: PaymentQueue;
  /** Resolves a processing payment whose lease expired: looks the attempt up at the provider first. */
  readonly processor: { process(message: WorkerMessage): Promise<ProcessResult> };
  readonly provider?: Pick<PaymentProvider, 'listCharges'>;
  readonly shards: readonly string[];
  readonly config: {
    readonly stuckAfterSeconds: number;
    readonly openDeadlineSeconds: number;
    /** How far back provider reconciliation compares charges and successes. */
    readonly providerWindowMinutes?: number;
    /** A charge younger than this may still be settling in a worker: not a discrepancy yet. */
    readonly settleGraceMs?: number;
    readonly concurrency?: number;
    readonly pageSize?: number;
  };
  readonly clock?: () => Date;
  /** Stop starting new work when this returns false (Lambda time running out). */
  readonly hasTime?: () => boolean;
}

export interface Discrepancy {
  readonly kind: 'CHARGE_WITHOUT_SUCCESS' | 'SUCCESS_WITHOUT_CHARGE';
  readonly paymentId: string;
  readonly chargeId?: string;
  readonly status?: string;
}

export interface ReconcileResult {
  readonly counts: Record<string, number>;
  readonly itemsRead: number;
  readonly discrepancies: Discrepancy[];
  readonly truncated: boolean;
}

const ACTOR = 'reconciler';

export class Reconciler {
  private readonly clock: () => Date;

  constructor(private readonly deps: ReconcilerDeps) {
    this.clock = deps.clock ?? (() => new Date());
  }

  async run(): Promise<ReconcileResult> {
    const counts: Record<string, number> = {};
    const bump = (k: string) => (counts[k] = (counts[k] ?? 0) + 1);
    const hasTime = this.deps.hasTime ?? (() => true);
    const concurrency = this.deps.config.concurrency ?? 8;
    let itemsRead = 0;
    let truncated = false;
    const startedAt = this.clock().getTime();

    for (const shard of this.deps.shards) {
      let start: Record<string, unknown> | undefined;
      do {
        if (!hasTime()) {
          truncated = true;
          break;
        }
        const page = await this.deps.store.openDue(shard, startedAt, start, this.deps.config.pageSize ?? 100);
        itemsRead += page.scanned;
        start = page.next;
        // Bounded concurrency within a page; the page is dropped before the next one is read.
        let i = 0;
        await Promise.all(
          Array.from({ length: Math.min(concurrency, page.items.length) }, async () => {
            while (i < page.items.length) {
              const p = page.items[i++]!;
              try {
                bump(await this.resolve(p));
              } catch (err) {
                bump(err instanceof ConcurrentUpdateError ? 'skipped_concurrent' : 'errors');
              }
            }
          }),
        );
      } while (start);
      if (truncated) break;
    }

    const discrepancies = this.deps.provider?.listCharges ? await this.compareWithProvider() : [];
    return { counts, itemsRead, discrepancies, truncated };
  }

  /** Decides and applies one action; returns the action's name for the run's counts. */
  private async resolve(p: Payment): Promise<string> {
    const now = this.clock();
    const pastDeadline = now.getTime() - Date.parse(p.createdAt) > this.deps.config.openDeadlineSeconds * 1000;
    const outcomeUnknown = (p.lastError?.details as { outcome?: string } | undefined)?.outcome === 'unknown';

    if (p.status === 'processing') {
      if ((p.leaseUntil ?? 0) > now.getTime()) return 'skipped_leased';
      // The worker's own rule: look the attempt up before anything else; it never charges here.
      const result = await this.deps.processor.process({ paymentId: p.id, reason: 'reconcile_lease' });
      if (result.kind !== 'settled') return `lease_${result.kind}`;
      return `lease_resolved_${result.status}`;
    }

    // An attempt whose outcome is unknown must be looked up (by the worker) before the payment can end.
    if (pastDeadline && !outcomeUnknown) {
      const error: PaymentError = {
        code: 'PAYMENT_EXPIRED',
        message: `Payment did not complete within ${Math.round(this.deps.config.openDeadlineSeconds / 3600)} h`,
        retryable: false,
        timestamp: now.toISOString(),
      };
      await this.deps.store.transition(p, {
        to: 'expired',
        now,
        change: { action: 'expired', actor: ACTOR, reason: `open past its deadline in status ${p.status}` },
        set: { lastError: error },
      });
      return 'expired';
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

  /**
   * Provider reconciliation for the window: a provider charge whose payment is not a success with that
   * charge, and a success whose charge the provider does not have.
   */
  private async compareWithProvider(): Promise<Discrepancy[]> {
    const now = this.clock().getTime();
    const windowMs = (this.deps.config.providerWindowMinutes ?? 120) * 60_000;
    const grace = this.deps.config.settleGraceMs ?? 5 * 60_000;
    const from = new Date(now - windowMs);
    const charges: SettledCharge[] = await this.deps.provider!.listCharges!(new Date(from.getTime() - grace), new Date(now));
    const byChargeId = new Map(charges.map((c) => [c.chargeId, c]));
    const out: Discrepancy[] = [];

    for (const c of charges) {
      if (Date.parse(c.at) > now - grace || Date.parse(c.at) < from.getTime()) continue;
      const p = await this.deps.store.get(c.paymentId);
      if (!p || p.status !== 'success' || p.providerChargeId !== c.chargeId) {
        out.push({ kind: 'CHARGE_WITHOUT_SUCCESS', paymentId: c.paymentId, chargeId: c.chargeId, status: p?.status ?? 'missing' });
      }
    }

    for (let hour = Math.floor(from.getTime() / 3_600_000); hour <= Math.floor(now / 3_600_000); hour++) {
      const prefix = new Date(hour * 3_600_000).toISOString().slice(0, 13);
      for (const shard of this.deps.shards) {
        let start: Record<string, unknown> | undefined;
        do {
          const page = await this.deps.store.settledIn(`${prefix}#${shard.slice(5)}`, start);
          start = page.next;
          for (const p of page.items) {
            const at = p.settledAt ?? 0;
            if (at < from.getTime() || at > now - grace) continue;
            if (!p.providerChargeId || !byChargeId.has(p.providerChargeId)) {
              out.push({ kind: 'SUCCESS_WITHOUT_CHARGE', paymentId: p.id, chargeId: p.providerChargeId });
            }
          }
        } while (start);
      }
    }
    return out;
  }
}
