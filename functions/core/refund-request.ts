/**
 * Validation of a tenant's refund request: `{ amount?, reason? }` and the required Idempotency-Key header.
 * The amount is checked like a create's (decimal places per currency, positive, finite, at most the
 * configured maximum), in the payment's currency, by money.ts; what remains to refund is checked by the
 * refund transaction, not here.
 */
import { validateIdempotencyKey } from './create-request';
import { AppError, ValidationError } from './errors';
import { canonicalJson, sha256Hex } from './fingerprint';
import { currencyExponent, toMinorUnits } from './money';

export const MAX_REFUND_REASON_LENGTH = 500;

export interface RefundRequest {
  readonly idempotencyKey: string;
  /** Minor units; absent: whatever remains to refund when the refund is made. */
  readonly amountMinor?: number;
  readonly reason?: string;
}

/** The Idempotency-Key header, required on refunds and cancels (400 IDEMPOTENCY_KEY_REQUIRED without it). */
export function requiredIdempotencyKey(header: string | undefined): string {
  if (header === undefined) {
    const message = 'Send an Idempotency-Key header: it makes a repeat of this request return the first answer';
    throw new AppError('IDEMPOTENCY_KEY_REQUIRED', message, 400, false, [{ field: 'Idempotency-Key', code: 'IDEMPOTENCY_KEY_REQUIRED', message }]);
  }
  const key = validateIdempotencyKey(header, 'Idempotency-Key');
  if (typeof key !== 'string') throw new ValidationError([key]);
  return key;
}

/** The optional `reason`: a string of at most 500 characters, refused (never cut) otherwise (null too). */
export function optionalReason(body: Record<string, unknown>): string | undefined {
  const reason = body.reason;
  if (reason === undefined) return undefined;
  if (typeof reason !== 'string' || reason.length > MAX_REFUND_REASON_LENGTH) {
    const message = `reason must be a string of at most ${MAX_REFUND_REASON_LENGTH} characters`;
    throw new AppError('INVALID_REASON', message, 400, false, [{ field: 'reason', code: 'INVALID_REASON', message }]);
  }
  return reason;
}

/** Parses the body against the payment's currency. */
export function parseRefundRequest(body: Record<string, unknown>, headerKey: string | undefined, currency: string, maxAmount: number): RefundRequest {
  const idempotencyKey = requiredIdempotencyKey(headerKey);
  const reason = optionalReason(body);
  // Absent means what remains; null is a wrong type like any other, as the document says.
  if (body.amount === undefined) return { idempotencyKey, ...(reason !== undefined ? { reason } : {}) };
  const exponent = currencyExponent(currency) ?? 2;
  const amount = toMinorUnits(body.amount, exponent, maxAmount);
  if (!amount.ok) {
    const message =
      amount.problem === 'AMOUNT_PRECISION_EXCEEDED'
        ? `amount has more decimal places than ${currency} allows (${exponent})`
        : amount.problem === 'AMOUNT_TOO_LARGE'
          ? `amount must be at most ${maxAmount}`
          : 'amount must be a positive decimal number';
    throw new ValidationError([{ field: 'amount', code: amount.problem, message, ...(amount.problem === 'AMOUNT_TOO_LARGE' ? { max: maxAmount } : {}) }]);
  }
  return { idempotencyKey, amountMinor: amount.minor, ...(reason !== undefined ? { reason } : {}) };
}

/** What makes two refund requests the same: the payment, the amount asked (or none) and the reason. */
export function refundFingerprint(paymentId: string, r: Omit<RefundRequest, 'idempotencyKey'>): string {
  return sha256Hex(canonicalJson({ paymentId, amountMinor: r.amountMinor ?? null, reason: r.reason ?? null }));
}
