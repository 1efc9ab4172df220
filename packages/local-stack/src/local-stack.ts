/**
 * The whole serverless stack on this machine, driven only by the synthesized CloudFormation template:
 * DynamoDB Local and the fauxqs SQS emulator (or already-running emulators), the tables and queues the
 * template declares, every Lambda function in its own worker thread, the REST API, SQS and DynamoDB
 * stream event sources, EventBridge schedules, and a Lambda Invoke endpoint for function-to-function
 * calls. Nothing here names a resource of this project.
 */
import * as path from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBStreamsClient } from '@aws-sdk/client-dynamodb-streams';
import { SQSClient } from '@aws-sdk/client-sqs';
import { startApiGateway } from './api-gateway-server';
import { localApiKeyId, parseApiKeys, seedApiKeyPrincipals } from './api-keys';
import { buildRestApi, listRoutes, type RestApiModel, type RouteInfo } from './api-model';
import { startDynamoDbLocal, startSqsEmulator } from './emulators';
import { eventSourceMappings } from './event-sources';
import { functionDefinitions } from './function-definitions';
import { ADMIN_CREDENTIALS, startIamProxies, type LocalIam } from './iam-local';
import { LambdaInvocationError, type InvocationOutcome, type InvocationRecord } from './function-invocation';
import { FunctionRegistry } from './function-registry';
import { AsyncInvoker, startLambdaEndpoint } from './lambda-endpoint';
import { LOCAL_REGION } from './local-account';
import { reconcileQueues, reconcileTables } from './reconcile';
import { startSecretsEndpoint } from './secrets-endpoint';
import { SqsPoller } from './sqs-poller';
import { CheckpointStore } from './stream-checkpoints';
import { StreamPoller } from './stream-poller';
import { Scheduler, scheduledEvent, scheduleRules, type ScheduleRule } from './scheduler';
import { createLocalResources, loadSynthesizedStack, resolveValue, type LocalResources } from './template';
import { errorMessage, findByPrefix, makeLog, referencedId, shortId, type LogFn } from './util';

export { LambdaInvocationError, type InvocationOutcome, type InvocationRecord } from './function-invocation';
export type { RouteInfo } from './api-model';

export const DEFAULT_API_KEYS = 'local-key-1:tenant-1,local-key-2:tenant-2,local-operator-key:operator:local';

export interface LocalStackOptions {
  /** Cloud assembly directory (run `cdk synth` first). Default `cdk.out`. */
  readonly cdkOut?: string;
  /** API port on 127.0.0.1; 0 picks a free port. Default 3000. */
  readonly apiPort?: number;
  /** Lambda Invoke endpoint port; default a free port. */
  readonly lambdaPort?: number;
  /** Persistent DynamoDB Local data (and stream checkpoints) in this directory; in memory when absent. */
  readonly dataDir?: string;
  /**
   * `key:tenant` or `key:operator:<name>` pairs, comma-separated, or key → who. Default $LOCAL_API_KEYS
   * or DEFAULT_API_KEYS (two tenants, one operator). Several keys may name one tenant (rotation).
   */
  readonly apiKeys?: string | Record<string, string>;
  /** Merged over every function's environment (e.g. PROVIDER_URL of a simulator). */
  readonly extraEnv?: Record<string, string>;
  /** Divides rate() schedule periods (60: rate(1 minute) fires every second). Default 1. */
  readonly scheduleScale?: number;
  /** false: schedules fire only through fireSchedule(). Default true. */
  readonly schedules?: boolean;
  /** Already-running emulators (e.g. LocalStack); the missing ones are started. */
  readonly endpoints?: { readonly dynamodb?: string; readonly sqs?: string };
  /** Line logger, or false for silence. Default: stdout. */
  readonly log?: LogFn | false;
  /** Stream GetRecords interval when a shard is idle. Default 250 ms. */
  readonly streamPollIntervalMs?: number;
  /** Delays before the retries of failed asynchronous invocations. Default 1 and 2 minutes, as Lambda. */
  readonly asyncRetryDelaysMs?: number[];
  /**
   * Enforce each function's IAM role (default true): functions reach DynamoDB, SQS and the Lambda
   * endpoint through an authorizing proxy that evaluates their role's policies from the template.
   */
  readonly iam?: boolean;
}

export interface LocalStack {
  readonly stackName: string;
  /** `http://127.0.0.1:<port>`: API paths follow it directly (`/api/...`); `/<stage>/api/...` works too. */
  readonly apiUrl: string;
  readonly endpoints: { readonly dynamodb: string; readonly sqs: string; readonly lambda: string };
  readonly resources: LocalResources;
  /** Logical ids of the functions. */
  readonly functions: string[];
  readonly routes: RouteInfo[];
  readonly schedules: ScheduleRule[];
  /** API key → who (tenant id, or `operator:<name>`). */
  readonly apiKeys: ReadonlyMap<string, string>;
  /**
   * The IAM proxies the functions call (absent with `iam: false`), the credentials of each function
   * (by logical id prefix) and the denials so far.
   */
  readonly iam?: LocalIam;
  /** API key → the apiKeyId the functions see. */
  readonly apiKeyIds: ReadonlyMap<string, string>;
  /** Clients bound to the emulators, for tests and tools. */
  readonly clients: { readonly dynamodb: DynamoDBClient; readonly sqs: SQSClient; readonly streams: DynamoDBStreamsClient };
  /** Invokes the function whose logical id starts with the prefix; resolves to its result, rejects with LambdaInvocationError. */
  invoke(functionLogicalIdPrefix: string, event?: unknown): Promise<any>;
  /** Like invoke(), but resolves to the raw outcome, failure included. */
  invokeOutcome(functionLogicalIdPrefix: string, event?: unknown): Promise<InvocationOutcome>;
  /** Fires the schedule rules matching the prefix (all when absent) now, and waits for the invocations. */
  fireSchedule(ruleLogicalIdPrefix?: string): Promise<InvocationOutcome[]>;
  /** Called after every invocation, whatever its source; returns an unsubscribe function. */
  onInvocation(listener: (record: InvocationRecord) => void): () => void;
  /** Resolves with the first invocation (from now on) that matches. */
  waitForInvocation(match: (record: InvocationRecord) => boolean, timeoutMs?: number): Promise<InvocationRecord>;
  /** Logical id → OS thread id of each function whose worker thread is running (Linux; for CPU figures). */
  functionThreads(): Map<string, number>;
  /** Stops everything that was started; safe to call more than once. */
  stop(): Promise<void>;
}

/** Runs `step` and records its undo, so that a failed start or stop() undoes exactly what was done. */
class Teardown {
  private readonly steps: Array<{ name: string; run: () => unknown }> = [];
  constructor(private readonly log: LogFn) {}
  add(name: string, run: () => unknown) {
    this.steps.push({ name, run });
  }
  async run(): Promise<void> {
    while (this.steps.length) {
      const step = this.steps.pop()!;
      try {
        await step.run();
      } catch (err) {
        this.log(`[local] stopping ${step.name} failed: ${errorMessage(err)}`);
      }
    }
  }
}

const emptyApi = (): RestApiModel => ({
  logicalId: 'NoRestApi',
  apiId: 'local',
  name: 'none',
  stageName: 'local',
  root: { logicalId: 'NoRestApi', pathPart: '', path: '/', children: [], methods: new Map() },
  gatewayResponses: new Map(),
  binaryMediaTypes: [],
});

export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const log = makeLog(options.log);
  const stack = loadSynthesizedStack(options.cdkOut ?? 'cdk.out');
  const { template } = stack;
  const apiKeys = parseApiKeys(options.apiKeys ?? process.env.LOCAL_API_KEYS ?? DEFAULT_API_KEYS);
  const apiKeyIds = new Map([...apiKeys.keys()].map((k) => [k, localApiKeyId(k)]));
  const teardown = new Teardown(log);
  const credentials = ADMIN_CREDENTIALS;

  try {
    // ---- Emulators ----
    // allSettled: when one emulator fails to start, the other is registered for teardown all the same.
    const settled = await Promise.allSettled([
      (async () => {
        if (options.endpoints?.dynamodb) return options.endpoints.dynamodb;
        const ddb = await startDynamoDbLocal({ dbPath: options.dataDir ? path.resolve(options.dataDir, 'dynamodb') : undefined });
        teardown.add('DynamoDB Local', () => ddb.stop());
        return ddb.endpoint;
      })(),
      (async () => {
        if (options.endpoints?.sqs) return options.endpoints.sqs;
        const sqs = await startSqsEmulator();
        teardown.add('SQS emulator', () => sqs.stop());
        return sqs.endpoint;
      })(),
    ]);
    for (const r of settled) if (r.status === 'rejected') throw r.reason;
    const [dynamodbEndpoint, sqsEndpoint] = settled.map((r) => (r as PromiseFulfilledResult<string>).value) as [string, string];
    const clients = {
      dynamodb: new DynamoDBClient({ endpoint: dynamodbEndpoint, region: LOCAL_REGION, credentials }),
      streams: new DynamoDBStreamsClient({ endpoint: dynamodbEndpoint, region: LOCAL_REGION, credentials }),
      // fauxqs queue URLs name sqs.<region>.localhost, which need not resolve: always use the endpoint.
      sqs: new SQSClient({ endpoint: sqsEndpoint, region: LOCAL_REGION, credentials, useQueueUrlAsEndpoint: false }),
    };
    teardown.add('AWS clients', () => Object.values(clients).forEach((c) => c.destroy()));
    // Pollers stop in two steps: abort (before the functions stop), then wait for their loops, which
    // end once the workers are gone and in-flight invocations have failed.
    const pollers: Array<SqsPoller | StreamPoller> = [];
    const pollerStops: Array<Promise<void>> = [];
    teardown.add('event source pollers', () => Promise.all(pollerStops));

    // ---- Tables and queues ----
    await reconcileTables(template, clients.dynamodb, log);
    if (options.endpoints?.sqs) await reconcileQueues(template, clients.sqs, log);
    const resources = await createLocalResources(template, { dynamodb: clients.dynamodb, sqs: clients.sqs });
    // Who each local key is, where the functions look it up (a table the template marks for it).
    await seedApiKeyPrincipals(template, resources, clients.dynamodb, apiKeys);

    // ---- Functions ----
    let registry: FunctionRegistry | undefined;
    let asyncInvoker: AsyncInvoker | undefined;
    const lambda = await startLambdaEndpoint({ registry: () => registry, asyncInvoker: () => asyncInvoker, port: options.lambdaPort, log });
    teardown.add('Lambda endpoint', () => lambda.stop());
    const endpoints = { dynamodb: dynamodbEndpoint, sqs: sqsEndpoint, lambda: lambda.url };
    let iam: LocalIam | undefined;
    if (options.iam !== false) {
      iam = await startIamProxies({
        template,
        resources,
        upstreams: endpoints,
        functionArn: (name) => registry?.get(name)?.id,
        log,
      });
      teardown.add('IAM proxies', () => iam!.stop());
    }
    // Secrets the template generates (not behind the IAM proxy: Secrets Manager calls are not evaluated).
    const secrets = await startSecretsEndpoint({ template, dataDir: options.dataDir ? path.resolve(options.dataDir) : undefined, log });
    teardown.add('Secrets Manager endpoint', () => secrets.stop());
    const functionEndpoints = { ...(iam?.endpoints ?? endpoints), secretsManager: secrets.url };
    registry = new FunctionRegistry(
      functionDefinitions(
        stack,
        resources,
        functionEndpoints,
        options.extraEnv,
        log,
        iam ? (id) => iam!.credentialsOfFunction(id) : undefined,
      ),
      log,
    );
    const functions = registry;
    teardown.add('functions', () => functions.stop());
    asyncInvoker = new AsyncInvoker(registry, log, options.asyncRetryDelaysMs);
    const invoker = asyncInvoker;
    teardown.add('async invocations', () => invoker.stop());
    await registry.warmAll();

    // ---- API ----
    const api = buildRestApi(template) ?? emptyApi();
    const gateway = await startApiGateway({ model: api, registry, apiKeys: apiKeyIds, port: options.apiPort ?? 3000, log });
    teardown.add('API', () => gateway.stop());

    // ---- Event sources ----
    teardown.add('event source polling', () => {
      for (const p of pollers) pollerStops.push(p.stop());
    });
    const checkpoints = new CheckpointStore(options.dataDir ? path.resolve(options.dataDir, 'stream-checkpoints.json') : undefined, log);
    const { mappings, warnings } = eventSourceMappings(template);
    for (const w of warnings) log(`[${shortId(w.logicalId)}] ${w.reason}`);
    for (const m of mappings) {
      if (!m.enabled) {
        log(`[${shortId(m.logicalId)}] is disabled`);
        continue;
      }
      if (m.kind === 'sqs') {
        const queue = resources.queues[m.sourceId]!;
        const visibility = Number(template.Resources[m.sourceId]?.Properties?.VisibilityTimeout ?? 30);
        const fnTimeout = Number(template.Resources[m.functionId]?.Properties?.Timeout ?? 3);
        if (visibility < fnTimeout) {
          log(`[${shortId(m.logicalId)}] the queue's VisibilityTimeout (${visibility} s) is shorter than the function's Timeout (${fnTimeout} s): Lambda rejects such a mapping, and messages may be handled twice`);
        }
        const poller = new SqsPoller({ mapping: m, queue, sqs: clients.sqs, registry, log });
        poller.start();
        pollers.push(poller);
      } else {
        const streamArn = resources.tables[m.sourceId]?.streamArn;
        if (!streamArn) {
          log(`[${shortId(m.logicalId)}] table ${m.sourceId} has no stream: skipped`);
          continue;
        }
        const destination = m.props.DestinationConfig?.OnFailure?.Destination;
        let onFailureQueueUrl: string | undefined;
        if (destination) {
          const arn = (() => {
            try {
              return resolveValue(destination, template, resources);
            } catch {
              return undefined;
            }
          })();
          onFailureQueueUrl = Object.values(resources.queues).find((q) => q.arn === arn)?.url;
          if (!onFailureQueueUrl) log(`[${shortId(m.logicalId)}] on-failure destination ${referencedId(destination) ?? arn} is not a local queue: not emulated`);
        }
        const poller = new StreamPoller({
          mapping: m,
          streamArn,
          streams: clients.streams,
          sqs: clients.sqs,
          registry,
          checkpoints,
          onFailureQueueUrl,
          log,
          pollIntervalMs: options.streamPollIntervalMs,
        });
        poller.start();
        pollers.push(poller);
      }
    }

    // ---- Schedules ----
    const rules = scheduleRules(template, log);
    const scheduler = new Scheduler({ rules, scale: options.scheduleScale, log, fire: (fn, event) => invoker.submit(fn, event, 'schedule') });
    if (options.schedules !== false) scheduler.start();
    teardown.add('schedules', () => scheduler.stop());

    const fnCount = registry.ids.length;
    log(
      `[local] ${stack.stackName}: ${fnCount} functions, ${Object.keys(resources.tables).length} tables, ${Object.keys(resources.queues).length} queues, ` +
        `${listRoutes(api).length} routes, ${mappings.length} event sources, ${rules.length} schedules`,
    );

    let stopping: Promise<void> | undefined;
    const localStack: LocalStack = {
      stackName: stack.stackName,
      apiUrl: gateway.url,
      endpoints,
      resources,
      functions: registry.ids,
      routes: listRoutes(api),
      schedules: rules,
      apiKeys,
      iam,
      apiKeyIds,
      clients,
      async invokeOutcome(prefix, event = {}) {
        const fn = functions.byPrefix(prefix);
        return functions.invoke(fn.id, event, 'direct');
      },
      async invoke(prefix, event = {}) {
        const fn = functions.byPrefix(prefix);
        const outcome = await functions.invoke(fn.id, event, 'direct');
        if (!outcome.ok) throw new LambdaInvocationError(fn.id, outcome.error);
        return JSON.parse(outcome.payload);
      },
      async fireSchedule(prefix) {
        const ids = rules.map((r) => r.logicalId);
        const chosen = prefix === undefined ? rules : [rules.find((r) => r.logicalId === findByPrefix(ids, prefix, 'schedule rule'))!];
        const now = new Date();
        return Promise.all(chosen.flatMap((r) => r.targets.map((t) => functions.invoke(t.functionId, scheduledEvent(r, t, now), 'schedule'))));
      },
      onInvocation: (listener) => functions.onInvocation(listener),
      functionThreads: () => functions.threads(),
      waitForInvocation(match, timeoutMs = 20_000) {
        return new Promise<InvocationRecord>((resolve, reject) => {
          const timer = setTimeout(() => {
            off();
            reject(new Error(`No matching invocation within ${timeoutMs} ms`));
          }, timeoutMs);
          const off = functions.onInvocation((r) => {
            if (!match(r)) return;
            clearTimeout(timer);
            off();
            resolve(r);
          });
        });
      },
      stop: () =>
        (stopping ??= (async () => {
          await teardown.run();
          checkpoints.flush();
        })()),
    };
    return localStack;
  } catch (err) {
    await teardown.run();
    throw err;
  }
}
