import { describe, expect, it } from 'vitest';
import { parseCreatePaymentRequest, requestFingerprint } from '../../functions/core/create-request';
import { ValidationError } from '../../functions/core/errors';
import { stripeChargeRules } from '../../functions/adapters/provider/stripe-amounts';

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

describe('create payment request: what the provider cannot take is refused at create (Stripe rules)', () => {
  const stripe = { maxAmount: 1_000_000, provider: stripeChargeRules };
  const problem = (over: Record<string, unknown>) => {
    try {
      parseCreatePaymentRequest({ ...valid, ...over }, undefined, stripe);
    } catch (err) {
      return { code: (err as ValidationError).code, details: (err as ValidationError).details };
    }
    return undefined;
  };

  it('leaves room for the keys the adapter adds: 46 tenant keys at most, and never one of ours', () => {
    const keys = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v']));
    expect(problem({ metadata: keys(46) })).toBeUndefined();
    expect(problem({ metadata: keys(47) })).toMatchObject({ code: 'INVALID_METADATA' });
    for (const reserved of ['payment_id', 'intent_seq', 'service', 'stage']) expect(problem({ metadata: { [reserved]: 'x' } })).toMatchObject({ code: 'INVALID_METADATA' });
    expect(problem({ metadata: { 'a[b]': 'x' } })).toMatchObject({ code: 'INVALID_METADATA' });
  });

  it('refuses text no request can carry (a lone UTF-16 surrogate), in keys and values, with or without provider rules', () => {
    expect(problem({ metadata: { a: '\ud800x' } })).toMatchObject({ code: 'INVALID_METADATA' });
    expect(problem({ metadata: { ['\udc00']: 'x' } })).toMatchObject({ code: 'INVALID_METADATA' });
    expect(codeOf({ ...valid, metadata: { a: 'x\udbff' } })).toBe('INVALID_METADATA');
    // A surrogate pair is well formed.
    expect(problem({ metadata: { a: '😀' } })).toBeUndefined();
  });

  it('refuses amounts below the minimum charge, finer than the provider unit, and currencies it does not charge in', () => {
    expect(problem({ amount: 0.49 })).toMatchObject({ code: 'AMOUNT_BELOW_MINIMUM', details: [{ field: 'amount', minimumMinor: 50 }] });
    expect(problem({ amount: 0.5 })).toBeUndefined();
    expect(problem({ amount: 0.29, currency: 'GBP' })).toMatchObject({ code: 'AMOUNT_BELOW_MINIMUM' });
    expect(problem({ amount: 49, currency: 'JPY' })).toMatchObject({ code: 'AMOUNT_BELOW_MINIMUM' });
    expect(problem({ amount: 10.5, currency: 'MGA' })).toMatchObject({ code: 'AMOUNT_PRECISION_EXCEEDED', details: [{ field: 'amount', stepMinor: 100 }] });
    expect(problem({ amount: 10, currency: 'MGA' })).toBeUndefined();
    expect(problem({ amount: 1.005, currency: 'KWD' })).toMatchObject({ code: 'AMOUNT_PRECISION_EXCEEDED', details: [{ stepMinor: 10 }] });
    expect(problem({ amount: 1.01, currency: 'KWD' })).toBeUndefined();
    expect(problem({ amount: 500, currency: 'ISK' })).toBeUndefined();
    expect(problem({ amount: 10, currency: 'IQD' })).toMatchObject({ code: 'UNSUPPORTED_CURRENCY', details: [{ field: 'currency' }] });
    // Eight digits at Stripe: USD 1,000,000.00 is nine.
    expect(problem({ amount: 999_999.99 })).toBeUndefined();
    expect(problem({ amount: 1_000_000 })).toMatchObject({ code: 'AMOUNT_TOO_LARGE' });
  });
});
