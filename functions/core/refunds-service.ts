/**
 * Tenant refunds: the money of a successful payment going back, idempotently, never more than was captured.
 *
 * The promise, and what keeps it:
 *   - One refund per (tenant, payment, Idempotency-Key): the key record, the refund record and the
 *     payment's refunded amount are written in one DynamoDB transaction (TenantRefundStore). A repeat with
 *     the same request is answered from the key record (the same refund, replayed); with another request it
 *     is 422 and changes nothing.
 *   - Pending plus succeeded refunds never exceed the capture, under any concurrency: the transaction raises
 *     `amountRefundedMinor` only on condition that it stays at most the payment's amount, not on the
 *     payment's version (a success payment is terminal: refunds are its only writers, so concurrent
 *     refunds are bounded by the amount alone). The same write gives the payment a new version telling
 *     the refund (audited in the payment's chain); so do the refund's final status changes.
 *   - The refund record exists before anything is sent. The worker sends it (RefundProcessor, provider key
 *     derived from the refund id) and follows it to a final state; a refund the provider ends failed gives
 *     its amount back to the payment in the same write that marks it failed (RefundRepository), so exactly
 *     once. If the queue send fails, the reconciler's refund sweep finds the refund when it is due.
 */
import { AppError, IdempotencyKeyMismatchError, InvalidStateTransitionError, NotFoundError, ServiceUnavailableError } from './errors';
import { newRefundId } from './ids';
import { toMajorUnits } from './money';
import type { Payment } from './payment';
import { isPaymentIdShape } from './payments-service';
import { noMetrics, silentLogger, type Logger, type Metrics, type PaymentQueue, type PaymentStore, type RefundKeyRecord, type RefundPage, type TenantRefundStore } from './ports';
import { newRefund, type Refund } from './refund';
import { refundFingerprint, type RefundRequest } from './refund-request';

export interface RefundsServiceDeps {
  readonly payments: Pick<PaymentStore, 'get'>;
  readonly refunds: TenantRefundStore;
  readonly queue: PaymentQueue;
  readonly logger?: Logger;
  readonly metrics?: Metrics;
  readonly clock?: () => Date;
  /** How long a refund's Idempotency-Key answers with its refund (as for creates). */
  readonly idempotencyTtlSeconds: number;
  /** A refund whose message was lost is moved on by the reconciler after this. */
  readonly stuckAfterSeconds: number;
}

/** Error for a refund larger than what the payment has left. */
export class RefundExceedsCapturedError extends AppError {
  constructor(p: Pick<Payment, 'amountMinor' | 'currency' | 'amountRefundedMinor'>, askedMinor: number | undefined) {
    const left = p.amountMinor - (p.amountRefundedMinor ?? 0);
    const message =
      left <= 0
        ? 'Nothing is left to refund on this payment'
        : `Only ${toMajorUnits(left, p.currency)} ${p.currency} is left to refund on this payment${askedMinor !== undefined ? `; ${toMajorUnits(askedMinor, p.currency)} was asked` : ''}`;
    super('REFUND_EXCEEDS_CAPTURED', message, 409, false, [{ field: 'amount', code: 'REFUND_EXCEEDS_CAPTURED', message, max: toMajorUnits(Math.max(0, left), p.currency) }]);
  }
}

const isLive = (r: RefundKeyRecord | undefined, nowSeconds: number): r is RefundKeyRecord => r !== undefined && r.expiresAt > nowSeconds;

/** A request raced by others on the same key or payment is tried again this often before a 503. */
const MAX_ROUNDS = 4;

export class RefundsService {
  private readonly clock: () => Date;
  private readonly log: Logger;
  private readonly metrics: Metrics;

  constructor(private readonly deps: RefundsServiceDeps) {
    this.clock = deps.clock ?? (() => new Date());
    this.log = deps.logger ?? silentLogger;
    this.metrics = deps.metrics ?? noMetrics;
  }

  /** The tenant's payment, or 404 (another tenant's payment is indistinguishable from none). */
  async payment(tenantId: string, paymentId: string): Promise<Payment> {
    if (!isPaymentIdShape(paymentId)) throw new NotFoundError('payment');
    const p = await this.deps.payments.get(paymentId);
    if (!p || p.tenantId !== tenantId) throw new NotFoundError('payment');
    return p;
  }

  /** Makes the refund the request asks for, or answers with the one its key already holds. */
  async create(tenantId: string, p: Payment, req: RefundRequest): Promise<{ refund: Refund; replayed: boolean }> {
    const requestHash = refundFingerprint(p.id, req);
    let payment = p;
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const now = this.clock();
      const nowSeconds = Math.floor(now.getTime() / 1000);
      if (payment.status !== 'success') {
        // A replay still finds its refund (a success payment never changes status; this is for safety).
        const key = await this.deps.refunds.getRefundKey(tenantId, payment.id, req.idempotencyKey);
        if (isLive(key, nowSeconds)) return this.fromKey(key, requestHash);
        throw new InvalidStateTransitionError(payment.status, 'refunded', `Only a successful payment can be refunded; this one is ${payment.status}`);
      }
      const left = payment.amountMinor - (payment.amountRefundedMinor ?? 0);
      const amountMinor = req.amountMinor ?? left;
      if (amountMinor <= 0 || amountMinor > left) {
        // Nothing to make; a repeat of an earlier request still gets its refund.
        const key = await this.deps.refunds.getRefundKey(tenantId, payment.id, req.idempotencyKey);
        if (isLive(key, nowSeconds)) return this.fromKey(key, requestHash);
        this.metrics.count('RefundsExceedingCapture');
        throw new RefundExceedsCapturedError(payment, req.amountMinor);
      }
      if (!payment.intentId) throw new AppError('INTERNAL_ERROR', 'A successful payment without its intent cannot be refunded', 500, true);
      const refund = newRefund(
        {
          id: newRefundId(),
          kind: 'tenant',
          paymentId: payment.id,
          tenantId,
          intentId: payment.intentId,
          amountMinor,
          currency: payment.currency,
          reason: req.reason ?? '',
          idempotencyKey: req.idempotencyKey,
          requestHash,
        },
        now,
      );
      const due = { ...refund, dueAt: now.getTime() + this.deps.stuckAfterSeconds * 1000 };
      const key: RefundKeyRecord = {
        tenantId,
        idempotencyKey: req.idempotencyKey,
        paymentId: payment.id,
        refundId: refund.id,
        requestHash,
        createdAt: now.toISOString(),
        expiresAt: nowSeconds + this.deps.idempotencyTtlSeconds,
      };
      const result = await this.deps.refunds.insertTenantRefund(due, key, payment.amountMinor, nowSeconds);
      if (result.kind === 'created') {
        this.metrics.count('RefundsCreated');
        this.log.info('refund accepted', { paymentId: payment.id, refundId: refund.id, amountMinor });
        await this.enqueue(refund);
        return { refund: due, replayed: false };
      }
      if (result.kind === 'key_taken') return this.fromKey(result.key, requestHash);
      // The payment refused: judge again with what it holds now (another refund took what was left).
      if (!result.payment || result.payment.tenantId !== tenantId) throw new NotFoundError('payment');
      payment = result.payment;
      if (payment.status === 'success' && req.amountMinor !== undefined && req.amountMinor > payment.amountMinor - (payment.amountRefundedMinor ?? 0)) {
        const k = await this.deps.refunds.getRefundKey(tenantId, payment.id, req.idempotencyKey);
        if (isLive(k, nowSeconds)) return this.fromKey(k, requestHash);
        this.metrics.count('RefundsExceedingCapture');
        throw new RefundExceedsCapturedError(payment, req.amountMinor);
      }
    }
    throw new ServiceUnavailableError('The payment is busy with other refunds; retry with the same Idempotency-Key');
  }

  /** A live key answers: its refund, replayed, or 422 when it holds another request. */
  private async fromKey(key: RefundKeyRecord, requestHash: string): Promise<{ refund: Refund; replayed: boolean }> {
    if (key.requestHash !== requestHash) {
      this.metrics.count('IdempotencyKeyMismatches');
      throw new IdempotencyKeyMismatchError(key.paymentId, 'refund', 'Idempotency-Key');
    }
    const refund = await this.deps.refunds.get(key.refundId);
    if (!refund) throw new AppError('INTERNAL_ERROR', 'Refund key without its refund', 500, true);
    this.metrics.count('RefundsReplayed');
    return { refund, replayed: true };
  }

  /** The refund is durable before this; if the send fails, the reconciler's refund sweep sends it when due. */
  private async enqueue(refund: Refund): Promise<void> {
    try {
      await this.deps.queue.send({ refundId: refund.id, reason: 'created' });
    } catch (err) {
      this.log.warn('queue send failed; the reconciler will move the refund on', { refundId: refund.id, error: (err as Error).name });
    }
  }

  list(p: Payment, limit: number, cursor?: string): Promise<RefundPage> {
    return this.deps.refunds.listForPayment(p.id, limit, cursor);
  }
}
