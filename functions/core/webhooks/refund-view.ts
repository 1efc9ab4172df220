/**
 * A tenant refund as the API shows it, for refund events. The tenant refunds API is built alongside
 * (issue 18): when both land, that API's view and this one must be the same function, kept here or there.
 */
import { toMajorUnits } from '../money';
import type { Refund } from '../refund';

export function refundView(r: Refund) {
  return {
    id: r.id,
    paymentID: r.paymentId,
    amount: toMajorUnits(r.amountMinor, r.currency),
    amountMinor: r.amountMinor,
    currency: r.currency,
    status: r.status,
    reason: r.reason,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    version: r.version,
  };
}
