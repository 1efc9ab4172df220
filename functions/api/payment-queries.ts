import type { ChargeRules } from '../core/ports/payment-provider';
import type { CursorSeal } from '../core/cursor-seal';
import { parseCreatePaymentRequest, resolveIdempotencyKey, validateIdempotencyKey } from '../core/create-request';
import { AppError, ValidationError } from '../core/errors';
import { listPayments, parseListParams } from '../core/list-payments';
import { paymentView, statusView } from '../core/payment-view';
import type { PaymentsService } from '../core/payments-service';
import type { PaymentLister } from '../core/ports';
import { apiHandler, json, parseJsonObject, type ApiRequest, type ApiResponse } from '../shared/http';
import { wiring } from '../wiring';

function checked(key: ReturnType<typeof validateIdempotencyKey>): string {
  if (typeof key !== 'string') throw new ValidationError([key]);
  return key;
}

/** GET payment, GET status, GET key record, POST validate-key, GET the tenant's payments. */
/** `chargeRules`: as for create, so validate-key calls valid exactly what create would accept. */
export function paymentQueriesRoute(deps: { payments: PaymentsService; lister: PaymentLister; cursors: CursorSeal; maxAmount: number; chargeRules?: ChargeRules }) {
  return async (req: ApiRequest): Promise<ApiResponse> => {
    const route = `${req.method} ${req.resource}`;
    switch (route) {
      case 'GET /api/payments': {
        const page = await listPayments(deps.lister, deps.cursors, req.tenantId, parseListParams(req.query));
        return json(200, { items: page.items.map(paymentView), nextCursor: page.nextCursor, count: page.items.length });
      }
      case 'GET /api/payments/{paymentID}':
        return json(200, paymentView(await deps.payments.get(req.tenantId, req.pathParameters.paymentID ?? '')));
      case 'GET /api/payments/{paymentID}/status':
        return json(200, statusView(await deps.payments.get(req.tenantId, req.pathParameters.paymentID ?? '')));
      case 'GET /api/payments/key/{idempotencyKey}': {
        const { record, payment } = await deps.payments.keyRecord(req.tenantId, checked(validateIdempotencyKey(req.pathParameters.idempotencyKey)));
        return json(200, {
          key: record.idempotencyKey,
          paymentID: record.paymentId,
          status: payment.status,
          createdAt: record.createdAt,
          expiresAt: new Date(record.expiresAt * 1000).toISOString(),
          requestHash: record.requestHash,
        });
      }
      case 'POST /api/payments/validate-key': {
        const body = parseJsonObject(req);
        // The key comes as for a create: body or header, and both must agree.
        const key = checked(resolveIdempotencyKey(body.idempotencyKey, req.headers['idempotency-key']));
        // With the payment fields present, the request is compared with the one that holds the key.
        const hasRequest = ['amount', 'currency', 'paymentMethod', 'metadata'].some((f) => body[f] !== undefined);
        const request = hasRequest
          ? parseCreatePaymentRequest({ ...body, idempotencyKey: key }, undefined, {
              maxAmount: deps.maxAmount,
              ...(deps.chargeRules ? { provider: deps.chargeRules } : {}),
            })
          : undefined;
        const state = await deps.payments.keyState(req.tenantId, key, request);
        if (state.state === 'available') return json(200, { idempotencyKey: key, valid: true, status: 'available' });
        return json(200, {
          idempotencyKey: key,
          valid: state.matches !== false,
          status: state.matches === null ? 'in_use' : state.matches ? 'in_use_matching' : 'in_use_mismatch',
          paymentID: state.record.paymentId,
          expiresAt: new Date(state.record.expiresAt * 1000).toISOString(),
        });
      }
      default:
        throw new AppError('ROUTE_NOT_FOUND', `No route for ${route}`, 404);
    }
  };
}

export const handler = apiHandler((req) => {
  const w = wiring();
  return paymentQueriesRoute({ payments: w.payments(), lister: w.store(), cursors: w.cursors(), maxAmount: w.config().maxAmount, chargeRules: w.chargeRules })(req);
});
