/**
 * Typed errors with stable codes. The HTTP layer maps them to `{ error: {...} }` responses in one place;
 * anything that is not an AppError becomes a 500 INTERNAL_ERROR with no internal detail.
 */
export interface FieldError {
  readonly field: string;
  readonly code: string;
  readonly message: string;
  /** AMOUNT_TOO_LARGE: the largest accepted amount, in major units. */
  readonly max?: number;
}

/**
 * The one shape of `error.details` in every response: an array of these (absent when there is nothing
 * to add). `field` names the request field at fault; the other optional members carry the context of
 * one code (the payment that holds a key, the states of a refused transition).
 */
export interface ErrorDetail {
  readonly code: string;
  readonly message: string;
  readonly field?: string;
  readonly paymentID?: string;
  readonly from?: string;
  readonly to?: string;
  readonly max?: number;
  /** AMOUNT_BELOW_MINIMUM: the provider's minimum charge, in minor units. */
  readonly minimumMinor?: number;
  /** AMOUNT_PRECISION_EXCEEDED for the provider's unit: amounts must be a multiple of this. */
  readonly stepMinor?: number;
}

/** Seconds a client should wait before retrying a retryable error, unless the error says otherwise. */
export const DEFAULT_RETRY_AFTER_SECONDS = 1;

export class AppError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly httpStatus: number,
    readonly retryable = false,
    readonly details?: readonly ErrorDetail[],
    /** Only for retryable errors: the `Retry-After` the response carries. */
    readonly retryAfterSeconds = retryable ? DEFAULT_RETRY_AFTER_SECONDS : undefined,
  ) {
    super(message);
    this.name = 'AppError';
  }
}

/** One or more invalid fields; the first field's code is the error code. */
export class ValidationError extends AppError {
  constructor(readonly fieldErrors: FieldError[], httpStatus = 400) {
    super(fieldErrors[0]!.code, fieldErrors.map((e) => e.message).join('; '), httpStatus, false, fieldErrors);
  }
}

export class NotFoundError extends AppError {
  constructor(what: string) {
    super(`${what.toUpperCase()}_NOT_FOUND`, `${what[0]!.toUpperCase()}${what.slice(1)} not found`, 404);
  }
}

export class IdempotencyKeyMismatchError extends AppError {
  /** `what` the key made (a payment, a refund) and the `field` that carried the key (body or header). */
  constructor(paymentId: string, what: 'payment' | 'refund' = 'payment', field: 'idempotencyKey' | 'Idempotency-Key' = 'idempotencyKey') {
    super(
      'IDEMPOTENCY_KEY_MISMATCH',
      `This idempotency key was already used with a different request; use a new key for a new ${what}`,
      422,
      false,
      [{ field, code: 'IDEMPOTENCY_KEY_MISMATCH', message: 'The key holds another request', paymentID: paymentId }],
    );
  }
}

export class InvalidStateTransitionError extends AppError {
  constructor(from: string, to: string, reason?: string) {
    const message = reason ?? `A payment in status ${from} cannot move to ${to}`;
    super('INVALID_STATE_TRANSITION', message, 409, false, [{ field: 'status', code: 'INVALID_STATE_TRANSITION', message, from, to }]);
  }
}

/** The payment changed under us (another writer won the conditional update). */
export class ConcurrentUpdateError extends AppError {
  constructor(readonly current: unknown) {
    super('CONCURRENT_UPDATE', 'The payment was changed by another request; retry', 409, true);
  }
}

export class ServiceUnavailableError extends AppError {
  constructor(message = 'The service is busy; retry with the same idempotency key') {
    super('SERVICE_UNAVAILABLE', message, 503, true);
  }
}

/** A listing cursor that is malformed, or was minted for another tenant or another filter. */
export class InvalidCursorError extends AppError {
  constructor(message = 'The cursor is not valid for this query') {
    super('INVALID_CURSOR', message, 400, false, [{ field: 'cursor', code: 'INVALID_CURSOR', message }]);
  }
}

/** A provider webhook whose signature is missing, wrong or too old: nothing is done with it. */
export class InvalidWebhookSignatureError extends AppError {
  constructor() {
    // The verifier's reason stays in the log: the answer does not teach a forger which part failed.
    super('INVALID_SIGNATURE', 'The Stripe-Signature header is missing, invalid or too old', 400, false, [
      { field: 'Stripe-Signature', code: 'INVALID_SIGNATURE', message: 'The Stripe-Signature header is missing, invalid or too old' },
    ]);
  }
}
