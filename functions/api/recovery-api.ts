import { randomUUID } from 'node:crypto';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { documentClient } from '../adapters/aws-clients';
import { countOpenByStatus } from '../adapters/dynamo/open-payments';
import { RecoveryRunsRepository, runLeaseMs, type RecoveryRun } from '../adapters/dynamo/recovery-runs';
import { AppError } from '../core/errors';
import { loadConfig } from '../shared/env';
import { apiHandler, json, type ApiRequest, type ApiResponse } from '../shared/http';
import { logger } from '../shared/logger';

export interface RecoveryApiDeps {
  readonly runs: RecoveryRunsRepository;
  /** Starts the reconciler asynchronously for an already started run. */
  readonly startReconciler: (run: RecoveryRun) => Promise<void>;
  readonly openCounts: () => Promise<Record<string, number>>;
  readonly clock?: () => Date;
}

export function recoveryRoute(deps: RecoveryApiDeps) {
  const clock = deps.clock ?? (() => new Date());
  return async (req: ApiRequest): Promise<ApiResponse> => {
    const route = `${req.method} ${req.resource}`;
    if (route === 'POST /api/recovery/process') {
      const runId = `run_${clock().getTime()}_${randomUUID().slice(0, 8)}`;
      const { started, run } = await deps.runs.start(runId, `api:${req.tenantId}`, clock(), runLeaseMs());
      if (!started) return json(200, { runId: run.runId, status: 'running', alreadyRunning: true, startedAt: run.startedAt });
      try {
        await deps.startReconciler(run);
      } catch (err) {
        logger.error('could not start the reconciler', { error: err as Error, runId });
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

let deps: RecoveryApiDeps | undefined;
function production(): RecoveryApiDeps {
  if (deps) return deps;
  const config = loadConfig();
  const reconciler = config.reconcilerFunctionName;
  const lambda = new LambdaClient({});
  deps = {
    runs: new RecoveryRunsRepository(documentClient(), config.recoveryTable),
    startReconciler: async (run) => {
      await lambda.send(
        new InvokeCommand({
          FunctionName: reconciler,
          InvocationType: 'Event',
          Payload: Buffer.from(JSON.stringify({ source: 'recovery-api', runId: run.runId, startedAt: run.startedAt, trigger: run.trigger })),
        }),
      );
    },
    openCounts: () => countOpenByStatus(documentClient(), config.paymentsTable, config.openPaymentsIndex),
  };
  return deps;
}

export const handler = apiHandler((req) => recoveryRoute(production())(req));
