/** In-memory fakes of the core's ports with the same contracts as the adapters (conditional writes). */
import { hmacCursorSeal } from '../../functions/core/cursor-seal';
import { ConcurrentUpdateError } from '../../functions/core/errors';
import { isOpen, type Payment } from '../../functions/core/payment';
import type {
  IdempotencyRecord,
  FirstInsertResult,
  InsertResult,
  OpenDuePage,
  OpenRefundsPage,
  PaymentMessage,
  PaymentQueue,
  PaymentStore,
  RefundInsertResult,
  RefundKeyRecord,
  RefundStore,
  TenantRefundStore,
  TouchRequest,
  TransitionRequest,
} from '../../functions/core/ports';
import type { Refund, RefundChange } from '../../functions/core/refund';
import type { WorkerMessage } from '../../functions/core/processing/context';
import { assertTransition } from '../../functions/core/state-machine';
import { TEST_EPOCH } from './clock';

/** Fixed clocks start at the real date's current hour (see clock.ts), never at a calendar date. */
export const T0 = TEST_EPOCH;

export class FakeClock {
  t = T0;
  now = (): Date => new Date(this.t);
  advance(ms: number): void {
    this.t += ms;
  }
}

/** Same contract as PaymentRepository.get/transition: conditional on version + status. */
export class FakeRepository implements PaymentStore {
  readonly items = new Map<string, Payment>();
  readonly history: Array<{ id: string; version: number; status: string; action: string }> = [];
  failNextGet?: Error;
  /** Runs before a transition is applied; may change the stored item to simulate another writer. */
  beforeTransition?: (current: Payment, req: TransitionRequest) => void;

  put(p: Payment): void {
    this.items.set(p.id, structuredClone(p));
  }

  async get(id: string): Promise<Payment | undefined> {
    await Promise.resolve();
    if (this.failNextGet) {
      const e = this.failNextGet;
      this.failNextGet = undefined;
      throw e;
    }
    const p = this.items.get(id);
    return p ? structuredClone(p) : undefined;
  }

  async transition(current: Payment, req: TransitionRequest): Promise<Payment> {
    await Promise.resolve();
    assertTransition(current, req.to, { operator: req.operator });
    this.beforeTransition?.(current, req);
    const stored = this.items.get(current.id);
    const otherIntent = req.set?.intentId !== undefined && stored?.intentId !== undefined && stored.intentId !== req.set.intentId;
    if (!stored || stored.version !== current.version || stored.status !== current.status || otherIntent) {
      throw new ConcurrentUpdateError(stored ? structuredClone(stored) : undefined);
    }
    const next: Record<string, unknown> = { ...stored };
    for (const [k, v] of Object.entries(req.set ?? {})) if (v !== undefined) next[k] = structuredClone(v);
    for (const k of req.remove ?? []) delete next[k];
    next.status = req.to;
    next.version = stored.version + 1;
    next.updatedAt = req.now.toISOString();
    next.lastChange = req.change;
    if (isOpen(req.to)) {
      next.openShard = stored.openShard ?? 'open#00';
      next.dueAt = req.dueAt ?? req.now.getTime();
    } else {
      delete next.openShard;
      delete next.dueAt;
      delete next.leaseUntil;
    }
    const p = next as unknown as Payment;
    this.items.set(p.id, p);
    this.history.push({ id: p.id, version: p.version, status: p.status, action: req.change.action });
    return structuredClone(p);
  }

  async getMany(ids: readonly string[]): Promise<Map<string, Payment>> {
    await Promise.resolve();
    const out = new Map<string, Payment>();
    for (const id of ids) {
      const p = this.items.get(id);
      if (p) out.set(id, structuredClone(p));
    }
    return out;
  }

  async touch(current: Payment, req: TouchRequest): Promise<Payment> {
    await Promise.resolve();
    const stored = this.items.get(current.id);
    if (!stored || stored.version !== current.version || stored.status !== current.status || (req.dueAt !== undefined && !stored.openShard)) {
      throw new ConcurrentUpdateError(stored ? structuredClone(stored) : undefined);
    }
    const next = { ...stored, ...structuredClone(req.set ?? {}), version: stored.version + 1, updatedAt: req.now.toISOString(), lastChange: req.change } as Payment;
    if (req.dueAt !== undefined) (next as { dueAt?: number }).dueAt = req.dueAt;
    this.items.set(next.id, next);
    this.history.push({ id: next.id, version: next.version, status: next.status, action: req.change.action });
    return structuredClone(next);
  }

  postponed = 0;

  async postpone(current: Payment, dueAt: number): Promise<boolean> {
    await Promise.resolve();
    const stored = this.items.get(current.id);
    if (!stored || stored.version !== current.version || stored.status !== current.status || !stored.openShard || !((stored.dueAt ?? 0) < dueAt)) return false;
    this.items.set(stored.id, { ...stored, dueAt });
    this.postponed++;
    return true;
  }

  async recordIntent(current: Payment, intentId: string): Promise<Payment> {
    await Promise.resolve();
    const stored = this.items.get(current.id);
    if (!stored || stored.version !== current.version || stored.status !== current.status || (stored.intentId !== undefined && stored.intentId !== intentId)) {
      throw new ConcurrentUpdateError(stored ? structuredClone(stored) : undefined);
    }
    const next = { ...stored, intentId };
    this.items.set(next.id, next);
    return structuredClone(next);
  }

  openPartitions(): readonly string[] {
    return ['open#00', 'open#03'];
  }

  /** Pages like the index query: ordered by due time then id, `limit` items, a page key to go on. */
  async openDue(partition: string, dueBefore: number, startKey?: Record<string, unknown>, limit = 100): Promise<OpenDuePage> {
    await Promise.resolve();
    const order = (p: Payment) => `${String(p.dueAt ?? 0).padStart(16, '0')}#${p.id}`;
    const all = [...this.items.values()]
      .filter((p) => p.openShard === partition && (p.dueAt ?? 0) <= dueBefore)
      .filter((p) => !startKey || order(p) > String(startKey.order))
      .sort((a, b) => (order(a) < order(b) ? -1 : 1));
    const items = all.slice(0, limit).map((p) => structuredClone(p));
    const last = items.at(-1);
    return { items, scanned: items.length, ...(all.length > limit && last ? { next: { order: order(last) } } : {}) };
  }

  async getKey(_tenantId: string, _key: string): Promise<IdempotencyRecord | undefined> {
    throw new Error('not used by these tests');
  }

  async insertFirst(payment: Payment): Promise<FirstInsertResult> {
    await Promise.resolve();
    const stored = this.items.get(payment.id);
    if (stored) return { kind: 'exists', payment: structuredClone(stored) };
    this.put(payment);
    return { kind: 'created' };
  }

  async insertWithKey(_payment: Payment, _key: IdempotencyRecord, _now: number, _writeId?: string): Promise<InsertResult> {
    throw new Error('not used by these tests');
  }
}

export class FakeQueue implements PaymentQueue {
  readonly sent: Array<{ message: WorkerMessage; delaySeconds: number }> = [];
  failSends = false;
  async send(message: PaymentMessage, delaySeconds = 0): Promise<void> {
    if (this.failSends) throw new Error('SQS unavailable');
    this.sent.push({ message, delaySeconds });
  }
  take(): WorkerMessage {
    const m = this.sent.shift();
    if (!m) throw new Error('queue is empty');
    return m.message;
  }
}


/** Enough of the store for create and replay: the key and the payment, written together. */
export class KeyedStore {
  readonly keys = new Map<string, IdempotencyRecord>();
  readonly payments = new FakeRepository();
  get = (id: string) => this.payments.get(id);
  transition = () => Promise.reject(new Error('not used'));
  getKey = async (): Promise<IdempotencyRecord | undefined> => undefined;
  insertFirst = (payment: Payment): Promise<FirstInsertResult> => this.payments.insertFirst(payment);
  async insertWithKey(payment: Payment, key: IdempotencyRecord): Promise<InsertResult> {
    const held = this.keys.get(key.idempotencyKey);
    if (held) return { kind: 'conflict', key: held, payment: await this.payments.get(held.paymentId) };
    this.keys.set(key.idempotencyKey, key);
    this.payments.put(payment);
    return { kind: 'created' };
  }
}

/** A pending payment as the API creates it; override what the test is about. */
export function paymentFixture(over: Partial<Payment> = {}): Payment {
  return {
    id: 'pay_1',
    tenantId: 'tenant-1',
    idempotencyKey: 'key-1',
    generation: 0,
    requestHash: 'h',
    amountMinor: 1250,
    currency: 'EUR',
    paymentMethod: { type: 'card', token: 'tok_success' },
    metadata: { orderId: 'o-1' },
    status: 'pending',
    version: 1,
    attempt: 0,
    retryCount: 0,
    maxRetries: 3,
    createdAt: new Date(T0).toISOString(),
    updatedAt: new Date(T0).toISOString(),
    openShard: 'open#03',
    dueAt: T0 + 120_000,
    lastChange: { action: 'created', actor: 'api:tenant-1' },
    ...over,
  };
}

/** Listing cursors signed as in AWS, with a fixed test key. */
export const testCursorSeal = () => hmacCursorSeal(async () => 'test-cursor-signing-key-0123456789');

/**
 * The refund records the service owes (same contract as RefundRepository): a conditional create, updates
 * conditional on version, a sparse "open" set of pending refunds by due time.
 */
export class FakeRefundStore implements RefundStore {
  readonly items = new Map<string, Refund>();

  async get(id: string): Promise<Refund | undefined> {
    await Promise.resolve();
    const r = this.items.get(id);
    return r ? structuredClone(r) : undefined;
  }

  async create(record: Refund & { readonly dueAt: number }): Promise<{ created: boolean; record: Refund }> {
    await Promise.resolve();
    const existing = this.items.get(record.id);
    if (existing) return { created: false, record: structuredClone(existing) };
    const stored: Refund = { ...structuredClone(record), openShard: 'open#00' };
    this.items.set(record.id, stored);
    return { created: true, record: structuredClone(stored) };
  }

  async update(current: Refund, change: RefundChange & { readonly updatedAt: string }, dueAt?: number): Promise<Refund> {
    await Promise.resolve();
    const stored = this.items.get(current.id);
    if (!stored || stored.version !== current.version) throw new ConcurrentUpdateError(stored ? structuredClone(stored) : undefined);
    const next: Record<string, unknown> = { ...stored, ...structuredClone(change), version: stored.version + 1 };
    if (next.status === 'pending') {
      next.openShard = stored.openShard ?? 'open#00';
      next.dueAt = dueAt ?? stored.dueAt;
    } else {
      delete next.openShard;
      delete next.dueAt;
    }
    this.items.set(current.id, next as unknown as Refund);
    return structuredClone(next as unknown as Refund);
  }

  openPartitions(): readonly string[] {
    return ['open#00'];
  }

  async openDue(partition: string, dueBefore: number, _startKey?: Record<string, unknown>, limit = 100): Promise<OpenRefundsPage> {
    await Promise.resolve();
    const items = [...this.items.values()]
      .filter((r) => r.openShard === partition && (r.dueAt ?? 0) <= dueBefore)
      .sort((a, b) => (a.dueAt ?? 0) - (b.dueAt ?? 0))
      .slice(0, limit)
      .map((r) => structuredClone(r));
    return { items };
  }

  /** Refund records by status, for assertions. */
  byStatus(status: Refund['status']): Refund[] {
    return [...this.items.values()].filter((r) => r.status === status);
  }
}

/** Tenant refunds in memory: the key, the refund and the payment's remainder (no concurrency: see the integration test). */
export class FakeTenantRefundStore implements TenantRefundStore {
  readonly refunds = new Map<string, Refund>();
  private readonly keys = new Map<string, RefundKeyRecord>();
  constructor(private readonly payments?: FakeRepository) {}
  getRefundKey = async (_t: string, _p: string, key: string) => this.keys.get(key);
  insertTenantRefund = async (refund: Refund, key: RefundKeyRecord, capturedMinor: number): Promise<RefundInsertResult> => {
    const held = this.keys.get(key.idempotencyKey);
    if (held) return { kind: 'key_taken', key: held };
    const p = this.payments?.items.get(refund.paymentId);
    if (p) {
      const refunded = (p.amountRefundedMinor ?? 0) + refund.amountMinor;
      if (p.status !== 'success' || refunded > capturedMinor) return { kind: 'payment_refused', payment: structuredClone(p) };
      this.payments!.put({ ...p, amountRefundedMinor: refunded, version: p.version + 1 });
    }
    this.refunds.set(refund.id, refund);
    this.keys.set(key.idempotencyKey, key);
    return { kind: 'created' };
  };
  get = async (id: string) => this.refunds.get(id);
  listForPayment = async (paymentId: string) => ({ items: [...this.refunds.values()].filter((r) => r.paymentId === paymentId), nextCursor: null });
}
