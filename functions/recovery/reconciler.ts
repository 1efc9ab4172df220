import { randomUUID } from 'node:crypto';
import type { Context } from 'aws-lambda';
import { documentClient } from '../adapters/aws-clients';
import { openShards } from '../adapters/dynamo/open-payments';
import { RecoveryRunsRepository, runLeaseMs, type RecoveryRun } from '../adapters/dynamo/recovery-runs';
import { createHttpProvider } from '../adapters/provider/http-provider';
import { Reconciler, type ReconcilerDeps } from '../core/reconciler';
import { container } from '../shared/container';
import { logger } from '../shared/logger';
import { createProductionProcessor } from '../worker/payment-worker';

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
  runs: RecoveryRunsRepository;
  reconciler: (hasTime: () => boolean) => Reconciler;
  clock?: () => Date;
}) {
  const clock = deps.clock ?? (() => new Date());
  return async (event: ReconcilerEvent, context?: Pick<Context, 'getRemainingTimeInMillis'>) => {
    let run: RecoveryRun;
    if (event.source === 'recovery-api' && event.runId && event.startedAt) {
      run = { runId: event.runId, startedAt: event.startedAt, trigger: event.trigger ?? 'api', status: 'running', counts: {} };
    } else {
      const started = await deps.runs.start(`run_${clock().getTime()}_${randomUUID().slice(0, 8)}`, 'schedule', clock(), runLeaseMs());
      if (!started.started) {
        logger.info('a reconciliation run is already active; skipping', { runId: started.run.runId });
        return { skipped: true, activeRunId: started.run.runId };
      }
      run = started.run;
    }
    const t0 = Date.now();
    const hasTime = () => (context ? context.getRemainingTimeInMillis() > SAFETY_MS : true);
    try {
      const result = await deps.reconciler(hasTime).run();
      const counts = { ...result.counts, ...(result.truncated ? { truncated: 1 } : {}) };
      await deps.runs.finish(run, {
        status: 'completed',
        finishedAt: clock().toISOString(),
        counts,
        itemsRead: result.itemsRead,
        durationMs: Date.now() - t0,
        discrepancies: result.discrepancies.slice(0, 100),
      });
      if (result.discrepancies.length) logger.error('provider reconciliation found discrepancies', { count: result.discrepancies.length });
      logger.info('reconciliation run finished', { runId: run.runId, counts, itemsRead: result.itemsRead });
      return { runId: run.runId, counts, itemsRead: result.itemsRead, discrepancies: result.discrepancies.length };
    } catch (err) {
      logger.error('reconciliation run failed', { runId: run.runId, error: err as Error });
      await deps.runs.finish(run, { status: 'failed', finishedAt: clock().toISOString(), counts: {}, durationMs: Date.now() - t0, error: (err as Error).name });
      throw err;
    }
  };
}

let production: ReturnType<typeof createReconcilerHandler> | undefined;
function productionHandler() {
  if (production) return production;
  const { config, repository, queue } = container();
  const processor = createProductionProcessor();
  const provider = createHttpProvider({ baseUrl: config.providerUrl, timeoutMs: config.providerTimeoutMs });
  const base: Omit<ReconcilerDeps, 'hasTime'> = {
    store: repository,
    queue,
    processor,
    provider,
    shards: openShards(),
    config: { stuckAfterSeconds: config.stuckAfterSeconds, openDeadlineSeconds: config.openDeadlineSeconds, settleGraceMs: config.leaseSeconds * 2000 },
  };
  production = createReconcilerHandler({
    runs: new RecoveryRunsRepository(documentClient(), config.recoveryTable),
    reconciler: (hasTime) => new Reconciler({ ...base, hasTime }),
  });
  return production;
}

export const handler = (event: ReconcilerEvent, context?: Context) => productionHandler()(event, context);
