/**
 * The soak run in small (`npm run soak` runs thousands): payments over HTTP on the local stack with
 * every provider fault on at once (saved 5xx on create, cancel and refund; pending and failing refunds;
 * 3-D Secure and processing cards; a provider key retention the run crosses), replays, duplicate
 * deliveries, worker crashes after confirmation, operator retries, recovery runs, and other integrations
 * capturing on the same account. The verdict comes from the provider simulator's ledger.
 */
import { describe, expect, it } from 'vitest';
import { runSoak, SOAK_FAULTS, violations } from '../../scripts/soak-harness';

describe('money promise under every provider fault at once', () => {
  it('100 payments: no double charge, no success without capture, no failed payment with money, no foreign capture touched, refunds as the ledger says, none left open', async () => {
    const report = await runSoak({
      payments: 100,
      concurrency: 8,
      faults: { ...SOAK_FAULTS, idempotencyTtlMs: 15_000 },
      keyRetentionSeconds: 15,
      replayShare: 0.2,
      duplicateShare: 0.1,
      crashShare: 0.02,
      operatorRetryEveryMs: 300,
      recoveryEveryMs: 3000,
      foreignEveryMs: 400,
      cancelShare: 0.1,
      refundShare: 0.4,
      drainTimeoutMs: 180_000,
      seed: 7,
      ...(process.env.TEST_VERBOSE ? { progress: (l: string) => console.log(`[soak] ${l}`) } : {}),
    });
    if (process.env.TEST_VERBOSE) console.log(JSON.stringify(report));
    expect(violations(report)).toEqual({
      moreThanOneCharge: 0,
      successWithoutCapture: 0,
      notPaidWithCapture: 0,
      foreignRefunded: 0,
      orphansUnsettled: 0,
      notFinal: 0,
      replayMismatches: 0,
      cancelReplayMismatches: 0,
      refundReplayMismatches: 0,
      overRefunded: 0,
      refundLedgerMismatch: 0,
      refundedFieldMismatch: 0,
      refundsPending: 0,
      lost: 0,
    });
    expect(report.accepted).toBe(100);
    // The faults really happened: some payments needed more than one attempt, replays were answered,
    // other integrations captured and our orphan captures were refunded.
    expect(report.attempts).toBeGreaterThan(100);
    expect(report.replays).toBeGreaterThan(10);
    expect(report.byStatus.success).toBeGreaterThan(70);
    expect(report.foreignCaptures).toBeGreaterThan(0);
    expect(report.orphansRefunded).toBeGreaterThan(0);
    // Tenants cancelled and refunded: refunds were accepted, some refused as exceeding, and ended.
    expect(report.cancels.asked).toBeGreaterThan(0);
    expect(report.cancels.canceled + report.cancels.refused).toBe(report.cancels.asked);
    expect(report.tenantRefunds.accepted).toBeGreaterThan(10);
    expect(report.tenantRefunds.exceeding).toBeGreaterThan(0);
    expect(report.tenantRefunds.succeeded).toBeGreaterThan(0);
  }, 420_000);
});
