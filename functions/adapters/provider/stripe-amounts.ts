/**
 * Stripe's amount representation, which is not ISO 4217's exponent table. Inside, money is integer minor
 * units by ISO 4217 (core/money.ts); Stripe wants integers in ITS unit for each currency. From Stripe's
 * "Supported currencies" page:
 *
 *   - zero-decimal currencies are sent in whole units: BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF VND VUV XAF
 *     XOF XPF. All of them are zero-exponent in ISO 4217 too, except MGA (ISO: 2 decimals), so MGA 10.00
 *     (1000 of our minor units) goes out as 10, and MGA 10.50 cannot be charged at all;
 *   - ISK and UGX are zero-decimal but, for backwards compatibility, are sent in two-decimal form and must
 *     be divisible by 100: ISK 500 (ISO: 0 decimals, 500 minor units) goes out as 50000;
 *   - three-decimal currencies (BHD, JOD, KWD, OMR, TND) are sent with three decimals and must end in 0;
 *   - HUF and TWD charge with two decimals; their whole-unit rule applies to payouts, not charges;
 *   - a minimum charge per currency (the table below, Stripe's "minimum and maximum charge amounts";
 *     other currencies: the provider's own check, see README limitations) and at most eight digits
 *     (IDR twelve, INR nine);
 *   - currencies Stripe does not present (e.g. IQD, LYD, CUP, IRR, KPW, SYP and the ISO fund codes) are
 *     refused.
 *
 * `toStripeAmount` / `fromStripeAmount` translate both ways; `stripeChargeRules` is what the API checks at
 * create so the provider never sees an amount it would refuse.
 */
import { currencyExponent } from '../../core/money';
import type { ChargeProblem, ChargeRules } from '../../core/ports/payment-provider';

interface StripeCurrency {
  /** Decimals of Stripe's amount field for the currency. */
  readonly decimals: number;
  /** The amount (in Stripe's units) must be a multiple of this. */
  readonly step: number;
  /** Minimum charge, in Stripe's units (1 where Stripe lists none). */
  readonly minimum: number;
  readonly maxDigits: number;
}

const ZERO_DECIMAL = 'BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF VND VUV XAF XOF XPF';
/** Zero-decimal at Stripe, sent in two-decimal form, divisible by 100. */
const WHOLE_IN_HUNDREDTHS = 'ISK UGX';
const THREE_DECIMAL = 'BHD JOD KWD OMR TND';
const TWO_DECIMAL =
  'USD AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BWP BYN BZD CAD CDF CHF CNY COP ' +
  'CRC CVE CZK DKK DOP DZD EGP ETB EUR FJD FKP GBP GEL GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR JMD KES KGS KHR ' +
  'KYD KZT LAK LBP LKR LRD LSL MAD MDL MKD MMK MNT MOP MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP ' +
  'PKR PLN QAR RON RSD RUB SAR SBD SCR SEK SGD SHP SLE SOS SRD SZL THB TJS TOP TRY TTD TWD TZS UAH UYU UZS WST XCD YER ZAR ZMW';

/** Stripe's minimum charge amounts, in its units. */
const MINIMUMS: Readonly<Record<string, number>> = {
  USD: 50, AED: 200, AUD: 50, BGN: 100, BRL: 50, CAD: 50, CHF: 50, CZK: 1500, DKK: 250, EUR: 50, GBP: 30, HKD: 400,
  HUF: 17500, INR: 50, JPY: 50, MXN: 1000, MYR: 200, NOK: 300, NZD: 50, PLN: 200, RON: 200, SEK: 300, SGD: 50, THB: 1000,
};
const MAX_DIGITS: Readonly<Record<string, number>> = { IDR: 12, INR: 9 };

const TABLE: ReadonlyMap<string, StripeCurrency> = new Map(
  (
    [
      [ZERO_DECIMAL, 0, 1],
      [WHOLE_IN_HUNDREDTHS, 2, 100],
      [THREE_DECIMAL, 3, 10],
      [TWO_DECIMAL, 2, 1],
    ] as const
  ).flatMap(([codes, decimals, step]) =>
    codes.split(' ').map((c) => [c, { decimals, step, minimum: MINIMUMS[c] ?? 1, maxDigits: MAX_DIGITS[c] ?? 8 }] as const),
  ),
);

/** The adapter writes these on every intent (and refunds carry their own): tenant metadata may not use them. */
export const STRIPE_RESERVED_METADATA_KEYS = ['payment_id', 'intent_seq', 'service', 'stage'] as const;

/** Stripe's metadata limits: 50 keys, keys up to 40 characters without square brackets, values up to 500. */
export const STRIPE_METADATA_LIMITS = { maxKeys: 50, maxKeyLength: 40, maxValueLength: 500, forbiddenKeyCharacters: /[[\]]/ } as const;

/** How our minor units relate to Stripe's: stripe = ours × up / down. */
function scale(currency: string): { up: number; down: number; c: StripeCurrency } | undefined {
  const c = TABLE.get(currency);
  const iso = currencyExponent(currency);
  if (!c || iso === undefined) return undefined;
  const d = c.decimals - iso;
  return { up: d > 0 ? 10 ** d : 1, down: d < 0 ? 10 ** -d : 1, c };
}

/**
 * Our minor units in Stripe's. Throws RangeError for an amount Stripe cannot carry in that currency: the
 * API refuses those at create (stripeChargeRules), so reaching this is a bug, never a charge of another amount.
 */
export function toStripeAmount(amountMinor: number, currency: string): number {
  const s = scale(currency);
  if (!s) throw new RangeError(`Stripe does not charge in ${currency}`);
  if (amountMinor % s.down !== 0) throw new RangeError(`${amountMinor} minor units of ${currency} are finer than Stripe's unit`);
  return (amountMinor / s.down) * s.up;
}

/**
 * Stripe's amount in our minor units. A currency outside the table (an intent another integration made)
 * is taken as it is; an amount finer than our unit (never ours) is rounded, it only feeds reports.
 */
export function fromStripeAmount(amount: number, currency: string): number {
  const s = scale(currency);
  if (!s) return amount;
  return Math.round((amount * s.down) / s.up);
}

/** What Stripe would refuse, checked at create: see the header for the rules. */
export const stripeChargeRules: ChargeRules = {
  reservedMetadataKeys: STRIPE_RESERVED_METADATA_KEYS,
  metadata: STRIPE_METADATA_LIMITS,
  amountProblem(amountMinor: number, currency: string): ChargeProblem | undefined {
    const s = scale(currency);
    if (!s) return { code: 'UNSUPPORTED_CURRENCY', message: `the payment provider does not charge in ${currency}` };
    // The smallest step we can send, in our minor units.
    const step = Math.max(s.down, (s.c.step * s.down) / s.up, 1);
    if (amountMinor % step !== 0) {
      return { code: 'AMOUNT_PRECISION_EXCEEDED', message: `the payment provider charges ${currency} in steps of ${step} minor units`, step };
    }
    const stripe = (amountMinor / s.down) * s.up;
    if (stripe < s.c.minimum) {
      const minimumMinor = Math.ceil((s.c.minimum * s.down) / s.up);
      return { code: 'AMOUNT_BELOW_MINIMUM', message: `the payment provider's minimum charge in ${currency} is ${minimumMinor} minor units`, minimumMinor };
    }
    if (String(stripe).length > s.c.maxDigits) return { code: 'AMOUNT_TOO_LARGE', message: `the payment provider takes at most ${s.c.maxDigits} digits in ${currency}` };
    return undefined;
  },
};
