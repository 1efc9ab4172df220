import { randomUUID } from 'node:crypto';
import type { RecoveryRun, RecoveryRunsRepository } from '../adapters/dynamo/recovery-runs';
import { AppError } from '../core/errors';
import type { Logger } from '../core/ports';
import { actorOf } from '../core/principal';
import { apiHandler, json, type ApiRequest, type ApiResponse } from '../shared/http';
import { wiring } from '../wiring';

export interface RecoveryApiDeps {
  readonly runs: RecoveryRunsRepository;
  /** Starts the reconciler asynchronously for an already started run. */
  readonly startReconciler: (run: RecoveryRun) => Promise<void>;
  readonly openCounts: () => Promise<Record<string, number | boolean>>;
  /** How long a run holds the run lock before another may take over. */
  readonly runLeaseMs: number;
  readonly logger: Logger;
  readonly clock?: () => Date;
}

export function recoveryRoute(deps: RecoveryApiDeps) {
  const clock = deps.clock ?? (() => new Date());
  return async (req: ApiRequest): Promise<ApiResponse> => {
    const route = `${req.method} ${req.resource}`;
    if (route === 'POST /api/recovery/process') {
      const runId = `run_${clock().getTime()}_${randomUUID().slice(0, 8)}`;
      const { started, run } = await deps.runs.start(runId, actorOf(req.principal), clock(), deps.runLeaseMs);
      if (!started) return json(200, { runId: run.runId, status: 'running', alreadyRunning: true, startedAt: run.startedAt });
      try {
        await deps.startReconciler(run);
      } catch (err) {
        deps.logger.error('could not start the reconciler', { error: (err as Error).name, runId });
        await deps.runs.finish(run, { status: 'failed', finishedAt: clock().toISOString(), counts: {}, error: 'reconciler could not be started' });
        throw new AppError('SERVICE_UNAVAILABLE', 'The reconciler could not be started; retry', 503, true);
      }
      return json(202, { runId, status: 'running', alreadyRunning: false, startedAt: run.startedAt });
    }
    if (route === 'GET /api/recovery/status') {
      const [runs, open] = await Promise.all([deps.runs.latest(10), deps.openCounts()]);
      return json(200, { runs, openPayments: open });
    }
    throw new AppError('ROUTE_NOT_FOUND', `No route for ${route}`, 404);
  };
}

/** Recovery runs over every tenant and shows their payment ids: operators only (tenants get 403 OPERATOR_ONLY). */
export const handler = apiHandler((req) => recoveryRoute(wiring().recoveryApi())(req), { access: 'operator', idempotentAction: true });
