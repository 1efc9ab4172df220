/**
 * Per-stage configuration, chosen with `cdk deploy -c stage=<stage>`.
 * Everything a function needs at run time is passed to it as an environment variable built from here.
 */
export const STAGES = ['dev', 'staging', 'prod'] as const;
export type Stage = (typeof STAGES)[number];

export interface EnvironmentConfig {
  readonly stage: Stage;
  /** How long an idempotency key holds its payment before it may be reused. */
  readonly idempotencyTtlHours: number;
  /** Largest accepted amount, in major units of the currency. */
  readonly maxAmount: number;
  readonly maxRetries: number;
  readonly retryBaseSeconds: number;
  readonly retryCapSeconds: number;
  /** A processing attempt owns the payment for this long; the provider call must finish well before. */
  readonly leaseSeconds: number;
  readonly providerUrl: string;
  readonly providerTimeoutMs: number;
  /** Open payments older than this are expired by the reconciler. */
  readonly openDeadlineHours: number;
  /** A pending payment with no progress for this long is re-queued by the reconciler. */
  readonly stuckAfterSeconds: number;
  readonly reconcileEveryMinutes: number;
  readonly logLevel: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  readonly logRetentionDays: number;
  readonly lambdaMemoryMb: number;
  readonly workerBatchSize: number;
  readonly workerMaxConcurrency: number;
  readonly queueMaxReceiveCount: number;
  readonly apiThrottle: { readonly rateLimit: number; readonly burstLimit: number };
  /** One API key is created per tenant; the key's id is the tenant id the handlers see. */
  readonly tenants: readonly string[];
  /** Keep data tables when the stack is deleted. */
  readonly retainData: boolean;
}

const base = {
  idempotencyTtlHours: 24,
  maxAmount: 1_000_000,
  maxRetries: 3,
  retryBaseSeconds: 2,
  retryCapSeconds: 900,
  leaseSeconds: 60,
  providerTimeoutMs: 10_000,
  openDeadlineHours: 24,
  stuckAfterSeconds: 120,
  reconcileEveryMinutes: 1,
  lambdaMemoryMb: 512,
  workerBatchSize: 10,
  queueMaxReceiveCount: 5,
} as const;

export const environments: Record<Stage, EnvironmentConfig> = {
  dev: {
    ...base,
    stage: 'dev',
    providerUrl: 'https://provider.dev.example.invalid',
    logLevel: 'DEBUG',
    logRetentionDays: 7,
    workerMaxConcurrency: 5,
    apiThrottle: { rateLimit: 100, burstLimit: 200 },
    tenants: ['tenant-1', 'tenant-2'],
    retainData: false,
  },
  staging: {
    ...base,
    stage: 'staging',
    providerUrl: 'https://provider.staging.example.invalid',
    logLevel: 'INFO',
    logRetentionDays: 30,
    workerMaxConcurrency: 20,
    apiThrottle: { rateLimit: 500, burstLimit: 1000 },
    tenants: ['tenant-1', 'tenant-2'],
    retainData: true,
  },
  prod: {
    ...base,
    stage: 'prod',
    providerUrl: 'https://provider.example.invalid',
    logLevel: 'INFO',
    logRetentionDays: 365,
    lambdaMemoryMb: 1024,
    workerMaxConcurrency: 200,
    apiThrottle: { rateLimit: 2000, burstLimit: 5000 },
    tenants: ['tenant-1'],
    retainData: true,
  },
};

export function configFor(stage: unknown): EnvironmentConfig {
  if (typeof stage !== 'string' || !(STAGES as readonly string[]).includes(stage)) {
    throw new Error(`Unknown stage "${String(stage)}": use -c stage=${STAGES.join('|')}`);
  }
  return environments[stage as Stage];
}
