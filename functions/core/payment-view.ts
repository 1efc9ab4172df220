import { toMajorUnits } from './money';
import type { Payment } from './payment';
import { maskToken } from './mask';

/** The seed's Payment response shape, plus `amountMinor` (exact integer minor units). The card token is shown masked. */
export function paymentView(p: Payment) {
  return {
    id: p.id,
    paymentID: p.id,
    idempotencyKey: p.idempotencyKey,
    status: p.status,
    amount: toMajorUnits(p.amountMinor, p.currency),
    amountMinor: p.amountMinor,
    currency: p.currency,
    paymentMethod: { type: p.paymentMethod.type, token: maskToken(p.paymentMethod.token) },
    metadata: p.metadata,
    retryCount: p.retryCount,
    maxRetries: p.maxRetries,
    lastError: p.lastError ?? null,
    createdAt: p.createdAt,
    updatedAt: p.updatedAt,
    processedAt: p.processedAt ?? null,
    nextRetryAt: p.status === 'retrying' && p.nextAttemptAt ? new Date(p.nextAttemptAt).toISOString() : null,
    version: p.version,
  };
}

export function statusView(p: Payment) {
  return {
    paymentID: p.id,
    status: p.status,
    retryCount: p.retryCount,
    maxRetries: p.maxRetries,
    lastError: p.lastError ?? null,
    updatedAt: p.updatedAt,
    processedAt: p.processedAt ?? null,
    nextRetryAt: p.status === 'retrying' && p.nextAttemptAt ? new Date(p.nextAttemptAt).toISOString() : null,
  };
}
