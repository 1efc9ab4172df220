import { toMajorUnits } from './money';
import type { Refund } from './refund';

/** A refund as the API shows it (tenant refunds). Provider ids, keys and errors stay inside. */
export function refundView(r: Refund) {
  return {
    id: r.id,
    paymentID: r.paymentId,
    amount: toMajorUnits(r.amountMinor, r.currency),
    amountMinor: r.amountMinor,
    currency: r.currency,
    status: r.status,
    reason: r.reason === '' ? null : r.reason,
    // Only a provider reason word (insufficient_funds, ...), never free text.
    failureReason: r.status === 'failed' ? (/^[a-z_]{1,40}$/.test(r.failureReason ?? '') ? r.failureReason : 'failed') : null,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    version: r.version,
  };
}
