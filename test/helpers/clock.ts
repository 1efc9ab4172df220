/**
 * Where tests put their fixed clocks: the start of the current UTC hour when the test process starts.
 *
 * Never a calendar date. DynamoDB Local deletes items whose TTL lies in the past (it sweeps about every
 * 10 s), so a clock fixed behind the real date makes the keys a test writes vanish mid-test. A test about
 * expiry moves its own clock forward from here; it never relies on the real clock being behind.
 * Starting on an hour boundary keeps hour buckets and rounded timestamps deterministic within a test.
 */
export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;
export const TEST_EPOCH = Math.floor(Date.now() / HOUR_MS) * HOUR_MS;

/** ISO 8601 of `TEST_EPOCH + offsetMs`. */
export const isoAt = (offsetMs: number): string => new Date(TEST_EPOCH + offsetMs).toISOString();
