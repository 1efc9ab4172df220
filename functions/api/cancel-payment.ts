import type { CancelService } from '../core/cancel-service';
import { paymentView } from '../core/payment-view';
import { optionalReason, requiredIdempotencyKey } from '../core/refund-request';
import { apiHandler, json, parseJsonObject, type ApiRequest } from '../shared/http';
import { wiring } from '../wiring';

/**
 * POST /api/payments/{paymentID}/cancel — optional body { reason }, Idempotency-Key required (a repeat
 * gets the first response: the action runs once per key, see apiHandler's idempotentAction).
 */
export function cancelPaymentRoute(deps: { cancels: CancelService }) {
  return async (req: ApiRequest) => {
    requiredIdempotencyKey(req.headers['idempotency-key']);
    const body = req.body?.trim() ? parseJsonObject(req) : {};
    const payment = await deps.cancels.cancel(req.tenantId, req.pathParameters.paymentID ?? '', optionalReason(body));
    return json(200, paymentView(payment));
  };
}

export const handler = apiHandler(async (req) => cancelPaymentRoute({ cancels: await wiring().cancelService() })(req), { idempotentAction: true });
