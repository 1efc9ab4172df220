/**
 * ISO 4217 currencies in circulation and their minor-unit exponents. Amounts are integer minor
 * units inside; the API takes and shows decimal major units.
 */
const EXPONENT_0 = 'BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF';
const EXPONENT_3 = 'BHD IQD JOD KWD LYD OMR TND';
const EXPONENT_4 = 'CLF UYW';
const EXPONENT_2 =
  'AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN BZD ' +
  'CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS ' +
  'GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL ' +
  'MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK ' +
  'PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS ' +
  'TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG';

const EXPONENTS: ReadonlyMap<string, number> = new Map(
  (
    [
      [EXPONENT_0, 0],
      [EXPONENT_2, 2],
      [EXPONENT_3, 3],
      [EXPONENT_4, 4],
    ] as const
  ).flatMap(([codes, exp]) => codes.split(' ').map((c) => [c, exp] as const)),
);

export function currencyExponent(currency: string): number | undefined {
  return EXPONENTS.get(currency);
}

export type AmountProblem = 'INVALID_AMOUNT' | 'AMOUNT_PRECISION_EXCEEDED' | 'AMOUNT_TOO_LARGE';

/**
 * Converts a decimal amount (JSON number or numeric string) to integer minor units without floating
 * point arithmetic: the decimal text is split, never multiplied.
 */
export function toMinorUnits(
  amount: unknown,
  exponent: number,
  maxMajor: number,
): { ok: true; minor: number } | { ok: false; problem: AmountProblem } {
  let text: string;
  if (typeof amount === 'number') {
    if (!Number.isFinite(amount)) return { ok: false, problem: 'INVALID_AMOUNT' };
    text = String(amount);
  } else if (typeof amount === 'string') {
    // Taken as written: " 12.30" is not an amount (the contract's pattern has no spaces).
    text = amount;
  } else {
    return { ok: false, problem: 'INVALID_AMOUNT' };
  }
  // JavaScript prints numbers below 1e-6 or from 1e21 up in exponent form: too precise or too large.
  // A string in exponent form is not accepted at all (the regex below rejects it).
  if (typeof amount === 'number' && /e/i.test(text)) {
    return { ok: false, problem: /e-/i.test(text) ? 'AMOUNT_PRECISION_EXCEEDED' : 'AMOUNT_TOO_LARGE' };
  }
  const m = /^(\d+)(?:\.(\d+))?$/.exec(text);
  if (!m) return { ok: false, problem: 'INVALID_AMOUNT' };
  const whole = m[1]!;
  const fraction = (m[2] ?? '').replace(/0+$/, '');
  if (fraction.length > exponent) return { ok: false, problem: 'AMOUNT_PRECISION_EXCEEDED' };
  if (whole.replace(/^0+/, '').length > 15) return { ok: false, problem: 'AMOUNT_TOO_LARGE' };
  const minor = Number(whole) * 10 ** exponent + Number(fraction.padEnd(exponent, '0') || '0');
  if (minor <= 0) return { ok: false, problem: 'INVALID_AMOUNT' };
  if (minor > maxMajor * 10 ** exponent || !Number.isSafeInteger(minor)) return { ok: false, problem: 'AMOUNT_TOO_LARGE' };
  return { ok: true, minor };
}

/** Minor units back to the API's decimal number (exact for any amount under 2^53 minor units). */
export function toMajorUnits(minor: number, currency: string): number {
  const exp = currencyExponent(currency) ?? 2;
  if (exp === 0) return minor;
  const s = String(minor).padStart(exp + 1, '0');
  return Number(`${s.slice(0, -exp)}.${s.slice(-exp)}`);
}
