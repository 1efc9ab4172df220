/**
 * Validation of the create-payment request (seed shape: idempotencyKey, amount, currency,
 * paymentMethod {type, token}, metadata). Every problem is reported with its own stable code.
 *
 * With the provider's ChargeRules, what the provider would refuse is refused here, at create, instead of
 * being accepted and failing (or hanging) later: a currency it does not charge in, an amount finer than its
 * unit or below its minimum, metadata with no room left for the keys the adapter adds, or keys it cannot
 * store. Text no request can carry (a lone UTF-16 surrogate) is refused whatever the provider.
 */
import { AppError, ValidationError, type FieldError } from './errors';
import { canonicalJson, sha256Hex } from './fingerprint';
import { currencyExponent, toMinorUnits } from './money';
import type { PaymentMethod } from './payment';
import type { ChargeRules } from './ports/payment-provider';
import { isWellFormedText } from './unicode';

export const MAX_KEY_LENGTH = 255;
export const SUPPORTED_PAYMENT_METHODS = ['card', 'wallet'] as const;
export const METADATA_LIMITS = { maxKeys: 50, maxKeyLength: 40, maxValueLength: 500 } as const;
const TOKEN_PATTERN = /^[A-Za-z0-9_\-:.]{1,255}$/;
// Printable ASCII; a space inside but not at either end, since HTTP drops a header value's outer spaces
// (a key with them could not be sent the same way in the body and in the Idempotency-Key header).
const KEY_PATTERN = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;
// Upper-case letters only: `usd` is refused rather than guessed, as the contract says.
const CURRENCY_PATTERN = /^[A-Z]{3}$/;

export interface CreatePaymentRequest {
  readonly idempotencyKey: string;
  readonly amountMinor: number;
  readonly currency: string;
  readonly paymentMethod: PaymentMethod;
  readonly metadata: Record<string, string>;
}

/** SHA-256 of the canonical JSON of the fields that define the payment. */
export function requestFingerprint(r: Omit<CreatePaymentRequest, 'idempotencyKey'>): string {
  return sha256Hex(
    canonicalJson({
      amountMinor: r.amountMinor,
      currency: r.currency,
      paymentMethod: { type: r.paymentMethod.type, token: r.paymentMethod.token },
      metadata: r.metadata,
    }),
  );
}

export function validateIdempotencyKey(raw: unknown, field = 'idempotencyKey'): FieldError | string {
  if (raw === undefined || raw === null) {
    return { field, code: 'MISSING_IDEMPOTENCY_KEY', message: 'idempotencyKey is required (body field or Idempotency-Key header)' };
  }
  if (typeof raw !== 'string' || raw.trim() === '') {
    return { field, code: 'INVALID_IDEMPOTENCY_KEY', message: 'idempotencyKey must be a non-empty string' };
  }
  if (raw.length > MAX_KEY_LENGTH) {
    return { field, code: 'INVALID_IDEMPOTENCY_KEY', message: `idempotencyKey must be at most ${MAX_KEY_LENGTH} characters` };
  }
  if (!KEY_PATTERN.test(raw)) {
    return { field, code: 'INVALID_IDEMPOTENCY_KEY', message: 'idempotencyKey must be printable ASCII, without a space at either end' };
  }
  return raw;
}

/**
 * The key may come in the body or the Idempotency-Key header (IETF draft); both and different is an
 * error. A body key that is present is checked as given (a null one is not replaced by the header's).
 */
export function resolveIdempotencyKey(bodyKey: unknown, headerKey: string | undefined): FieldError | string {
  if (bodyKey !== undefined) {
    const checked = validateIdempotencyKey(bodyKey);
    if (typeof checked !== 'string') return checked;
  }
  if (headerKey !== undefined && bodyKey !== undefined && bodyKey !== headerKey) {
    return {
      field: 'idempotencyKey',
      code: 'IDEMPOTENCY_KEY_CONFLICT',
      message: 'The Idempotency-Key header and the body idempotencyKey differ',
    };
  }
  return validateIdempotencyKey(bodyKey ?? headerKey);
}

/**
 * Metadata keys that are names of Object.prototype (`constructor`, `__proto__`, `toString`, ...) are
 * rejected: as object keys they are dropped (`__proto__`) or break the DynamoDB marshaller
 * (`constructor`), so no store could keep them as given. Rejecting them behaves the same everywhere.
 */
const RESERVED_METADATA_KEYS = new Set([...Object.getOwnPropertyNames(Object.prototype), '__proto__', 'prototype']);

/** The metadata limits a request must meet: the provider's, less the room its adapter takes. */
function metadataLimits(rules: ChargeRules | undefined) {
  if (!rules) return { ...METADATA_LIMITS, reserved: new Set<string>(), forbidden: undefined };
  const m = rules.metadata;
  return {
    maxKeys: Math.min(METADATA_LIMITS.maxKeys, m.maxKeys - rules.reservedMetadataKeys.length),
    maxKeyLength: Math.min(METADATA_LIMITS.maxKeyLength, m.maxKeyLength),
    maxValueLength: Math.min(METADATA_LIMITS.maxValueLength, m.maxValueLength),
    reserved: new Set(rules.reservedMetadataKeys),
    forbidden: m.forbiddenKeyCharacters,
  };
}

function validateMetadata(raw: unknown, errors: FieldError[], rules: ChargeRules | undefined): Record<string, string> {
  if (raw === undefined) return {};
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    errors.push({ field: 'metadata', code: 'INVALID_METADATA', message: 'metadata must be an object of string values' });
    return {};
  }
  const limits = metadataLimits(rules);
  const entries = Object.entries(raw as Record<string, unknown>);
  if (entries.length > limits.maxKeys) {
    const room = rules ? ` (the payment provider takes ${rules.metadata.maxKeys}, and ${rules.reservedMetadataKeys.length} are ours)` : '';
    errors.push({ field: 'metadata', code: 'INVALID_METADATA', message: `metadata may have at most ${limits.maxKeys} keys${room}` });
    return {};
  }
  const out: Record<string, string> = {};
  for (const [k, v] of entries) {
    if (!isWellFormedText(k)) {
      errors.push({ field: 'metadata', code: 'INVALID_METADATA', message: 'metadata keys must be well-formed text (no lone UTF-16 surrogate)' });
      continue;
    }
    if (k.length === 0 || k.length > limits.maxKeyLength) {
      errors.push({ field: `metadata.${k.slice(0, 40)}`, code: 'INVALID_METADATA', message: `metadata keys must be 1-${limits.maxKeyLength} characters` });
      continue;
    }
    if (limits.reserved.has(k)) {
      errors.push({ field: `metadata.${k}`, code: 'INVALID_METADATA', message: `metadata key ${k} is reserved for the payment provider's records` });
      continue;
    }
    if (limits.forbidden?.test(k)) {
      errors.push({ field: `metadata.${k}`, code: 'INVALID_METADATA', message: 'metadata keys cannot contain square brackets' });
      continue;
    }
    if (RESERVED_METADATA_KEYS.has(k)) {
      errors.push({ field: `metadata.${k}`, code: 'INVALID_METADATA', message: `metadata key ${k} is reserved` });
      continue;
    }
    if (typeof v !== 'string') {
      errors.push({ field: `metadata.${k}`, code: 'INVALID_METADATA', message: 'metadata values must be strings' });
      continue;
    }
    const text = v;
    if (text.length > limits.maxValueLength) {
      errors.push({ field: `metadata.${k}`, code: 'INVALID_METADATA', message: `metadata values must be at most ${limits.maxValueLength} characters` });
      continue;
    }
    if (!isWellFormedText(text)) {
      errors.push({ field: `metadata.${k}`, code: 'INVALID_METADATA', message: 'metadata values must be well-formed text (no lone UTF-16 surrogate)' });
      continue;
    }
    out[k] = text;
  }
  return out;
}

const AMOUNT_MESSAGES = {
  INVALID_AMOUNT: 'amount must be a positive, finite decimal number',
  AMOUNT_PRECISION_EXCEEDED: 'amount has more decimal places than the currency allows',
  AMOUNT_TOO_LARGE: 'amount is over the maximum allowed',
} as const;

export function parseCreatePaymentRequest(
  body: Record<string, unknown>,
  headerKey: string | undefined,
  limits: { maxAmount: number; readonly provider?: ChargeRules },
): CreatePaymentRequest {
  const errors: FieldError[] = [];
  const key = resolveIdempotencyKey(body.idempotencyKey, headerKey);
  if (typeof key !== 'string') {
    if (key.code === 'IDEMPOTENCY_KEY_CONFLICT') throw new ValidationError([key]);
    errors.push(key);
  }

  let currency = '';
  let exponent: number | undefined;
  if (body.currency === undefined || body.currency === null) {
    errors.push({ field: 'currency', code: 'MISSING_FIELD', message: 'currency is required' });
  } else if (typeof body.currency !== 'string' || !CURRENCY_PATTERN.test(body.currency) || (exponent = currencyExponent(body.currency)) === undefined) {
    errors.push({ field: 'currency', code: 'UNSUPPORTED_CURRENCY', message: 'currency must be an upper-case ISO 4217 code in circulation, e.g. USD' });
  } else {
    currency = body.currency;
  }

  let amountMinor = 0;
  if (body.amount === undefined || body.amount === null) {
    errors.push({ field: 'amount', code: 'MISSING_FIELD', message: 'amount is required' });
  } else {
    // Without a known currency, check the amount against the finest precision in use.
    const result = toMinorUnits(body.amount, exponent ?? 4, limits.maxAmount);
    if (!result.ok) {
      errors.push({ field: 'amount', code: result.problem, message: AMOUNT_MESSAGES[result.problem], ...(result.problem === 'AMOUNT_TOO_LARGE' ? { max: limits.maxAmount } : {}) });
    } else {
      amountMinor = result.minor;
      const problem = currency && limits.provider?.amountProblem(amountMinor, currency);
      if (problem) {
        const field = problem.code === 'UNSUPPORTED_CURRENCY' ? 'currency' : 'amount';
        const extra = problem.code === 'AMOUNT_BELOW_MINIMUM' ? { minimumMinor: problem.minimumMinor } : problem.code === 'AMOUNT_PRECISION_EXCEEDED' ? { stepMinor: problem.step } : {};
        errors.push({ field, code: problem.code, message: problem.message, ...extra } as FieldError);
      }
    }
  }

  let paymentMethod: PaymentMethod = { type: '', token: '' };
  const pm = body.paymentMethod;
  if (pm === undefined || pm === null) {
    errors.push({ field: 'paymentMethod', code: 'MISSING_FIELD', message: 'paymentMethod is required' });
  } else if (typeof pm !== 'object' || Array.isArray(pm)) {
    errors.push({ field: 'paymentMethod', code: 'INVALID_PAYMENT_METHOD', message: 'paymentMethod must be an object with type and token' });
  } else {
    const { type, token } = pm as Record<string, unknown>;
    if (type === undefined || type === null) {
      errors.push({ field: 'paymentMethod.type', code: 'MISSING_FIELD', message: 'paymentMethod.type is required' });
    } else if (typeof type !== 'string' || !(SUPPORTED_PAYMENT_METHODS as readonly string[]).includes(type)) {
      errors.push({
        field: 'paymentMethod.type',
        code: 'UNSUPPORTED_PAYMENT_METHOD',
        message: `paymentMethod.type must be one of ${SUPPORTED_PAYMENT_METHODS.join(', ')}`,
      });
    }
    if (token === undefined || token === null) {
      errors.push({ field: 'paymentMethod.token', code: 'MISSING_FIELD', message: 'paymentMethod.token is required' });
    } else if (typeof token !== 'string' || !TOKEN_PATTERN.test(token)) {
      errors.push({ field: 'paymentMethod.token', code: 'INVALID_PAYMENT_METHOD', message: 'paymentMethod.token must be 1-255 characters of letters, digits and _-:.' });
    }
    if (typeof type === 'string' && typeof token === 'string') paymentMethod = { type, token };
  }

  const metadata = validateMetadata(body.metadata, errors, limits.provider);
  if (errors.length) throw new ValidationError(errors);
  if (typeof key !== 'string') throw new AppError('INTERNAL_ERROR', 'unreachable', 500);
  return { idempotencyKey: key, amountMinor, currency, paymentMethod, metadata };
}
