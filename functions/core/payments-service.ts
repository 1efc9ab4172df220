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

export type PaymentStore = Pick<Store, 'get' | 'getKey' | 'insertFirst' | 'insertWithKey' | 'transition'>;

/**
 * How a create reaches its answer. 'read-put' (the default): one consistent GetItem of the key's first
 * payment, which carries the key (keyExpiresAt, requestHash), answers a replay; a new key is created by one
 * conditional PutItem of that payment, which, should a concurrent create have won, returns the winner's to
 * answer from. Only a key reused after it expired takes the transaction (key record + payment). The others
 * are kept for the benchmark: 'put' skips the read (a replay is the put's failed condition), 'read-tx'
 * creates a new key by the transaction, and 'transaction' answers everything from the transaction.
 */
export type CreatePath = 'read-put' | 'put' | 'read-tx' | 'transaction';

/**
 * The deployed path (CREATE_BY_TRANSACTION): both read keys made either way, and differ only in how a new
 * key is written, so a stage moves from a version that knew only key records in two deploys (README).
 */
export const deployedCreatePath = (createByTransaction: boolean): CreatePath => (createByTransaction ? 'read-tx' : 'read-put');

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
  /** Default 'read-put' (CreatePath). */
  readonly createPath?: CreatePath;
}

export type KeyState =
  | { readonly state: 'available' }
  | { readonly state: 'in_use'; readonly matches: boolean | null; readonly record: IdempotencyRecord };

/** Expired keys act as absent even before DynamoDB TTL deletes them. */
const isLive = (r: IdempotencyRecord | undefined, now: Date): r is IdempotencyRecord =>
  r !== undefined && r.expiresAt > Math.floor(now.getTime() / 1000);

const MAX_GENERATION_STEPS = 5;
/** Bounds firstFreeGeneration's doubling steps (2^20 reuses of one key). */
const MAX_GENERATION_PROBE = 2 ** 20;

/** Whether a stored payment is the one this tenant's key made and records when the key expires. */
const carriesKey = (p: Payment, tenantId: string, key: string): p is Payment & { keyExpiresAt: number } =>
  p.tenantId === tenantId && p.idempotencyKey === key && p.keyExpiresAt !== undefined;

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
   * Creates the payment for (tenant, key) or returns the one the key already holds. A key's first payment
   * is its own key record (keyExpiresAt, requestHash) and is created by one conditional write, which also
   * answers a replay (CreatePath); a later generation, after the key expired, is written together with a
   * key record in one transaction. This rests on payments never being deleted (the Payments table has no
   * TTL): a first payment that vanished while a later generation held the key would let a put make
   * another payment under a live key.
   */
  async create(tenantId: string, req: CreatePaymentRequest): Promise<{ payment: Payment; replayed: boolean }> {
    const now = this.clock();
    const nowSeconds = Math.floor(now.getTime() / 1000);
    const requestHash = requestFingerprint(req);
    // One id per create call: the store recognises a write of this call sent again after a lost answer.
    const writeId = newWriteId();
    const keyExpiresAt = nowSeconds + this.deps.idempotencyTtlSeconds;
    const path = this.deps.createPath ?? 'read-put';
    let generation = 0;
    if (path !== 'transaction') {
      let stored: Payment | undefined;
      if (path === 'read-put' || path === 'read-tx') {
        stored = await this.deps.store.get(paymentIdFor(tenantId, req.idempotencyKey, 0));
        const answer = stored && this.answerFromFirst(stored, tenantId, req.idempotencyKey, requestHash, nowSeconds);
        if (answer) return answer;
      }
      if (!stored && path !== 'read-tx') {
        const first = this.newPayment(tenantId, req, requestHash, 0, now, keyExpiresAt);
        const put = await this.deps.store.insertFirst(first, writeId);
        if (put.kind === 'created') return this.created(first);
        stored = put.payment;
        const answer = this.answerFromFirst(stored, tenantId, req.idempotencyKey, requestHash, nowSeconds);
        if (answer) return answer;
      }
      // The first payment's key has expired: the key is reused, and the new payment is a later
      // generation (a payment from before keys were kept on it goes the whole way from generation 0).
      if (stored && carriesKey(stored, tenantId, req.idempotencyKey)) generation = 1;
    }
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
      if (result.kind === 'created') return this.created(payment);
      if (result.key) return this.answerFromKey(result.key, requestHash, result.payment);
      // The key was free (or expired) but this generation's payment exists: the key is being reused
      // after expiry, so the new payment takes the generation after the expired record's (which may be
      // many reuses ahead of the payment found here), never a search from 0. Unless the key is live
      // when read again: a concurrent create holds it (its transaction landed between our two reads),
      // and this request is a replay of that one, never a second payment for the key.
      if (!result.payment) throw new AppError('INTERNAL_ERROR', 'Create conflict without a reason', 500, true);
      // A first payment whose key is live holds the key without a key record (a concurrent create put it
      // after this one's read): this request is its replay.
      const firstAnswer = this.answerFromFirst(result.payment, tenantId, req.idempotencyKey, requestHash, nowSeconds);
      if (firstAnswer) return firstAnswer;
      const current = await this.deps.store.getKey(tenantId, req.idempotencyKey);
      if (current && current.expiresAt > nowSeconds) return this.answerFromKey(current, requestHash, result.payment);
      // The expired record names the latest generation; once TTL has deleted it, the payments tell.
      generation = current
        ? Math.max(result.payment.generation, current.generation) + 1
        : await this.firstFreeGeneration(tenantId, req.idempotencyKey, result.payment.generation);
    }
    throw new ServiceUnavailableError();
  }

  /**
   * The first generation of a key with no payment, above one known to exist. A key's generations are made
   * in order (each one after the latest), so the existing ones are 0..n: steps that double find a free
   * one, and halving between it and the last one found narrows to the first (about 2 log n reads).
   */
  private async firstFreeGeneration(tenantId: string, key: string, existing: number): Promise<number> {
    const exists = async (g: number) => (await this.deps.store.get(paymentIdFor(tenantId, key, g))) !== undefined;
    let found = existing;
    let free = existing + 1;
    for (let step = 1; await exists(free); step *= 2) {
      if (step > MAX_GENERATION_PROBE) throw new ServiceUnavailableError();
      found = free;
      free = found + step * 2;
    }
    while (free - found > 1) {
      const mid = Math.floor((found + free) / 2);
      if (await exists(mid)) found = mid;
      else free = mid;
    }
    return free;
  }

  private async created(payment: Payment): Promise<{ payment: Payment; replayed: boolean }> {
    await this.enqueue(payment);
    this.metrics.count('PaymentsCreated');
    return { payment, replayed: false };
  }

  /**
   * A replay answered by the key's first payment alone: while its `keyExpiresAt` is live, the key cannot
   * have been taken by a later generation (a key is taken over only once expired), so the payment settles
   * the answer: replay, or 422 for another request. Anything else (a key past its expiry and perhaps
   * reused, a payment from before keys were kept on it) is undefined, and the transaction decides.
   */
  private answerFromFirst(
    first: Payment,
    tenantId: string,
    key: string,
    requestHash: string,
    nowSeconds: number,
  ): { payment: Payment; replayed: boolean } | undefined {
    if (!carriesKey(first, tenantId, key) || first.keyExpiresAt <= nowSeconds) return undefined;
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
    const live = await this.liveKey(tenantId, key);
    if (!live) throw new NotFoundError('idempotency_key');
    const payment = live.first ?? (await this.get(tenantId, live.record.paymentId));
    return { record: live.record, payment };
  }

  /** Whether a key is free, or in use with this request (matches) or another; creates nothing. */
  async keyState(tenantId: string, key: string, request?: Omit<CreatePaymentRequest, 'idempotencyKey'>): Promise<KeyState> {
    const live = await this.liveKey(tenantId, key);
    if (!live) return { state: 'available' };
    return { state: 'in_use', matches: request ? requestFingerprint(request) === live.record.requestHash : null, record: live.record };
  }

  /**
   * The live record of a key: a key record (written with every payment after the first, and with a
   * first payment made by the transaction), else the key's first payment while its key is live, seen as
   * the record it stands for. At most one of them is live: a later generation takes the key only after
   * the first payment's key expired.
   */
  private async liveKey(tenantId: string, key: string): Promise<{ record: IdempotencyRecord; first?: Payment } | undefined> {
    const now = this.clock();
    const [record, first] = await Promise.all([this.deps.store.getKey(tenantId, key), this.deps.store.get(paymentIdFor(tenantId, key, 0))]);
    if (isLive(record, now)) return { record, ...(first?.id === record.paymentId ? { first } : {}) };
    if (!first || !carriesKey(first, tenantId, key) || first.keyExpiresAt <= Math.floor(now.getTime() / 1000)) return undefined;
    return {
      record: {
        tenantId,
        idempotencyKey: key,
        paymentId: first.id,
        generation: 0,
        requestHash: first.requestHash,
        createdAt: first.createdAt,
        expiresAt: first.keyExpiresAt,
      },
      first,
    };
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
