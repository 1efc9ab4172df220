import { describe, expect, it } from 'vitest';
import { currencyExponent, toMajorUnits, toMinorUnits } from '../../functions/core/money';

describe('money', () => {
  it('knows ISO 4217 exponents', () => {
    expect(currencyExponent('USD')).toBe(2);
    expect(currencyExponent('JPY')).toBe(0);
    expect(currencyExponent('KWD')).toBe(3);
    expect(currencyExponent('XXX')).toBeUndefined();
    expect(currencyExponent('usd')).toBeUndefined();
  });

  it.each([
    [100.5, 2, 10050],
    ['100.50', 2, 10050],
    [0.1, 2, 10],
    [19.99, 2, 1999],
    [1000, 0, 1000],
    [1.234, 3, 1234],
    ['0.001', 3, 1],
    [1.1, 2, 110],
  ])('converts %s with exponent %i to %i minor units exactly', (amount, exp, minor) => {
    expect(toMinorUnits(amount, exp, 1_000_000)).toEqual({ ok: true, minor });
  });

  it.each([
    [0, 'INVALID_AMOUNT'],
    [-1, 'INVALID_AMOUNT'],
    ['-1.00', 'INVALID_AMOUNT'],
    [Number.NaN, 'INVALID_AMOUNT'],
    [Number.POSITIVE_INFINITY, 'INVALID_AMOUNT'],
    ['abc', 'INVALID_AMOUNT'],
    ['', 'INVALID_AMOUNT'],
    [true, 'INVALID_AMOUNT'],
    [null, 'INVALID_AMOUNT'],
    ['1.', 'INVALID_AMOUNT'],
    ['ten', 'INVALID_AMOUNT'],
    ['one hundred', 'INVALID_AMOUNT'],
    ['1e5', 'INVALID_AMOUNT'],
    ['Infinity', 'INVALID_AMOUNT'],
    [1.001, 'AMOUNT_PRECISION_EXCEEDED'],
    [1e-7, 'AMOUNT_PRECISION_EXCEEDED'],
    [0.30000000000000004, 'AMOUNT_PRECISION_EXCEEDED'],
    [1_000_000.01, 'AMOUNT_TOO_LARGE'],
    [1e21, 'AMOUNT_TOO_LARGE'],
  ])('rejects %s as %s (USD)', (amount, problem) => {
    expect(toMinorUnits(amount, 2, 1_000_000)).toEqual({ ok: false, problem });
  });

  it('rejects decimals for zero-exponent currencies and allows trailing zeros', () => {
    expect(toMinorUnits(100.5, 0, 1e6)).toEqual({ ok: false, problem: 'AMOUNT_PRECISION_EXCEEDED' });
    expect(toMinorUnits('100.00', 0, 1e6)).toEqual({ ok: true, minor: 100 });
  });

  it('renders minor units back to the decimal amount', () => {
    expect(toMajorUnits(10050, 'USD')).toBe(100.5);
    expect(toMajorUnits(5, 'USD')).toBe(0.05);
    expect(toMajorUnits(1234, 'KWD')).toBe(1.234);
    expect(toMajorUnits(1000, 'JPY')).toBe(1000);
  });
});
