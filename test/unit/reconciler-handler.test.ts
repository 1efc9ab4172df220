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
