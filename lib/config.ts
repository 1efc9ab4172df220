/**
 * Per-stage configuration, chosen with `cdk deploy -c stage=<stage>`. Function settings are named
 * and defaulted by the config contract; a stage lists only the values where it differs.
 */
import { defaultOf, type StageSettings } from '../functions/shared/config-contract';

export const STAGES = ['dev', 'staging', 'prod'] as const;
export type Stage = (typeof STAGES)[number];

/** Thresholds of the stage's alarms (lib/constructs/monitoring.ts; README, Operations, says what each means). */
export interface AlarmThresholds {
  readonly api5xxRatePercent: number;
  readonly apiP99LatencyMs: number;
  readonly queueAgeSeconds: number;
  readonly streamIteratorAgeSeconds: number;
  /** Unresolved provider outcomes per reconciler run, sustained for 15 minutes. */
  readonly unknownOutcomeBacklog: number;
  readonly auditChainFailures: number;
  /** Throttled DynamoDB requests of one table (its indexes included) in 5 minutes. */
  readonly dynamoThrottledRequests: number;
  /** A function's longest invocation in 5 minutes, as a share of its timeout (0..1). */
  readonly durationShareOfTimeout: number;
  /** Minutes without a completed reconciliation run (missing data counts as none). */
  readonly reconcilerSilentMinutes: number;
}

export interface EnvironmentConfig {
  readonly stage: Stage;
  /**
   * Where the stage deploys. `account` unset: the account of the CLI's credentials (CDK_DEFAULT_ACCOUNT);
   * set it for staging and prod so a deploy with the wrong credentials fails instead of landing elsewhere.
   */
  readonly account?: string;
  readonly region: string;
  /**
   * A deploy of this stage must say where alarms go (`-c alarmEmail=...` or `-c alarmTopicArn=...`,
   * bin/app.ts). Without it (dev) the alarm topic has no subscriber: alarms show in the console and on
   * the dashboard and notify nobody.
   */
  readonly requireAlarmRecipient: boolean;
  readonly alarms: AlarmThresholds;
  /**
   * This stage's values of the function settings, by their environment variable. Anything not given
   * takes the default of the config contract (functions/shared/config-contract.ts), where each
   * setting's name, type, default and meaning are stated.
   */
  readonly settings: StageSettings;
  readonly reconcileEveryMinutes: number;
  /**
   * The reconciler's timeout: shorter than the schedule's period, so a scheduled run never overlaps
   * the next one (a run stops starting pages 20 s before it; the next resumes from its cursor).
   */
  readonly reconcilerTimeoutSeconds: number;
  readonly logLevel: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  readonly logRetentionDays: number;
  readonly lambdaMemoryMb: number;
  readonly workerBatchSize: number;
  /** Concurrent worker batches the queue's event source may run (its maximumConcurrency). */
  readonly workerMaxConcurrency: number;
  /**
   * Seconds one batch takes end to end (provider latency dominates; ~2 s measured for a batch of 10 on
   * the local stack, where messages of a batch run in parallel). Used only for the sizing arithmetic.
   */
  readonly workerBatchSeconds: number;
  /**
   * Reserved concurrency of the worker: the ceiling on concurrent provider conversations (× batch
   * size), so a queue backlog cannot turn into more provider traffic than the provider agreed to take,
   * and the worker's capacity cannot be eaten by other functions. Unset where the account's
   * concurrency is too small to reserve from (dev).
   */
  readonly workerReservedConcurrency?: number;
  /**
   * The reconciler works alone (the run lock). 2: the scheduled run plus one started by the recovery API
   * or a retried schedule, which finds the lock and returns; with 1 that second invocation would be
   * throttled. Unset where the account's concurrency is too small to reserve from (dev).
   */
  readonly reconcilerReservedConcurrency?: number;
  readonly queueMaxReceiveCount: number;
  /**
   * The stage's throttle: every caller together (API Gateway answers 429 RATE_LIMITED above it). At
   * least the tenants' peak with headroom, and above any one tenant plan's rate, so operators and
   * other tenants keep room while one tenant runs at its own limit.
   */
  readonly apiThrottle: Throttle;
  /**
   * Usage plans a tenant's API keys are put on (the tenants command, `--plan`). API Gateway applies a
   * plan's throttle and quota to each API key on it separately, so every tenant has its own budget
   * within the stage's. The first plan is the default.
   */
  readonly tenantPlans: Readonly<Record<string, UsagePlanLimits>>;
  /** The operators' plan (recovery runs, re-opens, cross-tenant status: a few calls a minute). */
  readonly operatorPlan: UsagePlanLimits;
  /** Keep data tables and the provider secret when the stack is deleted. */
  readonly retainData: boolean;
  /** Tables refuse DeleteTable (CloudFormation included) until this is turned off. */
  readonly deletionProtection: boolean;
  /** A WAF web ACL in front of the API (lib/constructs/api-firewall.ts); absent: none. */
  readonly waf?: WafLimits;
}

export interface Throttle {
  /** Requests a second, steady. */
  readonly rateLimit: number;
  /** Requests allowed at once above the steady rate. */
  readonly burstLimit: number;
}

export interface UsagePlanLimits extends Throttle {
  /** Requests a day per API key; API Gateway answers 429 RATE_LIMITED (QUOTA_EXCEEDED) past it until the next UTC day. */
  readonly quotaPerDay: number;
}

/**
 * WAF rate rules, counted over `windowSeconds` (60, 120, 300 or 600). They sit above API Gateway's
 * throttles, which answer first with the API's own 429: the WAF stops floods (a leaked key, a
 * scanner) before they reach the API, and must never block a caller that stays within its plan.
 */
export interface WafLimits {
  readonly windowSeconds: 60 | 120 | 300 | 600;
  /** Requests per window per `x-api-key` value: at least a tenant plan's rate over the window. */
  readonly perApiKey: number;
  /**
   * Requests per window per client IP, all keys together: tenants call server to server from a few
   * (NAT) addresses, so at least the stage's whole throttle over the window.
   */
  readonly perIp: number;
  /** Requests per window per client IP that carry no `x-api-key` (API Gateway refuses them anyway). */
  readonly perIpWithoutKey: number;
}

const alarms: AlarmThresholds = {
  api5xxRatePercent: 1,
  apiP99LatencyMs: 1000,
  // Retries wait up to RETRY_CAP_SECONDS (900 s) on the queue; older than that means a stalled worker.
  queueAgeSeconds: 1200,
  streamIteratorAgeSeconds: 300,
  unknownOutcomeBacklog: 1,
  auditChainFailures: 1,
  dynamoThrottledRequests: 1,
  durationShareOfTimeout: 0.8,
  reconcilerSilentMinutes: 15,
};

/** Operators call a few times a minute; 10/s lets a script page through recovery status. */
const operatorPlan: UsagePlanLimits = { rateLimit: 10, burstLimit: 20, quotaPerDay: 100_000 };

/** Reconciler runs every minute and stops 10 s before the next one is due. */
const RECONCILE_EVERY_MINUTES = 1;
const RECONCILER_TIMEOUT_SECONDS = 50;

const base = {
  reconcileEveryMinutes: RECONCILE_EVERY_MINUTES,
  reconcilerTimeoutSeconds: RECONCILER_TIMEOUT_SECONDS,
  region: 'us-east-1',
  alarms,
  lambdaMemoryMb: 512,
  workerBatchSize: 10,
  workerBatchSeconds: 2,
  queueMaxReceiveCount: 5,
} as const;

/** 10M payments a day on average. */
export const AVERAGE_PAYMENTS_PER_SECOND = 10_000_000 / 86_400; // ≈ 116
/** Peaks are 10× the average. */
export const PEAK_FACTOR = 10;

/**
 * Payments a second the worker fleet settles at full scale when the provider answers at once: every
 * allowed batch busy, each taking workerBatchSeconds for workerBatchSize messages. The provider budget
 * caps it further (providerPaymentsPerSecond); prod: 30 × 10 / 2 s = 150/s, budget 50/s.
 */
export const workerPaymentsPerSecond = (c: Pick<EnvironmentConfig, 'workerMaxConcurrency' | 'workerBatchSize' | 'workerBatchSeconds'>): number =>
  (c.workerMaxConcurrency * c.workerBatchSize) / c.workerBatchSeconds;

/** Provider calls of a payment on its happy path: create the intent, confirm it (both writes). */
export const PROVIDER_OPS_PER_PAYMENT = 2;

/** The stage's provider rate budget (PROVIDER_OPS_PER_SECOND): calls a second, the whole fleet together. */
export const providerOpsPerSecond = (c: Pick<EnvironmentConfig, 'settings'>): number =>
  c.settings.PROVIDER_OPS_PER_SECOND ?? defaultOf('PROVIDER_OPS_PER_SECOND')!;

/** Payments a second the provider budget lets the fleet settle: 100 ops/s → 50 payments/s. */
export const providerPaymentsPerSecond = (c: Pick<EnvironmentConfig, 'settings'>): number => providerOpsPerSecond(c) / PROVIDER_OPS_PER_PAYMENT;

/**
 * Concurrent worker batches derived from the provider budget: enough messages in flight to keep the
 * budget busy, few enough that a call waits at most `QUEUED_SECONDS` for its slot (each message in
 * flight waits for at most one call at a time, and the budget serves opsPerSecond of them a second).
 * That stays under PROVIDER_BUDGET_MAX_WAIT_MS (5 s), so the fleet alone never has a call refused.
 * More concurrency would not settle more payments, only make them wait in the budget.
 */
export const QUEUED_SECONDS = 3;
export const workerConcurrencyFor = (opsPerSecond: number, batchSize: number): number => Math.max(1, Math.floor((opsPerSecond * QUEUED_SECONDS) / batchSize));

export const environments: Record<Stage, EnvironmentConfig> = {
  dev: {
    ...base,
    stage: 'dev',
    requireAlarmRecipient: false,
    // The contract's defaults, provider included (api.stripe.com:443 over https, with the key from the
    // stage's provider secret), at Stripe's test-mode rate limit.
    settings: { PROVIDER_OPS_PER_SECOND: 25 },
    logLevel: 'DEBUG',
    logRetentionDays: 7,
    workerMaxConcurrency: 5,
    apiThrottle: { rateLimit: 100, burstLimit: 200 },
    tenantPlans: { standard: { rateLimit: 50, burstLimit: 100, quotaPerDay: 1_000_000 } },
    operatorPlan,
    retainData: false,
    deletionProtection: false,
  },
  staging: {
    ...base,
    stage: 'staging',
    requireAlarmRecipient: true,
    // Stripe test mode: 25 operations a second.
    settings: { PROVIDER_OPS_PER_SECOND: 25 },
    logLevel: 'INFO',
    logRetentionDays: 30,
    workerMaxConcurrency: workerConcurrencyFor(25, 10),
    apiThrottle: { rateLimit: 500, burstLimit: 1000 },
    tenantPlans: { standard: { rateLimit: 200, burstLimit: 400, quotaPerDay: 5_000_000 } },
    operatorPlan,
    retainData: true,
    deletionProtection: false,
    workerReservedConcurrency: workerConcurrencyFor(25, 10),
    reconcilerReservedConcurrency: 2,
    // As prod's rules, at staging's rates: the pipeline deploys the web ACL here first.
    waf: { windowSeconds: 60, perApiKey: 200 * 60 * 2, perIp: 500 * 60 * 2, perIpWithoutKey: 600 },
  },
  prod: {
    ...base,
    stage: 'prod',
    requireAlarmRecipient: true,
    // Stripe's default live limit for the account: 100 operations a second = 50 payments a second
    // (docs/capacity.md, "Provider rate budget": what it means and how to raise it). Raise it only with
    // the limit Stripe agreed to; the worker concurrency below follows it.
    settings: { PROVIDER_OPS_PER_SECOND: 100 },
    logLevel: 'INFO',
    logRetentionDays: 365,
    lambdaMemoryMb: 1024,
    // Derived from the provider budget: 100 ops/s × 3 s / 10 = 30 batches (300 payments in flight);
    // they settle 30 × 10 / 2 s = 150 payments/s, three times what the budget lets through.
    workerMaxConcurrency: workerConcurrencyFor(100, 10),
    workerReservedConcurrency: workerConcurrencyFor(100, 10),
    reconcilerReservedConcurrency: 2,
    // The tenants' peak is 1,157 requests/s (10x the average; prod has one tenant carrying all of it):
    // the stage allows 2,000/s, a tenant key 1,600/s (1.4x its peak), so one tenant at its limit still
    // leaves the stage 400/s for the others and the operators.
    apiThrottle: { rateLimit: 2000, burstLimit: 5000 },
    // Quota: 3 requests a payment (create and two reads) at the full 10M payments a day.
    tenantPlans: { standard: { rateLimit: 1600, burstLimit: 3200, quotaPerDay: 30_000_000 } },
    operatorPlan,
    retainData: true,
    deletionProtection: true,
    // Per key: twice a tenant plan's 1,600/s over a minute (API Gateway's own 429 answers first); per
    // IP: twice the stage's 2,000/s, since every tenant may call from one NAT address.
    waf: { windowSeconds: 60, perApiKey: 1600 * 60 * 2, perIp: 2000 * 60 * 2, perIpWithoutKey: 600 },
  },
};

/** A stage name that is not in STAGES; bin/app.ts prints its message alone, without a stack trace. */
export class UnknownStageError extends Error {
  override readonly name = 'UnknownStageError';
}

export function configFor(stage: unknown): EnvironmentConfig {
  if (typeof stage !== 'string' || !(STAGES as readonly string[]).includes(stage)) {
    throw new UnknownStageError(`Unknown stage "${String(stage)}": use -c stage=${STAGES.join('|')}`);
  }
  return environments[stage as Stage];
}
