/**
 * Per-stage configuration, chosen with `cdk deploy -c stage=<stage>`. Function settings are named
 * and defaulted by the config contract; a stage lists only the values where it differs.
 */
import type { StageSettings } from '../functions/shared/config-contract';

export const STAGES = ['dev', 'staging', 'prod'] as const;
export type Stage = (typeof STAGES)[number];

export interface EnvironmentConfig {
  readonly stage: Stage;
  /**
   * This stage's values of the function settings, by their environment variable. Anything not given
   * takes the default of the config contract (functions/shared/config-contract.ts), where each
   * setting's name, type, default and meaning are stated.
   */
  readonly settings: StageSettings;
  readonly reconcileEveryMinutes: number;
  readonly logLevel: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  readonly logRetentionDays: number;
  readonly lambdaMemoryMb: number;
  readonly workerBatchSize: number;
  readonly workerMaxConcurrency: number;
  readonly queueMaxReceiveCount: number;
  readonly apiThrottle: { readonly rateLimit: number; readonly burstLimit: number };
  /**
   * One API key per tenant (named `<stage>-<tenant>`). The handlers see the key's id and map it to the
   * tenant id through API_KEY_PRINCIPALS, so a tenant keeps its data when its key changes.
   */
  readonly tenants: readonly string[];
  /**
   * Key rotation: a tenant's key versions, when not just the first. `v1` is the key `<stage>-<tenant>`;
   * any other version `<stage>-<tenant>-<version>`. All listed keys work (the overlap); see README.
   */
  readonly tenantKeys?: Readonly<Record<string, readonly string[]>>;
  /** Operator API keys (their own usage plan), one per name; the actor is `operator:<name>`. */
  readonly operators: readonly string[];
  /** Keep data tables and the provider secret when the stack is deleted. */
  readonly retainData: boolean;
}

const base = {
  reconcileEveryMinutes: 1,
  lambdaMemoryMb: 512,
  workerBatchSize: 10,
  queueMaxReceiveCount: 5,
} as const;

export const environments: Record<Stage, EnvironmentConfig> = {
  dev: {
    ...base,
    stage: 'dev',
    // The contract's defaults throughout, provider included (api.stripe.com:443 over https, with the
    // key from the stage's provider secret).
    settings: {},
    logLevel: 'DEBUG',
    logRetentionDays: 7,
    workerMaxConcurrency: 5,
    apiThrottle: { rateLimit: 100, burstLimit: 200 },
    tenants: ['tenant-1', 'tenant-2'],
    operators: ['ops'],
    retainData: false,
  },
  staging: {
    ...base,
    stage: 'staging',
    settings: {},
    logLevel: 'INFO',
    logRetentionDays: 30,
    workerMaxConcurrency: 20,
    apiThrottle: { rateLimit: 500, burstLimit: 1000 },
    tenants: ['tenant-1', 'tenant-2'],
    operators: ['ops'],
    retainData: true,
  },
  prod: {
    ...base,
    stage: 'prod',
    settings: {},
    logLevel: 'INFO',
    logRetentionDays: 365,
    lambdaMemoryMb: 1024,
    workerMaxConcurrency: 200,
    apiThrottle: { rateLimit: 2000, burstLimit: 5000 },
    tenants: ['tenant-1'],
    operators: ['ops'],
    retainData: true,
  },
};

export function configFor(stage: unknown): EnvironmentConfig {
  if (typeof stage !== 'string' || !(STAGES as readonly string[]).includes(stage)) {
    throw new Error(`Unknown stage "${String(stage)}": use -c stage=${STAGES.join('|')}`);
  }
  return environments[stage as Stage];
}
