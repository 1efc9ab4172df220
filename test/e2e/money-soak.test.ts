/**
 * The soak run in small (`npm run soak` runs 10,000): 300 payments over HTTP on the local stack with
 * every provider fault on at once, replays, duplicate deliveries, worker crashes after confirmation,
 * operator retries and recovery runs. The verdict comes from the provider simulator's ledger.
 */
import { describe, expect, it } from 'vitest';
import { runSoak, SOAK_FAULTS, violations } from '../../scripts/soak-harness';

describe('money promise under every provider fault at once', () => {
  it('300 payments: no double charge, no success without capture, no failed payment with money, none left open', async () => {
    const report = await runSoak({
      payments: 300,
      concurrency: 8,
      faults: SOAK_FAULTS,
      replayShare: 0.2,
      duplicateShare: 0.1,
      crashShare: 0.02,
      operatorRetryEveryMs: 300,
      recoveryEveryMs: 3000,
      drainTimeoutMs: 240_000,
      seed: 7,
      ...(process.env.TEST_VERBOSE ? { progress: (l: string) => console.log(`[soak] ${l}`) } : {}),
    });
    if (process.env.TEST_VERBOSE) console.log(JSON.stringify(report));
    expect(violations(report)).toEqual({ moreThanOneCharge: 0, successWithoutCapture: 0, notPaidWithCapture: 0, notFinal: 0, replayMismatches: 0, lost: 0 });
    expect(report.accepted).toBe(300);
    // The faults really happened: some payments needed more than one attempt, replays were answered.
    expect(report.attempts).toBeGreaterThan(300);
    expect(report.replays).toBeGreaterThan(30);
    expect(report.byStatus.success).toBeGreaterThan(200);
  }, 420_000);
});
