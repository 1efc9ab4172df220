/**
 * What Stripe accepts as an amount and as metadata, answered with Stripe's error objects. From Stripe's
 * "Supported currencies" and "Metadata" documentation:
 *   - amounts are integers in the currency's smallest unit as Stripe defines it: zero-decimal currencies
 *     are sent as whole units (500 = JPY 500);
 *   - special cases: ISK and UGX are zero-decimal but, for backwards compatibility, are sent in two-decimal
 *     form and must be divisible by 100 (50000 = ISK 500); HUF and TWD charge with two decimals (their
 *     whole-unit rule is for payouts only, which the simulator does not model);
 *   - three-decimal currencies (BHD, JOD, KWD, OMR, TND) must end in 0 (5.124 KWD is refused);
 *   - a minimum charge per currency (USD 0.50, GBP 0.30, JPY 50, ...) and at most eight digits (IDR
 *     twelve, INR nine);
 *   - metadata: at most 50 keys, keys up to 40 characters without square brackets, values up to 500.
 * This is the simulator's own reading of those rules, kept apart from the adapter's table on purpose:
 * when the two disagree, a test fails instead of both being wrong together.
 */
import { paramError, stripeError, type Reply } from './stripe-objects';

/**
 * Zero-decimal currencies (bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf, and isk) need no
 * rule here: any integer is whole units. These two are sent in two-decimal form, divisible by 100.
 */
const WHOLE_IN_HUNDREDTHS = new Set(['isk', 'ugx']);
const THREE_DECIMAL = new Set('bhd jod kwd omr tnd'.split(' '));

/** Card presentment currencies (lower case). */
const SUPPORTED = new Set(
  (
    'usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd bwp byn bzd cad cdf chf clp ' +
    'cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp gel gip gmd gnf gtq gyd hkd hnl htg huf idr ils inr isk ' +
    'jmd jod jpy kes kgs khr kmf krw kwd kyd kzt lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn ' +
    'nad ngn nio nok npr nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sek sgd shp sle sos srd szl ' +
    'thb tjs tnd top try ttd twd tzs uah ugx uyu uzs vnd vuv wst xaf xcd xof xpf yer zar zmw'
  ).split(' '),
);

/** Minimum charge, in Stripe's amount units. */
const MINIMUM: Readonly<Record<string, number>> = {
  usd: 50, aed: 200, aud: 50, bgn: 100, brl: 50, cad: 50, chf: 50, czk: 1500, dkk: 250, eur: 50, gbp: 30, hkd: 400,
  huf: 17500, inr: 50, jpy: 50, mxn: 1000, myr: 200, nok: 300, nzd: 50, pln: 200, ron: 200, sek: 300, sgd: 50, thb: 1000,
};
const MAX_DIGITS: Readonly<Record<string, number>> = { idr: 12, inr: 9 };

export const METADATA_LIMITS = { maxKeys: 50, maxKeyLength: 40, maxValueLength: 500 } as const;

/** Stripe's answer to an amount it cannot charge in this currency; undefined when it can. */
export function amountProblem(amount: number, currency: string): Reply | undefined {
  if (!SUPPORTED.has(currency)) {
    return stripeError(400, { type: 'invalid_request_error', param: 'currency', message: `Invalid currency: ${currency}.` });
  }
  if (WHOLE_IN_HUNDREDTHS.has(currency) && amount % 100 !== 0) {
    return paramError('amount', `Amounts in ${currency.toUpperCase()} must be whole units, sent multiplied by 100 (divisible by 100).`, 'invalid_charge_amount');
  }
  if (THREE_DECIMAL.has(currency) && amount % 10 !== 0) {
    return paramError('amount', `Amounts in ${currency.toUpperCase()} must end in 0.`, 'invalid_charge_amount');
  }
  const min = MINIMUM[currency] ?? 1;
  if (amount < min) {
    return paramError('amount', `Amount must be at least ${min} in ${currency} (its smallest unit at Stripe).`, 'amount_too_small');
  }
  if (String(amount).length > (MAX_DIGITS[currency] ?? 8)) {
    return paramError('amount', `Amount must be no more than ${MAX_DIGITS[currency] ?? 8} digits.`, 'amount_too_large');
  }
  return undefined;
}

/** Stripe's answer to metadata it does not store; undefined when acceptable. */
export function metadataProblem(metadata: Record<string, string>): Reply | undefined {
  const keys = Object.keys(metadata);
  if (keys.length > METADATA_LIMITS.maxKeys) return paramError('metadata', `Invalid metadata: metadata can have up to ${METADATA_LIMITS.maxKeys} keys.`);
  for (const k of keys) {
    if (k.length > METADATA_LIMITS.maxKeyLength || /[[\]]/.test(k)) {
      return paramError(`metadata[${k}]`, `Invalid metadata key: keys can be up to ${METADATA_LIMITS.maxKeyLength} characters long and cannot contain square brackets.`);
    }
    if (metadata[k]!.length > METADATA_LIMITS.maxValueLength) {
      return paramError(`metadata[${k}]`, `Invalid metadata value: values can be up to ${METADATA_LIMITS.maxValueLength} characters long.`);
    }
  }
  return undefined;
}
