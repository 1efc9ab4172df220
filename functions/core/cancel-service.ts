/**
 * The tenant's cancel of a payment that has not been charged: `pending` or `retrying` only.
 *
 * Never both canceled and charged: the provider intent is cancelled first (a cancelled intent can never
 * succeed), and the payment is written canceled only on the version read, so a worker that claimed it in
 * between (the only way to confirm) makes the write fail, and a canceled payment can no longer be claimed.
 * If the provider says the intent already succeeded, the payment becomes a success and the answer is 409
 * with that status. A `processing` payment is mid-attempt: 409, retryable, with Retry-After.
 */
import { AppError, InvalidStateTransitionError, NotFoundError, ServiceUnavailableError } from './errors';
import type { Payment } from './payment';
import { isPaymentIdShape } from './payments-service';
import { noMetrics, type Metrics, type PaymentStore } from './ports';
import { OutcomeUnresolvedError, type ProcessResult } from './processing/context';

/** Seconds a client waits before asking again about a payment that is mid-attempt. */
export const CANCEL_RETRY_AFTER_SECONDS = 5;

export interface CancelServiceDeps {
  readonly store: Pick<PaymentStore, 'get'>;
  readonly processor: { cancel(p: Payment, actor: string, reason: string): Promise<ProcessResult> };
  readonly metrics?: Metrics;
}

class PaymentBusyError extends AppError {
  constructor(status: string) {
    super('PAYMENT_PROCESSING', `The payment is ${status}: an attempt may be charging it now; ask again shortly`, 409, true, [
      { field: 'status', code: 'PAYMENT_PROCESSING', message: `payment is ${status}`, from: status, to: 'canceled' },
    ], CANCEL_RETRY_AFTER_SECONDS);
  }
}

export class CancelService {
  private readonly metrics: Metrics;

  constructor(private readonly deps: CancelServiceDeps) {
    this.metrics = deps.metrics ?? noMetrics;
  }

  async cancel(tenantId: string, paymentId: string, reason: string | undefined): Promise<Payment> {
    const p = await this.payment(tenantId, paymentId);
    // A canceled payment is final like any other: a repeat under the same key is answered from the
    // action-idempotency record before this runs; another key is a new request and 409.
    this.refuseUnlessCancelable(p);
    let result: ProcessResult;
    try {
      result = await this.deps.processor.cancel(p, `api:${tenantId}`, reason ?? 'canceled by the tenant');
    } catch (err) {
      if (err instanceof OutcomeUnresolvedError) throw new ServiceUnavailableError('The provider could not cancel the payment now; retry with the same Idempotency-Key');
      throw err;
    }
    const after = await this.payment(tenantId, paymentId);
    if (after.status === 'canceled') {
      if (result.kind === 'settled') this.metrics.count('PaymentsCanceled');
      return after;
    }
    if (after.status === 'success') {
      throw new InvalidStateTransitionError('success', 'canceled', 'The payment had already succeeded at the provider: it is a success, not canceled');
    }
    this.refuseUnlessCancelable(after);
    // Still pending or retrying: the provider is processing its intent (it cannot be cancelled until that ends).
    throw new PaymentBusyError(after.status);
  }

  private refuseUnlessCancelable(p: Payment): void {
    if (p.status === 'processing') throw new PaymentBusyError(p.status);
    if (p.status !== 'pending' && p.status !== 'retrying') throw new InvalidStateTransitionError(p.status, 'canceled', `Payment is ${p.status}, a final status`);
  }

  private async payment(tenantId: string, paymentId: string): Promise<Payment> {
    if (!isPaymentIdShape(paymentId)) throw new NotFoundError('payment');
    const p = await this.deps.store.get(paymentId);
    if (!p || p.tenantId !== tenantId) throw new NotFoundError('payment');
    return p;
  }
}
