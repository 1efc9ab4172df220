/**
 * Payment use cases behind the API. Dependencies come in through the constructor, so tests swap
 * them without module mocking.
 */
import { requestFingerprint, type CreatePaymentRequest } from './create-request';
import { AppError, IdempotencyKeyMismatchError, InvalidStateTransitionError, NotFoundError, ServiceUnavailableError } from './errors';
import { paymentIdFor, requestId as newWriteId } from './ids';
import type { Payment } from './payment';
import { actorOf, ForbiddenError, type Principal } from './principal';
import { noMetrics, silentLogger, type IdempotencyRecord, type Logger, type Metrics, type PaymentQueue, type PaymentStore as Store } from './ports';
import { canReopen } from './state-machine';

export type PaymentStore = Pick<Store, 'get' | 'getKey' | 'insertWithKey' | 'transition'>;

export interface PaymentsServiceDeps {
  readonly store: PaymentStore;
  readonly queue: PaymentQueue;
  /** Default: silent. */
  readonly logger?: Logger;
  /** Default: none. */
  readonly metrics?: Metrics;
  readonly clock?: () => Date;
  readonly idempotencyTtlSeconds: number;
  readonly maxRetries: number;
  /** A pending payment not picked up by then is re-queued by the reconciler. */
  readonly stuckAfterSeconds: number;
  /**
   * Default true: a create first reads the payment its key would have created (one consistent GetItem
   * of one item) and answers a replay from it; only a key never seen (or expired) goes on to the
   * transaction. False: every create goes straight to the transaction (the benchmark's other variant).
   */
  readonly replayByRead?: boolean;
}

export type KeyState =
  | { readonly state: 'available' }
  | { readonly state: 'in_use'; readonly matches: boolean | null; readonly record: IdempotencyRecord };

/** Expired keys act as absent even before DynamoDB TTL deletes them. */
const isLive = (r: IdempotencyRecord | undefined, now: Date): r is IdempotencyRecord =>
  r !== undefined && r.expiresAt > Math.floor(now.getTime() / 1000);

const MAX_GENERATION_STEPS = 5;

/** How often an operator may re-open one failed payment; each re-open is a new provider intent. */
export const MAX_REOPENS = 3;

/**
 * Ids this API ever hands out are short and URL-safe; anything else cannot name a payment, so it is a
 * 404 without a read (DynamoDB rejects keys over 2,048 bytes with a validation error, which was a 500).
 */
const PAYMENT_ID_SHAPE = /^[A-Za-z0-9_-]{1,128}$/;
export const isPaymentIdShape = (id: string): boolean => PAYMENT_ID_SHAPE.test(id);

export class PaymentsService {
  private readonly clock: () => Date;
  private readonly log: Logger;
  private readonly metrics: Metrics;

  constructor(private readonly deps: PaymentsServiceDeps) {
    this.clock = deps.clock ?? (() => new Date());
    this.log = deps.logger ?? silentLogger;
    this.metrics = deps.metrics ?? noMetrics;
  }

  /**
   * Creates the payment for (tenant, key) or returns the one the key already holds. One transaction
   * writes key and payment; a replay is answered from that transaction's failed conditions.
   */
  async create(tenantId: string, req: CreatePaymentRequest): Promise<{ payment: Payment; replayed: boolean }> {
    const now = this.clock();
    const nowSeconds = Math.floor(now.getTime() / 1000);
    const requestHash = requestFingerprint(req);
    // One id per create call: the store derives the write's ClientRequestToken from it and the request.
    const writeId = newWriteId();
    const keyExpiresAt = nowSeconds + this.deps.idempotencyTtlSeconds;
    if (this.deps.replayByRead !== false) {
      const replay = await this.replayFromPayment(tenantId, req.idempotencyKey, requestHash, nowSeconds);
      if (replay) return replay;
    }
    let generation = 0;
    for (let step = 0; step < MAX_GENERATION_STEPS; step++) {
      const payment = this.newPayment(tenantId, req, requestHash, generation, now, keyExpiresAt);
      const key: IdempotencyRecord = {
        tenantId,
        idempotencyKey: req.idempotencyKey,
        paymentId: payment.id,
        generation,
        requestHash,
        createdAt: now.toISOString(),
        expiresAt: keyExpiresAt,
      };
      const result = await this.deps.store.insertWithKey(payment, key, nowSeconds, writeId);
      if (result.kind === 'created') {
        await this.enqueue(payment);
        this.metrics.count('PaymentsCreated');
        return { payment, replayed: false };
      }
      if (result.key) return this.answerFromKey(result.key, requestHash, result.payment);
      // The key was free (or expired) but this generation's payment exists: the key is being reused
      // after expiry, so the new payment takes the generation after the expired record's (which may be
      // many reuses ahead of the payment found here), never a search from 0. Unless the key is live
      // when read again: a concurrent create holds it (its transaction landed between our two reads),
      // and this request is a replay of that one, never a second payment for the key.
      if (!result.payment) throw new AppError('INTERNAL_ERROR', 'Create conflict without a reason', 500, true);
      const current = await this.deps.store.getKey(tenantId, req.idempotencyKey);
      if (current && current.expiresAt > nowSeconds) return this.answerFromKey(current, requestHash, result.payment);
      generation = Math.max(result.payment.generation, current?.generation ?? 0) + 1;
    }
    throw new ServiceUnavailableError();
  }

  /**
   * The common replay in one single-item read: the payment of the key's first generation. Its
   * `keyExpiresAt` says whether the key record it was written with is still live; while it is, that
   * record cannot have been replaced (a key is taken over only once expired), so the payment alone
   * settles the answer: replay, or 422 for another request. Anything else (no such payment, a key past
   * its expiry and perhaps reused, a payment from before `keyExpiresAt` was kept) returns undefined and
   * the create goes on to the transaction, which decides it as before.
   */
  private async replayFromPayment(
    tenantId: string,
    key: string,
    requestHash: string,
    nowSeconds: number,
  ): Promise<{ payment: Payment; replayed: boolean } | undefined> {
    const first = await this.deps.store.get(paymentIdFor(tenantId, key, 0));
    if (!first || first.tenantId !== tenantId || first.idempotencyKey !== key) return undefined;
    if (first.keyExpiresAt === undefined || first.keyExpiresAt <= nowSeconds) return undefined;
    if (first.requestHash !== requestHash) {
      this.metrics.count('IdempotencyKeyMismatches');
      throw new IdempotencyKeyMismatchError(first.id);
    }
    this.metrics.count('PaymentsReplayed');
    return { payment: first, replayed: true };
  }

  /** A live key answers a create: its payment, replayed, or 422 when it holds another request. */
  private async answerFromKey(key: IdempotencyRecord, requestHash: string, seen: Payment | undefined): Promise<{ payment: Payment; replayed: boolean }> {
    if (key.requestHash !== requestHash) {
      this.metrics.count('IdempotencyKeyMismatches');
      throw new IdempotencyKeyMismatchError(key.paymentId);
    }
    const existing = seen?.id === key.paymentId ? seen : await this.deps.store.get(key.paymentId);
    if (!existing) throw new AppError('INTERNAL_ERROR', 'Idempotency record without payment', 500, true);
    this.metrics.count('PaymentsReplayed');
    return { payment: existing, replayed: true };
  }

  private newPayment(tenantId: string, req: CreatePaymentRequest, requestHash: string, generation: number, now: Date, keyExpiresAt: number): Payment {
    const iso = now.toISOString();
    const id = paymentIdFor(tenantId, req.idempotencyKey, generation);
    return {
      id,
      tenantId,
      idempotencyKey: req.idempotencyKey,
      generation,
      requestHash,
      keyExpiresAt,
      amountMinor: req.amountMinor,
      currency: req.currency,
      paymentMethod: req.paymentMethod,
      metadata: req.metadata,
      status: 'pending',
      version: 1,
      attempt: 0,
      retryCount: 0,
      maxRetries: this.deps.maxRetries,
      createdAt: iso,
      updatedAt: iso,
      versionAt: [now.getTime()],
      dueAt: now.getTime() + this.deps.stuckAfterSeconds * 1000,
      lastChange: { action: 'created', actor: `api:${tenantId}` },
    };
  }

  /** The payment is durable before this; if the send fails, the reconciler re-queues it. */
  private async enqueue(payment: Payment): Promise<void> {
    try {
      await this.deps.queue.send({ paymentId: payment.id, reason: 'created' });
    } catch (err) {
      this.log.warn('queue send failed; the reconciler will re-queue the payment', { paymentId: payment.id, error: (err as Error).name });
    }
  }

  /** A payment of this tenant, or 404 (another tenant's payment is indistinguishable from none). */
  async get(tenantId: string, paymentId: string): Promise<Payment> {
    if (!isPaymentIdShape(paymentId)) throw new NotFoundError('payment');
    const p = await this.deps.store.get(paymentId);
    if (!p || p.tenantId !== tenantId) throw new NotFoundError('payment');
    return p;
  }

  async keyRecord(tenantId: string, key: string): Promise<{ record: IdempotencyRecord; payment: Payment }> {
    const record = await this.deps.store.getKey(tenantId, key);
    if (!isLive(record, this.clock())) throw new NotFoundError('idempotency_key');
    const payment = await this.get(tenantId, record.paymentId);
    return { record, payment };
  }

  /** Whether a key is free, or in use with this request (matches) or another; creates nothing. */
  async keyState(tenantId: string, key: string, request?: Omit<CreatePaymentRequest, 'idempotencyKey'>): Promise<KeyState> {
    const record = await this.deps.store.getKey(tenantId, key);
    if (!isLive(record, this.clock())) return { state: 'available' };
    return { state: 'in_use', matches: request ? requestFingerprint(request) === record.requestHash : null, record };
  }

  /**
   * Runs a retrying payment now (its tenant or an operator), or re-opens a failed one whose last error
   * was retryable (operators only, at most MAX_REOPENS times, each time on a new provider intent).
   * Anything else is an invalid transition. The caller is recorded as the actor.
   */
  async retryNow(caller: Principal, paymentId: string, reason: string | undefined): Promise<Payment> {
    const p = caller.kind === 'tenant' ? await this.get(caller.tenantId, paymentId) : await this.anyTenant(paymentId);
    const actor = actorOf(caller);
    if (p.status === 'retrying') {
      await this.deps.queue.send({ paymentId: p.id, reason: 'operator_retry' });
      this.log.info('retry now requested', { paymentId: p.id, actor, reason });
      return p;
    }
    if (canReopen(p)) {
      if (caller.kind !== 'operator') throw new ForbiddenError('OPERATOR_ONLY', 'Re-opening a failed payment needs an operator API key');
      const reopens = p.reopenCount ?? 0;
      if (reopens >= MAX_REOPENS) {
        throw new AppError('REOPEN_LIMIT_REACHED', `This payment was already re-opened ${reopens} times, the most allowed`, 409, false, [
          { code: 'REOPEN_LIMIT_REACHED', message: `re-opened ${reopens} of at most ${MAX_REOPENS} times` },
        ]);
      }
      const now = this.clock();
      const reopened = await this.deps.store.transition(p, {
        to: 'retrying',
        operator: true,
        now,
        change: { action: 'operator_reopen', actor, reason: reason ?? 'manual retry' },
        // A re-opened payment gets a fresh retry budget on top of the attempts already made, and a new
        // provider intent: its previous intent was cancelled before it failed and can never succeed.
        set: {
          maxRetries: p.retryCount + this.deps.maxRetries,
          nextAttemptAt: now.getTime(),
          intentSeq: (p.intentSeq ?? 0) + 1,
          reopenCount: reopens + 1,
        },
        remove: ['intentId'],
        dueAt: now.getTime() + this.deps.stuckAfterSeconds * 1000,
      });
      await this.deps.queue.send({ paymentId: p.id, reason: 'operator_retry' });
      return reopened;
    }
    throw new InvalidStateTransitionError(
      p.status,
      'processing',
      p.status === 'failed'
        ? 'Payment failed with a non-retryable error and cannot be retried'
        : `Only retrying payments (or failed ones with a retryable error) can be retried; this one is ${p.status}`,
    );
  }

  /** Operators act across tenants; the id is still checked for shape first. */
  private async anyTenant(paymentId: string): Promise<Payment> {
    if (!isPaymentIdShape(paymentId)) throw new NotFoundError('payment');
    const p = await this.deps.store.get(paymentId);
    if (!p) throw new NotFoundError('payment');
    return p;
  }
}
