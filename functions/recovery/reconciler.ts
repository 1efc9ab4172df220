import { randomUUID } from 'node:crypto';
import type { Context } from 'aws-lambda';
import type { RecoveryRun, RecoveryRunsRepository } from '../adapters/dynamo/recovery-runs';
import { noMetrics, type Logger, type Metrics } from '../core/ports';
import type { Reconciler } from '../core/reconciler';
import { instrumented } from '../shared/instrument';
import { wiring } from '../wiring';

/** Started by the API (run already recorded) or by the schedule (takes the run lock itself). */
export interface ReconcilerEvent {
  readonly source?: string;
  readonly runId?: string;
  readonly startedAt?: string;
  readonly trigger?: string;
}

/** Stop starting new pages this long before the function times out, to record the run. */
const SAFETY_MS = 20_000;

export function createReconcilerHandler(deps: {
  runs: Pick<RecoveryRunsRepository, 'start' | 'finish' | 'cursor' | 'saveCursor'>;
  reconciler: (hasTime: () => boolean) => Reconciler;
  /** How long a run holds the run lock before another may take over. */
  runLeaseMs: number;
  logger: Logger;
  metrics?: Metrics;
  clock?: () => Date;
}) {
  const clock = deps.clock ?? (() => new Date());
  const logger = deps.logger;
  const metrics = deps.metrics ?? noMetrics;
  return async (event: ReconcilerEvent, context?: Pick<Context, 'getRemainingTimeInMillis'>) => {
    let run: RecoveryRun;
    if (event.source === 'recovery-api' && event.runId && event.startedAt) {
      run = { runId: event.runId, startedAt: event.startedAt, trigger: event.trigger ?? 'api', status: 'running', counts: {} };
    } else {
      const started = await deps.runs.start(`run_${clock().getTime()}_${randomUUID().slice(0, 8)}`, 'schedule', clock(), deps.runLeaseMs);
      if (!started.started) {
        logger.info('a reconciliation run is already active; skipping', { runId: started.run.runId });
        return { skipped: true, activeRunId: started.run.runId };
      }
      run = started.run;
    }
    const t0 = Date.now();
    const hasTime = () => (context ? context.getRemainingTimeInMillis() > SAFETY_MS : true);
    try {
      // Resume where the last run stopped; the next run starts where this one stops.
      const result = await deps.reconciler(hasTime).run(await deps.runs.cursor());
      await deps.runs.saveCursor(result.cursor, clock());
      const counts = { ...result.counts, ...(result.truncated ? { truncated: 1 } : {}) };
      await deps.runs.finish(run, {
        status: 'completed',
        finishedAt: clock().toISOString(),
        counts,
        itemsRead: result.itemsRead,
        intentsRead: result.intentsRead,
        refundsIssued: result.refundsIssued,
        durationMs: Date.now() - t0,
        discrepancies: result.discrepancies.slice(0, 100),
      });
      recordRunMetrics(metrics, result);
      if (result.discrepancies.length) {
        logger.error('provider reconciliation found discrepancies', { count: result.discrepancies.length, refundsIssued: result.refundsIssued });
      }
      logger.info('reconciliation run finished', { runId: run.runId, counts, itemsRead: result.itemsRead, cursor: result.cursor });
      return { runId: run.runId, counts, itemsRead: result.itemsRead, discrepancies: result.discrepancies.length, refundsIssued: result.refundsIssued };
    } catch (err) {
      metrics.count('ReconcilerFailures');
      logger.error('reconciliation run failed', { runId: run.runId, error: (err as Error).name });
      await deps.runs.finish(run, { status: 'failed', finishedAt: clock().toISOString(), counts: {}, durationMs: Date.now() - t0, error: (err as Error).name });
      throw err;
    }
  };
}

/**
 * A run's numbers as metrics. Resolved: payments the run moved on (lapsed leases settled, lost messages
 * re-queued, captures settled); the backlog is what the provider could not answer this run.
 */
function recordRunMetrics(metrics: Metrics, result: Awaited<ReturnType<Reconciler['run']>>): void {
  const c = result.counts;
  const sum = (prefixes: string[]) =>
    Object.entries(c)
      .filter(([k]) => prefixes.some((p) => k.startsWith(p)))
      .reduce((n, [, v]) => n + v, 0);
  metrics.count('ReconcilerRunsCompleted');
  metrics.count('SuccessWithoutCapture', result.discrepancies.filter((d) => d.kind === 'SUCCESS_WITHOUT_CAPTURE').length);
  metrics.count('ReconcilerItemsRead', result.itemsRead);
  metrics.count('ReconcilerResolved', sum(['lease_resolved_', 'requeued_', 'capture_settled_', 'deadline_']));
  metrics.count('ReconcilerExpired', c.expired ?? 0);
  metrics.count('ReconcilerDiscrepancies', result.discrepancies.length);
  metrics.count('RefundsIssued', result.refundsIssued);
  // Captures other integrations on the account made: never touched, counted so they stay visible.
  metrics.count('ForeignCaptures', c.foreign_captures ?? 0);
  metrics.count('UnknownOutcomeBacklog', c.unresolved_at_provider ?? 0);
}

export const handler = instrumented(async (event: ReconcilerEvent, context?: Context) => (await wiring().reconcilerHandler())(event, context));
