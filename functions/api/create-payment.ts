import { parseCreatePaymentRequest } from '../core/create-request';
import { paymentView } from '../core/payment-view';
import type { PaymentsService } from '../core/payments-service';
import type { ChargeRules } from '../core/ports/payment-provider';
import { apiHandler, json, parseJsonObject, type ApiRequest } from '../shared/http';
import { wiring } from '../wiring';

/** POST /api/payments/process. `chargeRules`: what the provider can take, refused here with a 400 otherwise. */
export function createPaymentRoute(deps: { payments: PaymentsService; maxAmount: number; chargeRules?: ChargeRules }) {
  return async (req: ApiRequest) => {
    const body = parseJsonObject(req);
    const request = parseCreatePaymentRequest(body, req.headers['idempotency-key'], {
      maxAmount: deps.maxAmount,
      ...(deps.chargeRules ? { provider: deps.chargeRules } : {}),
    });
    const { payment, replayed } = await deps.payments.create(req.tenantId, request);
    // A replay answers with the same status code, shape and Location as the first response.
    const headers: Record<string, string> = { Location: `/api/payments/${encodeURIComponent(payment.id)}` };
    if (replayed) headers['Idempotent-Replayed'] = 'true';
    return json(201, paymentView(payment), headers);
  };
}

export const handler = apiHandler((req) => {
  const w = wiring();
  return createPaymentRoute({ payments: w.payments(), maxAmount: w.config().maxAmount, chargeRules: w.chargeRules })(req);
});
