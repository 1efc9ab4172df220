import { toMajorUnits } from './money';
import { TERMINAL_STATUSES, type Payment, type PaymentError, type PaymentStatus } from './payment';
import { maskToken } from './mask';
import { publicMessage } from './processing/public-messages';

const ERROR_CODE = /^[A-Z][A-Z0-9_]{0,63}$/;
const SAFE_WORD = /^[a-z][a-z_]{0,31}$/;

/**
 * lastError as the API shows it: our code, our sentence for it, and only numbers and short enum words
 * of the details. Whatever a provider wrote (messages, echoed tokens, unbounded text) is never shown,
 * even if an older version of the worker stored it.
 */
export function publicError(e: PaymentError | undefined, status?: PaymentStatus) {
  if (!e) return null;
  const code = typeof e.code === 'string' && ERROR_CODE.test(e.code) ? e.code : 'PAYMENT_ERROR';
  const details: Record<string, number | string> = {};
  for (const [k, v] of Object.entries(e.details ?? {}).slice(0, 20)) {
    if (!SAFE_WORD.test(k) && !/^[a-zA-Z]{1,32}$/.test(k)) continue;
    if ((typeof v === 'number' && Number.isFinite(v)) || (typeof v === 'string' && SAFE_WORD.test(v))) details[k] = v;
  }
  return {
    code,
    // A payment that is over never says it will be retried.
    message: publicMessage(code, status !== undefined && TERMINAL_STATUSES.includes(status)),
    ...(Object.keys(details).length ? { details } : {}),
    retryable: e.retryable === true,
    timestamp: e.timestamp,
  };
}

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
    amountRefunded: toMajorUnits(p.amountRefundedMinor ?? 0, p.currency),
    amountRefundedMinor: p.amountRefundedMinor ?? 0,
    paymentMethod: { type: p.paymentMethod.type, token: maskToken(p.paymentMethod.token) },
    metadata: p.metadata,
    retryCount: p.retryCount,
    maxRetries: p.maxRetries,
    lastError: publicError(p.lastError, p.status),
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
    lastError: publicError(p.lastError, p.status),
    updatedAt: p.updatedAt,
    processedAt: p.processedAt ?? null,
    nextRetryAt: p.status === 'retrying' && p.nextAttemptAt ? new Date(p.nextAttemptAt).toISOString() : null,
  };
}
