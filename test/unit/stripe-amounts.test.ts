/** Stripe's amount representation is not ISO 4217's: the adapter's table both ways. */
import { describe, expect, it } from 'vitest';
import { fromStripeAmount, stripeChargeRules, toStripeAmount } from '../../functions/adapters/provider/stripe-amounts';

describe('Stripe amounts', () => {
  it.each([
    ['USD', 4999, 4999],
    ['JPY', 500, 500],
    ['ISK', 500, 50_000],
    ['UGX', 1500, 150_000],
    ['MGA', 1000, 10],
    ['KWD', 12_300, 12_300],
    ['HUF', 17_550, 17_550],
    ['TWD', 1050, 1050],
  ])('%s: %i of our minor units go out as %i and come back the same', (currency, ours, stripe) => {
    expect(toStripeAmount(ours, currency)).toBe(stripe);
    expect(fromStripeAmount(stripe, currency)).toBe(ours);
  });

  it('refuses to send what Stripe cannot carry, rather than charge another amount', () => {
    expect(() => toStripeAmount(1050, 'MGA')).toThrow(RangeError);
    expect(() => toStripeAmount(100, 'IQD')).toThrow(RangeError);
  });

  it('the minimum is in our units for every listed currency (HUF 175.00, JPY 50)', () => {
    expect(stripeChargeRules.amountProblem(17_499, 'HUF')).toMatchObject({ code: 'AMOUNT_BELOW_MINIMUM', minimumMinor: 17_500 });
    expect(stripeChargeRules.amountProblem(17_500, 'HUF')).toBeUndefined();
    expect(stripeChargeRules.amountProblem(1, 'BIF')).toBeUndefined();
  });
});
