import { parseRefundRequest } from '../core/refund-request';
import { refundView } from '../core/refund-view';
import type { RefundsService } from '../core/refunds-service';
import { AppError } from '../core/errors';
import { apiHandler, json, parseJsonObject, type ApiRequest, type ApiResponse } from '../shared/http';
import { wiring } from '../wiring';

const MAX_PAGE = 100;

function pageParams(query: Record<string, string>): { limit: number; cursor?: string } {
  const limit = query.limit === undefined ? MAX_PAGE : Number(query.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) {
    const message = `limit must be an integer from 1 to ${MAX_PAGE}`;
    throw new AppError('INVALID_QUERY_PARAMETER', message, 400, false, [{ field: 'limit', code: 'INVALID_QUERY_PARAMETER', message }]);
  }
  return { limit, ...(query.cursor !== undefined ? { cursor: query.cursor } : {}) };
}

/** POST /api/payments/{paymentID}/refunds (Idempotency-Key required) and GET the payment's refunds. */
export function refundsRoute(deps: { refunds: RefundsService; maxAmount: number }) {
  return async (req: ApiRequest): Promise<ApiResponse> => {
    const payment = await deps.refunds.payment(req.tenantId, req.pathParameters.paymentID ?? '');
    if (req.method === 'GET') {
      const { limit, cursor } = pageParams(req.query);
      const page = await deps.refunds.list(payment, limit, cursor);
      return json(200, { items: page.items.map(refundView), nextCursor: page.nextCursor, count: page.items.length });
    }
    const body = req.body?.trim() ? parseJsonObject(req) : {};
    const request = parseRefundRequest(body, req.headers['idempotency-key'], payment.currency, deps.maxAmount);
    const { refund, replayed } = await deps.refunds.create(req.tenantId, payment, request);
    const headers: Record<string, string> = { Location: `/api/payments/${encodeURIComponent(payment.id)}/refunds` };
    if (replayed) headers['Idempotent-Replayed'] = 'true';
    return json(201, refundView(refund), headers);
  };
}

export const handler = apiHandler((req) => refundsRoute({ refunds: wiring().refundsService(), maxAmount: wiring().config().maxAmount })(req));
