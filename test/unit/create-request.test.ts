import { describe, expect, it } from 'vitest';
import { parseCreatePaymentRequest, requestFingerprint } from '../../functions/core/create-request';
import { ValidationError } from '../../functions/core/errors';

const valid = {
  idempotencyKey: 'order-1',
  amount: 100.5,
  currency: 'USD',
  paymentMethod: { type: 'card', token: 'tok_success' },
  metadata: { orderId: 'o-1' },
};
const limits = { maxAmount: 1_000_000 };

function codeOf(body: Record<string, unknown>, header?: string): string {
  try {
    parseCreatePaymentRequest(body, header, limits);
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return (err as ValidationError).code;
  }
  throw new Error('expected a validation error');
}

describe('create payment request', () => {
  it('parses a valid request into minor units', () => {
    expect(parseCreatePaymentRequest(valid, undefined, limits)).toEqual({
      idempotencyKey: 'order-1',
      amountMinor: 10050,
      currency: 'USD',
      paymentMethod: { type: 'card', token: 'tok_success' },
      metadata: { orderId: 'o-1' },
    });
  });

  it('takes the key from the Idempotency-Key header, and rejects a different body key', () => {
    const { idempotencyKey, ...noKey } = valid;
    expect(parseCreatePaymentRequest(noKey, 'hdr-1', limits).idempotencyKey).toBe('hdr-1');
    expect(parseCreatePaymentRequest(valid, 'order-1', limits).idempotencyKey).toBe('order-1');
    expect(codeOf(valid, 'other')).toBe('IDEMPOTENCY_KEY_CONFLICT');
    expect(idempotencyKey).toBe('order-1');
  });

  it.each([
    [{ idempotencyKey: undefined }, 'MISSING_IDEMPOTENCY_KEY'],
    [{ idempotencyKey: '' }, 'INVALID_IDEMPOTENCY_KEY'],
    [{ idempotencyKey: '   ' }, 'INVALID_IDEMPOTENCY_KEY'],
    [{ idempotencyKey: 'k'.repeat(256) }, 'INVALID_IDEMPOTENCY_KEY'],
    [{ idempotencyKey: 42 }, 'INVALID_IDEMPOTENCY_KEY'],
    [{ amount: undefined }, 'MISSING_FIELD'],
    [{ amount: -5 }, 'INVALID_AMOUNT'],
    [{ amount: 0 }, 'INVALID_AMOUNT'],
    [{ amount: '12abc' }, 'INVALID_AMOUNT'],
    [{ amount: 10.123 }, 'AMOUNT_PRECISION_EXCEEDED'],
    [{ amount: 10.5, currency: 'JPY' }, 'AMOUNT_PRECISION_EXCEEDED'],
    [{ amount: 2_000_000 }, 'AMOUNT_TOO_LARGE'],
    [{ currency: undefined }, 'MISSING_FIELD'],
    [{ currency: 'ABC' }, 'UNSUPPORTED_CURRENCY'],
    [{ currency: 12 }, 'UNSUPPORTED_CURRENCY'],
    [{ paymentMethod: undefined }, 'MISSING_FIELD'],
    [{ paymentMethod: 'card' }, 'INVALID_PAYMENT_METHOD'],
    [{ paymentMethod: { type: 'crypto', token: 'tok_success' } }, 'UNSUPPORTED_PAYMENT_METHOD'],
    [{ paymentMethod: { type: 'card' } }, 'MISSING_FIELD'],
    [{ paymentMethod: { type: 'card', token: 'has spaces' } }, 'INVALID_PAYMENT_METHOD'],
    [{ metadata: 'x' }, 'INVALID_METADATA'],
    [{ metadata: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, 'v'])) }, 'INVALID_METADATA'],
    [{ metadata: { ['k'.repeat(41)]: 'v' } }, 'INVALID_METADATA'],
    [{ metadata: { k: 'v'.repeat(501) } }, 'INVALID_METADATA'],
    [{ metadata: { k: { nested: true } } }, 'INVALID_METADATA'],
    // Found from outside (issue 19): what the contract forbids is refused, never normalised.
    [{ currency: 'usd' }, 'UNSUPPORTED_CURRENCY'],
    [{ currency: 'Usd' }, 'UNSUPPORTED_CURRENCY'],
    [{ amount: ' 12.30' }, 'INVALID_AMOUNT'],
    [{ amount: '12.30 ' }, 'INVALID_AMOUNT'],
    [{ metadata: { k: 1 } }, 'INVALID_METADATA'],
    [{ metadata: { k: true } }, 'INVALID_METADATA'],
    [{ metadata: null }, 'INVALID_METADATA'],
    [{ idempotencyKey: ' lead' }, 'INVALID_IDEMPOTENCY_KEY'],
    [{ idempotencyKey: 'trail ' }, 'INVALID_IDEMPOTENCY_KEY'],
    [{ idempotencyKey: 'tab\there' }, 'INVALID_IDEMPOTENCY_KEY'],
    [{ idempotencyKey: null }, 'MISSING_IDEMPOTENCY_KEY'],
  ])('rejects %j with %s', (override, code) => {
    expect(codeOf({ ...valid, ...override })).toBe(code);
  });

  it('accepts keys with inner spaces (printable ASCII, as the contract says) and string amounts as written', () => {
    expect(parseCreatePaymentRequest({ ...valid, idempotencyKey: 'order 1001 / retry #2' }, undefined, limits).idempotencyKey).toBe('order 1001 / retry #2');
    expect(parseCreatePaymentRequest({ ...valid, amount: '12.30' }, undefined, limits).amountMinor).toBe(1230);
  });

  it('a null body key is not replaced by the header key', () => {
    expect(codeOf({ ...valid, idempotencyKey: null }, 'hdr-1')).toBe('MISSING_IDEMPOTENCY_KEY');
  });

  it('AMOUNT_TOO_LARGE names the maximum in its detail', () => {
    try {
      parseCreatePaymentRequest({ ...valid, amount: 2_000_000 }, undefined, limits);
      throw new Error('expected failure');
    } catch (err) {
      expect((err as ValidationError).details).toEqual([expect.objectContaining({ field: 'amount', code: 'AMOUNT_TOO_LARGE', max: 1_000_000 })]);
    }
  });

  it('reports every invalid field in details', () => {
    try {
      parseCreatePaymentRequest({ amount: -1, currency: 'ABC' }, undefined, limits);
      throw new Error('expected failure');
    } catch (err) {
      const fields = ((err as ValidationError).details ?? []).map((d) => d.field);
      expect(fields).toEqual(expect.arrayContaining(['idempotencyKey', 'amount', 'currency', 'paymentMethod']));
    }
  });

  it('fingerprints the semantic fields, independent of key order and number spelling', () => {
    const a = parseCreatePaymentRequest(valid, undefined, limits);
    const b = parseCreatePaymentRequest(
      { metadata: { orderId: 'o-1' }, paymentMethod: { token: 'tok_success', type: 'card' }, currency: 'USD', amount: '100.50', idempotencyKey: 'order-1' },
      undefined,
      limits,
    );
    expect(requestFingerprint(a)).toBe(requestFingerprint(b));
    const c = parseCreatePaymentRequest({ ...valid, amount: 100.51 }, undefined, limits);
    expect(requestFingerprint(c)).not.toBe(requestFingerprint(a));
    expect(requestFingerprint(a)).toMatch(/^[0-9a-f]{64}$/);
  });
});
