import { describe, expect, it } from 'vitest';
import type { RecoveryRun } from '../../functions/adapters/dynamo/recovery-runs';
import { silentLogger } from '../../functions/core/ports';
import type { Reconciler, ReconcilerCursor, ReconcileResult } from '../../functions/core/reconciler';
import { createReconcilerHandler } from '../../functions/recovery/reconciler';

/** Run records and the saved cursor in memory, with the repository's contract (one lock, one cursor). */
function fakeRuns() {
  let saved: ReconcilerCursor | undefined;
  const finished: RecoveryRun[] = [];
  return {
    finished,
    saved: () => saved,
    async start(runId: string, trigger: string, now: Date) {
      return { started: true, run: { runId, trigger, status: 'running' as const, startedAt: now.toISOString(), counts: {} } };
    },
    async finish(run: RecoveryRun, result: Omit<RecoveryRun, 'runId' | 'trigger' | 'startedAt'>) {
      finished.push({ ...run, ...result });
    },
    async cursor() {
      return saved ?? { openPartition: 0 };
    },
    async saveCursor(c: ReconcilerCursor) {
      saved = c;
    },
  };
}

describe('reconciler handler: each scheduled run resumes from the cursor the previous run saved', () => {
  it('hands run 1 the initial cursor, saves what it returns, and hands that to run 2', async () => {
    const runs = fakeRuns();
    const seen: ReconcilerCursor[] = [];
    const next: ReconcilerCursor[] = [
      { openPartition: 5, openStartKey: { openShard: 'open#05', dueAt: 1, id: 'pay_x' }, captures: { from: 1, to: 2, after: 'pi_9' } },
      { openPartition: 6 },
    ];
    const reconciler = () =>
      ({
        run: async (cursor: ReconcilerCursor): Promise<ReconcileResult> => {
          seen.push(cursor);
          return { cursor: next[seen.length - 1]!, counts: {}, itemsRead: 0, intentsRead: 0, discrepancies: [], refundsIssued: 0, truncated: seen.length === 1 };
        },
      }) as unknown as Reconciler;
    const handler = createReconcilerHandler({ runs: runs as never, reconciler, runLeaseMs: 60_000, logger: silentLogger });
    await handler({});
    await handler({});
    expect(seen).toEqual([{ openPartition: 0 }, next[0]]);
    expect(runs.saved()).toEqual({ openPartition: 6 });
    expect(runs.finished.map((r) => r.counts)).toEqual([{ truncated: 1 }, {}]);
  });
});

describe('reconciler handler: the signals its alarms watch', () => {
  const result = (discrepancies: ReconcileResult['discrepancies']): ReconcileResult => ({
    cursor: { openPartition: 1 },
    counts: {},
    itemsRead: 0,
    intentsRead: 0,
    discrepancies,
    refundsIssued: 0,
    truncated: false,
  });
  const base = { paymentId: 'pay_1', intentId: 'pi_1', amountMinor: 0, currency: 'USD', status: 'success' };

  it('a completed run is a heartbeat (ReconcilerNotRunning) and counts successes without a capture (SuccessWithoutCapture); a failed run is no heartbeat', async () => {
    const counts = new Map<string, number>();
    const metrics = { count: (name: string, value = 1) => void counts.set(name, (counts.get(name) ?? 0) + value) };
    let outcome: ReconcileResult | Error = result([
      { ...base, kind: 'SUCCESS_WITHOUT_CAPTURE' },
      { ...base, paymentId: 'pay_2', kind: 'UNACCOUNTED_CAPTURE_REFUNDED', refundId: 're_1' },
    ]);
    const reconciler = () =>
      ({
        run: async () => {
          if (outcome instanceof Error) throw outcome;
          return outcome;
        },
      }) as unknown as Reconciler;
    const handler = createReconcilerHandler({ runs: fakeRuns() as never, reconciler, runLeaseMs: 60_000, logger: silentLogger, metrics: metrics as never });
    await handler({});
    expect(counts.get('ReconcilerRunsCompleted')).toBe(1);
    expect(counts.get('SuccessWithoutCapture')).toBe(1);
    outcome = new Error('provider down');
    await expect(handler({})).rejects.toThrow('provider down');
    expect(counts.get('ReconcilerRunsCompleted')).toBe(1);
    expect(counts.get('ReconcilerFailures')).toBe(1);
  });
});
