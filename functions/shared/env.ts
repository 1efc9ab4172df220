/** Environment read once per function load and checked, so a misconfigured function fails fast. */
export function requireEnv(name: string, env: NodeJS.ProcessEnv = process.env): string {
  const value = env[name];
  if (value === undefined || value === '') throw new Error(`Missing environment variable ${name}`);
  return value;
}

export function numberEnv(name: string, fallback: number, env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n)) throw new Error(`Environment variable ${name} is not a number: ${raw}`);
  return n;
}

export interface PaymentsConfig {
  readonly paymentsTable: string;
  readonly idempotencyTable: string;
  readonly auditTable: string;
  readonly recoveryTable: string;
  readonly queueUrl: string;
  readonly openPaymentsIndex: string;
  readonly auditByTenantIndex: string;
  readonly idempotencyTtlSeconds: number;
  readonly maxAmount: number;
  readonly maxRetries: number;
  readonly retryBaseSeconds: number;
  readonly retryCapSeconds: number;
  readonly leaseSeconds: number;
  readonly providerUrl: string;
  readonly providerTimeoutMs: number;
  readonly openDeadlineSeconds: number;
  readonly stuckAfterSeconds: number;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): PaymentsConfig {
  return {
    paymentsTable: requireEnv('PAYMENTS_TABLE', env),
    idempotencyTable: requireEnv('IDEMPOTENCY_TABLE', env),
    auditTable: requireEnv('AUDIT_TABLE', env),
    recoveryTable: requireEnv('RECOVERY_TABLE', env),
    queueUrl: requireEnv('PAYMENTS_QUEUE_URL', env),
    openPaymentsIndex: env.OPEN_PAYMENTS_INDEX || 'open-payments',
    auditByTenantIndex: env.AUDIT_BY_TENANT_INDEX || 'audit-by-tenant',
    idempotencyTtlSeconds: numberEnv('IDEMPOTENCY_TTL_SECONDS', 86_400, env),
    maxAmount: numberEnv('MAX_AMOUNT', 1_000_000, env),
    maxRetries: numberEnv('MAX_RETRIES', 3, env),
    retryBaseSeconds: numberEnv('RETRY_BASE_SECONDS', 2, env),
    retryCapSeconds: numberEnv('RETRY_CAP_SECONDS', 900, env),
    leaseSeconds: numberEnv('LEASE_SECONDS', 60, env),
    providerUrl: env.PROVIDER_URL ?? 'http://127.0.0.1:4010',
    providerTimeoutMs: numberEnv('PROVIDER_TIMEOUT_MS', 10_000, env),
    openDeadlineSeconds: numberEnv('OPEN_DEADLINE_SECONDS', 86_400, env),
    stuckAfterSeconds: numberEnv('STUCK_AFTER_SECONDS', 120, env),
  };
}
