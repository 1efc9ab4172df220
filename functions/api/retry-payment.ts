import { AppError } from '../core/errors';
import { paymentView } from '../core/payment-view';
import type { PaymentsService } from '../core/payments-service';
import { apiHandler, json, parseJsonObject, type ApiRequest } from '../shared/http';
import { wiring } from '../wiring';

export const MAX_REASON_LENGTH = 500;

/** The optional `reason`: a string of at most 500 characters, refused (never cut) otherwise. */
function reasonOf(body: Record<string, unknown>): string | undefined {
  const reason = body.reason;
  if (reason === undefined) return undefined;
  if (typeof reason !== 'string' || reason.length > MAX_REASON_LENGTH) {
    const message = `reason must be a string of at most ${MAX_REASON_LENGTH} characters`;
    throw new AppError('INVALID_REASON', message, 400, false, [{ field: 'reason', code: 'INVALID_REASON', message }]);
  }
  return reason;
}

/**
 * POST /api/payments/{paymentID}/retry — optional body { reason }.
 * A tenant may run its own retrying payment now; re-opening a failed payment is an operator action
 * (any tenant's payment, audited with the operator). Either is idempotent under an Idempotency-Key header.
 */
export function retryPaymentRoute(deps: { payments: PaymentsService }) {
  return async (req: ApiRequest) => {
    const body = req.body?.trim() ? parseJsonObject(req) : {};
    const payment = await deps.payments.retryNow(req.principal, req.pathParameters.paymentID ?? '', reasonOf(body));
    return json(202, paymentView(payment));
  };
}

export const handler = apiHandler((req) => retryPaymentRoute({ payments: wiring().payments() })(req), { access: 'any', idempotentAction: true });
