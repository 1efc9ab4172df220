import { paymentView } from '../core/payment-view';
import type { PaymentsService } from '../core/payments-service';
import { apiHandler, json, parseJsonObject, type ApiRequest } from '../shared/http';
import { wiring } from '../wiring';

/**
 * POST /api/payments/{paymentID}/retry — optional body { reason }.
 * A tenant may run its own retrying payment now; re-opening a failed payment is an operator action
 * (any tenant's payment, audited with the operator, idempotent under an Idempotency-Key header).
 */
export function retryPaymentRoute(deps: { payments: PaymentsService }) {
  return async (req: ApiRequest) => {
    const body = req.body?.trim() ? parseJsonObject(req.body) : {};
    const reason = typeof body.reason === 'string' ? body.reason.slice(0, 500) : undefined;
    const payment = await deps.payments.retryNow(req.principal, req.pathParameters.paymentID ?? '', reason);
    return json(202, paymentView(payment));
  };
}

export const handler = apiHandler((req) => retryPaymentRoute({ payments: wiring().payments() })(req), { access: 'any', operatorIdempotent: true });
