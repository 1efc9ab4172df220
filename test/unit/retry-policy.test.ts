import { describe, expect, it } from 'vitest';
import {
  backoffCapMs,
  backoffDelayMs,
  canScheduleRetry,
  MAX_DELAY_SECONDS,
  retryDelayMs,
  scheduleFor,
  validateBackoff,
} from '../../functions/core/retry-policy';

const cfg = { baseSeconds: 2, capSeconds: 900 };

describe('backoff caps', () => {
  it('doubles from the base and stops at the cap', () => {
    expect([0, 1, 2, 3, 4].map((r) => backoffCapMs(r, cfg))).toEqual([2000, 4000, 8000, 16000, 32000]);
    expect(backoffCapMs(9, cfg)).toBe(900_000); // 2 * 512 = 1024 s > 900 s
    expect(backoffCapMs(5000, cfg)).toBe(900_000); // 2^5000 overflows to Infinity; still the cap
  });

  it('is non-decreasing in the retry count', () => {
    const caps = Array.from({ length: 30 }, (_, r) => backoffCapMs(r, { baseSeconds: 0.05, capSeconds: 3 }));
    for (let i = 1; i < caps.length; i++) expect(caps[i]).toBeGreaterThanOrEqual(caps[i - 1]!);
  });

  it('accepts fractional seconds', () => {
    expect(backoffCapMs(0, { baseSeconds: 0.05, capSeconds: 1 })).toBe(50);
    expect(backoffCapMs(3, { baseSeconds: 0.05, capSeconds: 1 })).toBe(400);
    expect(backoffCapMs(10, { baseSeconds: 0.05, capSeconds: 1 })).toBe(1000);
  });

  it('rejects a negative or fractional retry count', () => {
    expect(() => backoffCapMs(-1, cfg)).toThrow(RangeError);
    expect(() => backoffCapMs(1.5, cfg)).toThrow(RangeError);
  });

  it('validates the configuration', () => {
    expect(() => validateBackoff({ baseSeconds: 0, capSeconds: 10 })).toThrow(RangeError);
    expect(() => validateBackoff({ baseSeconds: 5, capSeconds: 1 })).toThrow(RangeError);
    expect(() => validateBackoff({ baseSeconds: Number.NaN, capSeconds: 1 })).toThrow(RangeError);
    expect(() => validateBackoff({ baseSeconds: 0.05, capSeconds: 0.05 })).not.toThrow();
  });
});

describe('full jitter', () => {
  it('scales the cap by the injected random number', () => {
    expect(backoffDelayMs(2, cfg, () => 0)).toBe(0);
    expect(backoffDelayMs(2, cfg, () => 0.5)).toBe(4000);
    expect(backoffDelayMs(2, cfg, () => 0.25)).toBe(2000);
    expect(backoffDelayMs(2, cfg, () => 0.999999)).toBe(8000);
  });

  it('stays within [0, cap] for many random draws', () => {
    for (let r = 0; r < 12; r++) {
      for (let i = 0; i < 200; i++) {
        const d = backoffDelayMs(r, cfg);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThanOrEqual(backoffCapMs(r, cfg));
      }
    }
  });

  it('spreads delays over the whole range (not clustered at the cap)', () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const ds = Array.from({ length: 1000 }, () => backoffDelayMs(4, cfg, rnd));
    const mean = ds.reduce((a, b) => a + b, 0) / ds.length;
    expect(mean).toBeGreaterThan(0.4 * 32000);
    expect(mean).toBeLessThan(0.6 * 32000);
    expect(Math.min(...ds)).toBeLessThan(3200);
  });

  it('rejects a random source outside [0, 1)', () => {
    expect(() => backoffDelayMs(0, cfg, () => 1)).toThrow(RangeError);
    expect(() => backoffDelayMs(0, cfg, () => -0.1)).toThrow(RangeError);
  });

  it('honours a provider Retry-After up to the cap', () => {
    expect(retryDelayMs(0, cfg, () => 0.1, 5000)).toEqual({ delayMs: 5000, capMs: 2000 });
    expect(retryDelayMs(3, cfg, () => 0.9, 5000)).toEqual({ delayMs: 14400, capMs: 16000 });
    expect(retryDelayMs(0, cfg, () => 0, 10_000_000).delayMs).toBe(900_000);
    expect(retryDelayMs(0, cfg, () => 0.5).delayMs).toBe(1000);
  });
});

describe('retry budget', () => {
  it('allows maxRetries retries: with 3, retries 1..3 are scheduled and a 4th failure is final', () => {
    expect([0, 1, 2, 3].map((r) => canScheduleRetry(r, 3))).toEqual([true, true, true, false]);
    expect(canScheduleRetry(0, 0)).toBe(false);
  });
});

describe('scheduleFor', () => {
  const now = Date.parse('2030-01-01T00:00:00Z');

  it('returns whole seconds rounded up and the exact notBefore', () => {
    expect(scheduleFor(1500, now)).toEqual({ delaySeconds: 2, notBefore: now + 1500 });
    expect(scheduleFor(50, new Date(now))).toEqual({ delaySeconds: 1, notBefore: now + 50 });
    expect(scheduleFor(0, now)).toEqual({ delaySeconds: 0, notBefore: now });
    expect(scheduleFor(-5, now)).toEqual({ delaySeconds: 0, notBefore: now });
  });

  it('caps the SQS delay at 900 s and keeps the full wait in notBefore', () => {
    const s = scheduleFor(3600_000, now);
    expect(s.delaySeconds).toBe(MAX_DELAY_SECONDS);
    expect(s.notBefore).toBe(now + 3600_000);
  });

  it('a long wait becomes a chain of hops, each at most 900 s, ending at notBefore', () => {
    const wait = 2_000_500; // 33 min 20.5 s
    const { notBefore } = scheduleFor(wait, now);
    let t = now;
    let hops = 0;
    while (notBefore - t > 0) {
      const s = scheduleFor(notBefore - t, t);
      expect(s.delaySeconds).toBeLessThanOrEqual(900);
      expect(s.notBefore).toBe(notBefore);
      t += s.delaySeconds * 1000;
      hops++;
    }
    expect(hops).toBe(3);
    expect(t).toBeGreaterThanOrEqual(notBefore);
    expect(t - notBefore).toBeLessThan(1000);
  });
});
