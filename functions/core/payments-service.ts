/**
 * Payment use cases behind the API. Dependencies come in through the constructor, so tests swap
 * them without module mocking.
 */
import { requestFingerprint, type CreatePaymentRequest } from './create-request';
import { AppError, IdempotencyKeyMismatchError, InvalidStateTransitionError, NotFoundError, ServiceUnavailableError } from './errors';
import { paymentIdFor } from './ids';
import type { Payment } from './payment';
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
}

export type KeyState =
  | { readonly state: 'available' }
  | { readonly state: 'in_use'; readonly matches: boolean | null; readonly record: IdempotencyRecord };

/** Expired keys act as absent even before DynamoDB TTL deletes them. */
const isLive = (r: IdempotencyRecord | undefined, now: Date): r is IdempotencyRecord =>
  r !== undefined && r.expiresAt > Math.floor(now.getTime() / 1000);

const MAX_GENERATION_STEPS = 5;

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
    let generation = 0;
    for (let step = 0; step < MAX_GENERATION_STEPS; step++) {
      const payment = this.newPayment(tenantId, req, requestHash, generation, now);
      const key: IdempotencyRecord = {
        tenantId,
        idempotencyKey: req.idempotencyKey,
        paymentId: payment.id,
        generation,
        requestHash,
        createdAt: now.toISOString(),
        expiresAt: nowSeconds + this.deps.idempotencyTtlSeconds,
      };
      const result = await this.deps.store.insertWithKey(payment, key, nowSeconds);
      if (result.kind === 'created') {
        await this.enqueue(payment);
        this.metrics.count('PaymentsCreated');
        return { payment, replayed: false };
      }
      if (result.key) {
        if (result.key.requestHash !== requestHash) {
          this.metrics.count('IdempotencyKeyMismatches');
          throw new IdempotencyKeyMismatchError(result.key.paymentId);
        }
        const existing =
          result.payment?.id === result.key.paymentId ? result.payment : await this.deps.store.get(result.key.paymentId);
        if (!existing) throw new AppError('INTERNAL_ERROR', 'Idempotency record without payment', 500, true);
        this.metrics.count('PaymentsReplayed');
        return { payment: existing, replayed: true };
      }
      // The key was free (or expired) but this generation's payment exists: the key is being reused
      // after expiry, so the new payment takes the next generation.
      if (!result.payment) throw new AppError('INTERNAL_ERROR', 'Create conflict without a reason', 500, true);
      generation = result.payment.generation + 1;
    }
    throw new ServiceUnavailableError();
  }

  private newPayment(tenantId: string, req: CreatePaymentRequest, requestHash: string, generation: number, now: Date): Payment {
    const iso = now.toISOString();
    const id = paymentIdFor(tenantId, req.idempotencyKey, generation);
    return {
      id,
      tenantId,
      idempotencyKey: req.idempotencyKey,
      generation,
      requestHash,
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
   * Runs a retrying payment now, or re-opens a failed one whose last error was retryable (an audited
   * operator action). Anything else is an invalid transition.
   */
  async retryNow(tenantId: string, paymentId: string, reason: string | undefined): Promise<Payment> {
    const p = await this.get(tenantId, paymentId);
    const actor = `operator:${tenantId}`;
    if (p.status === 'retrying') {
      await this.deps.queue.send({ paymentId: p.id, reason: 'operator_retry' });
      this.log.info('operator retry requested', { paymentId: p.id, actor, reason });
      return p;
    }
    if (canReopen(p)) {
      const now = this.clock();
      const reopened = await this.deps.store.transition(p, {
        to: 'retrying',
        operator: true,
        now,
        change: { action: 'operator_reopen', actor, reason: reason ?? 'manual retry' },
        // A re-opened payment gets a fresh retry budget on top of the attempts already made, and a new
        // provider intent: its previous intent was cancelled before it failed and can never succeed.
        set: { maxRetries: p.retryCount + this.deps.maxRetries, nextAttemptAt: now.getTime(), intentSeq: (p.intentSeq ?? 0) + 1 },
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
}
