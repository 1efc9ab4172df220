/**
 * The configuration contract, stated once: every setting a function reads from its environment (name,
 * type, default, meaning), the names and limits shared by the stack and the code (indexes, the body limit),
 * and which function reads which settings.
 *
 * Both sides read this module: the CDK stack builds each function's environment from it (and binds the
 * matching grants in the same call), and `loadConfig` parses the environment with it. So it imports
 * nothing: no CDK, no AWS SDK, no Node APIs.
 *
 * Who sets a setting:
 *   - `stack`: the CDK stack, for every function whose contract lists it (resources with their grant,
 *     values from the stage config or the default below);
 *   - `local`: never deployed; only the local stack, drills and tests set it, to point a function at a
 *     simulator or inject a fault.
 */

/** DynamoDB index names: the stack creates them under these names and the code queries them. */
export const OPEN_PAYMENTS_INDEX = 'open-payments';
/** Keyed by tenantShard (`${tenantId}#${nn}`), so one busy tenant's audit writes spread over 16 partitions. */
export const PAYMENTS_BY_TENANT_INDEX = 'payments-by-tenant';
/** Sparse index of the Refunds table: pending refunds only, by shard and due time. */
export const OPEN_REFUNDS_INDEX = 'open-refunds';
/** Sparse index of the Refunds table: tenant refunds only, by payment and creation time. */
export const REFUNDS_BY_PAYMENT_INDEX = 'refunds-by-payment';
/** WebhookEvents index by tenant shard (`${tenantId}#${n}`, 4 per tenant) and creation (GET /api/events, newest first). */
export const WEBHOOK_EVENTS_BY_TENANT_INDEX = 'events-by-tenant';

/** The `service` this deployment writes on every provider intent and refund (with its stage). */
export const SERVICE_TAG = 'idempotent-payments';

/**
 * How long a payment may still move money after its open deadline: the worker confirms nothing past the
 * deadline, so what remains is the last confirmation sent before it (one provider call, within the
 * lease), an intent the provider is still processing (seconds to minutes for cards), and the
 * reconciler's cancel-then-expire on its next run (every minute). An hour covers them with room.
 */
export const SETTLE_ALLOWANCE_SECONDS = 3600;

/**
 * Relations between settings that no single value can check. Thrown as a plain Error by the stack at
 * synth and as ConfigError by loadConfig at cold start:
 *   - an idempotency key outlives its payment: IDEMPOTENCY_TTL_SECONDS ≥ OPEN_DEADLINE_SECONDS +
 *     SETTLE_ALLOWANCE_SECONDS, so a client re-sending its request always finds the payment while that
 *     payment can still move money (defaults: 48 h ≥ 24 h + 1 h).
 */
export function settingRelationProblems(v: { readonly idempotencyTtlSeconds: number; readonly openDeadlineSeconds: number }): string[] {
  const problems: string[] = [];
  if (v.idempotencyTtlSeconds < v.openDeadlineSeconds + SETTLE_ALLOWANCE_SECONDS) {
    problems.push(
      `IDEMPOTENCY_TTL_SECONDS (${v.idempotencyTtlSeconds}) must be at least OPEN_DEADLINE_SECONDS (${v.openDeadlineSeconds}) + ${SETTLE_ALLOWANCE_SECONDS} s to settle: ` +
        'a key must outlive every payment that can still move money',
    );
  }
  return problems;
}

/**
 * CloudFormation metadata key on the principals table: tells the local stack which attributes to write
 * for its LOCAL_API_KEYS (packages/local-stack), as the tenants command writes them in AWS.
 */
export const API_KEY_PRINCIPALS_METADATA = 'LocalStack::ApiKeyPrincipals';

/** Largest request body the API takes, in bytes; the stack's WAF body rule blocks at the same size. */
export const MAX_BODY_BYTES = 16 * 1024;


export type SettingType = 'string' | 'number' | 'boolean';

/** What a setting names: a resource is bound in the stack together with the grant that uses it. */
export type SettingKind = 'value' | 'table' | 'queue' | 'secret' | 'function';

export interface SettingSpec {
  /** The `PaymentsConfig` field `loadConfig` puts the value in. */
  readonly field: string;
  readonly type: SettingType;
  readonly kind: SettingKind;
  readonly setBy: 'stack' | 'local';
  /** Used when the variable is absent or empty. A setting with neither default nor `optional` is required. */
  readonly default?: string | number | boolean;
  /** Absent means undefined (no default, not required). */
  readonly optional?: true;
  readonly doc: string;
}

const table = <F extends string>(field: F, doc: string) => ({ field, type: 'string', kind: 'table', setBy: 'stack', doc }) as const;

/** Every setting, keyed by its environment variable. */
export const SETTINGS = {
  PAYMENTS_TABLE: table('paymentsTable', 'Payments table name.'),
  IDEMPOTENCY_TABLE: table('idempotencyTable', 'IdempotencyKeys table name.'),
  AUDIT_TABLE: table('auditTable', 'AuditLog table name.'),
  RECOVERY_TABLE: table('recoveryTable', 'RecoveryRuns table name.'),
  REFUNDS_TABLE: table('refundsTable', 'Refunds table: the refunds the service owes, each followed until the provider says it is final.'),
  OPERATOR_IDEMPOTENCY_TABLE: table('operatorIdempotencyTable', 'Powertools idempotency records of operator requests sent with an Idempotency-Key.'),
  PROVIDER_BUDGET_TABLE: table('providerBudgetTable', "The provider rate budget's slot schedule, shared by every caller of the provider (worker and reconciler)."),
  PRINCIPALS_TABLE: {
    field: 'principalsTable',
    type: 'string',
    kind: 'table',
    setBy: 'stack',
    optional: true,
    doc: 'Who each API key id is (tenant or operator), written by the tenants command. Unset only in handler tests (then the key id is the tenant id).',
  },
  PRINCIPAL_CACHE_SECONDS: {
    field: 'principalCacheSeconds',
    type: 'number',
    kind: 'value',
    setBy: 'stack',
    default: 60,
    doc: 'How long a function instance keeps a key id → principal lookup (a revoked key may work this much longer there; unknown ids are kept 5 s).',
  },
  PAYMENTS_QUEUE_URL: { field: 'queueUrl', type: 'string', kind: 'queue', setBy: 'stack', doc: 'URL of the payments queue the worker consumes.' },
  RECONCILER_FUNCTION_NAME: {
    field: 'reconcilerFunctionName',
    type: 'string',
    kind: 'function',
    setBy: 'stack',
    doc: 'The reconciler function the recovery API starts asynchronously.',
  },
  OPEN_PAYMENTS_INDEX: {
    field: 'openPaymentsIndex',
    type: 'string',
    kind: 'value',
    setBy: 'stack',
    default: OPEN_PAYMENTS_INDEX,
    doc: 'Sparse index of open payments (pending, processing, retrying) by shard and due time.',
  },
  PAYMENTS_BY_TENANT_INDEX: {
    field: 'paymentsByTenantIndex',
    type: 'string',
    kind: 'value',
    setBy: 'stack',
    default: PAYMENTS_BY_TENANT_INDEX,
    doc: "Payments index by tenant shard and creation time (GET /api/payments lists a tenant's payments from it).",
  },
  IDEMPOTENCY_TTL_SECONDS: {
    field: 'idempotencyTtlSeconds',
    type: 'number',
    kind: 'value',
    setBy: 'stack',
    // 48 h: longer than a payment can stay open (OPEN_DEADLINE_SECONDS, 24 h) plus the time to settle.
    default: 172_800,
    doc: 'How long an idempotency key holds its payment before it may be reused; at least OPEN_DEADLINE_SECONDS + 1 h.',
  },
  CREATE_BY_TRANSACTION: {
    field: 'createByTransaction',
    type: 'boolean',
    kind: 'value',
    setBy: 'stack',
    default: false,
    doc:
      "Create a new key's first payment with the transaction (key record + payment) instead of one conditional put. " +
      'For the first deploy over a stage that runs a version from before the put, so that this version and a rollback both meet only key records; the next deploy turns it off.',
  },
  MAX_AMOUNT: { field: 'maxAmount', type: 'number', kind: 'value', setBy: 'stack', default: 1_000_000, doc: 'Largest accepted amount, in major units of the currency.' },
  MAX_RETRIES: { field: 'maxRetries', type: 'number', kind: 'value', setBy: 'stack', default: 3, doc: 'Retry budget of a new payment (and of an operator re-open).' },
  RETRY_BASE_SECONDS: { field: 'retryBaseSeconds', type: 'number', kind: 'value', setBy: 'stack', default: 2, doc: 'Backoff base: full jitter over base * 2^attempt.' },
  RETRY_CAP_SECONDS: { field: 'retryCapSeconds', type: 'number', kind: 'value', setBy: 'stack', default: 900, doc: 'Longest backoff between two attempts.' },
  LEASE_SECONDS: {
    field: 'leaseSeconds',
    type: 'number',
    kind: 'value',
    setBy: 'stack',
    default: 60,
    doc: 'A processing attempt owns the payment for this long; the provider call must finish well before.',
  },
  OPEN_DEADLINE_SECONDS: {
    field: 'openDeadlineSeconds',
    type: 'number',
    kind: 'value',
    setBy: 'stack',
    default: 86_400,
    doc: 'A payment is confirmed only before it is this old; open payments older than this are expired (their intent cancelled first).',
  },
  OPEN_REFUNDS_INDEX: {
    field: 'openRefundsIndex',
    type: 'string',
    kind: 'value',
    setBy: 'stack',
    default: OPEN_REFUNDS_INDEX,
    doc: 'Sparse index of pending refunds by shard and due time (the reconciler moves them on).',
  },
  REFUNDS_BY_PAYMENT_INDEX: {
    field: 'refundsByPaymentIndex',
    type: 'string',
    kind: 'value',
    setBy: 'stack',
    default: REFUNDS_BY_PAYMENT_INDEX,
    doc: "Sparse index of tenant refunds by payment (GET /api/payments/{paymentID}/refunds lists a payment's refunds from it).",
  },
  PROVIDER_KEY_RETENTION_SECONDS: {
    field: 'providerKeyRetentionSeconds',
    type: 'number',
    kind: 'value',
    setBy: 'stack',
    default: 86_400,
    doc: "How long the provider keeps an idempotency key and replays its saved answer (Stripe: 24 h). Past it, a payment's intent is looked up, never created again.",
  },
  STUCK_AFTER_SECONDS: {
    field: 'stuckAfterSeconds',
    type: 'number',
    kind: 'value',
    setBy: 'stack',
    // A pending payment's message is provably lost only after the queue's expected latency (60 s) plus
    // one visibility timeout (180 s: a worker that took the message and died hides it that long).
    default: 240,
    doc: "An open payment with no progress for this long is due for the reconciler; at least the queue's visibility timeout plus its expected latency. A claim keeps a due time at most this long past its lease end.",
  },
  RECOVERY_RUN_LEASE_SECONDS: {
    field: 'recoveryRunLeaseSeconds',
    type: 'number',
    kind: 'value',
    setBy: 'stack',
    default: 60,
    doc: "How long a reconciliation run holds the run lock; a little over the reconciler's timeout (50 s), so a live run never loses it.",
  },
  PROVIDER_API_HOST: { field: 'providerApiHost', type: 'string', kind: 'value', setBy: 'stack', default: 'api.stripe.com', doc: 'Payment provider API host.' },
  PROVIDER_API_PORT: { field: 'providerApiPort', type: 'number', kind: 'value', setBy: 'stack', default: 443, doc: 'Payment provider API port.' },
  PROVIDER_API_PROTOCOL: { field: 'providerApiProtocol', type: 'string', kind: 'value', setBy: 'stack', default: 'https', doc: 'Payment provider API protocol (https; http only for a local simulator).' },
  PROVIDER_TIMEOUT_MS: { field: 'providerTimeoutMs', type: 'number', kind: 'value', setBy: 'stack', default: 10_000, doc: 'Timeout of one provider call.' },
  PROVIDER_OPS_PER_SECOND: {
    field: 'providerOpsPerSecond',
    type: 'number',
    kind: 'value',
    setBy: 'stack',
    default: 100,
    doc: "Provider calls a second for the whole fleet (worker and reconciler together): the provider account's rate limit. Stripe: 100 live, 25 in test mode, more on request.",
  },
  PROVIDER_BUDGET_MAX_WAIT_MS: {
    field: 'providerBudgetMaxWaitMs',
    type: 'number',
    kind: 'value',
    setBy: 'stack',
    default: 5000,
    doc: 'Longest a provider call waits for its slot in the rate budget; past it the call is not sent and the payment retries (as after a provider 429).',
  },
  PROVIDER_SECRET_ID: {
    field: 'providerSecretId',
    type: 'string',
    kind: 'secret',
    setBy: 'stack',
    optional: true,
    doc: 'ARN (or name) of the Secrets Manager secret holding the provider API key (never the value).',
  },
  PROVIDER_WEBHOOK_SECRET_ID: {
    field: 'providerWebhookSecretId',
    type: 'string',
    kind: 'secret',
    setBy: 'stack',
    optional: true,
    doc: "ARN of the Secrets Manager secret holding the provider webhook endpoint's signing secret (Stripe's whsec_...), stored by the operator after registering the endpoint; never the value.",
  },
  CURSOR_SECRET_ID: {
    field: 'cursorSecretId',
    type: 'string',
    kind: 'secret',
    setBy: 'stack',
    doc: 'The Secrets Manager secret (its ARN) whose value signs listing cursors (HMAC); the stack generates it per stage. Replacing it invalidates cursors handed out before.',
  },
  BREAKER_MIN_FAILING_PAYMENTS: {
    field: 'breakerMinFailingPayments',
    type: 'number',
    kind: 'value',
    setBy: 'stack',
    default: 10,
    doc: 'Provider circuit breaker: distinct payments that must have failed within the window before it may open (one card failing again counts once).',
  },
  BREAKER_FAILURE_RATE: {
    field: 'breakerFailureRate',
    type: 'number',
    kind: 'value',
    setBy: 'stack',
    default: 0.5,
    doc: "Provider circuit breaker: opens when this share of the window's payments failed, for every tenant with traffic (0..1; 0 never opens).",
  },
  BREAKER_WINDOW_SECONDS: {
    field: 'breakerWindowSeconds',
    type: 'number',
    kind: 'value',
    setBy: 'stack',
    default: 30,
    doc: 'Provider circuit breaker: the sliding window its failure rate is computed over.',
  },
  BREAKER_OPEN_SECONDS: { field: 'breakerOpenSeconds', type: 'number', kind: 'value', setBy: 'stack', default: 30, doc: 'Provider circuit breaker: stays open this long before a probe.' },
  WEBHOOK_ENDPOINTS_TABLE: table('webhookEndpointsTable', "Tenants' webhook endpoints with their signing secrets (encrypted with the data key)."),
  WEBHOOK_EVENTS_TABLE: table('webhookEventsTable', 'Tenant notification events derived from the Payments and Refunds streams, kept for WEBHOOK_EVENT_RETENTION_SECONDS.'),
  WEBHOOK_EVENTS_BY_TENANT_INDEX: {
    field: 'webhookEventsByTenantIndex',
    type: 'string',
    kind: 'value',
    setBy: 'stack',
    default: WEBHOOK_EVENTS_BY_TENANT_INDEX,
    doc: "WebhookEvents index by tenant and creation time (GET /api/events lists a tenant's events from it).",
  },
  WEBHOOK_DELIVERY_QUEUE_URL: { field: 'webhookDeliveryQueueUrl', type: 'string', kind: 'queue', setBy: 'stack', doc: 'URL of the webhook delivery queue: one message per (event, endpoint) attempt.' },
  WEBHOOK_DEAD_LETTER_QUEUE_URL: {
    field: 'webhookDeadLetterQueueUrl',
    type: 'string',
    kind: 'queue',
    setBy: 'stack',
    doc: 'URL of the webhook dead-letter queue: deliveries given up after WEBHOOK_MAX_AGE_SECONDS (alarmed).',
  },
  WEBHOOK_RETRY_BASE_SECONDS: {
    field: 'webhookRetryBaseSeconds',
    type: 'number',
    kind: 'value',
    setBy: 'stack',
    default: 5,
    doc: 'Webhook backoff base: the first retry comes within this many seconds (full jitter over base * 2^attempt).',
  },
  WEBHOOK_RETRY_CAP_SECONDS: { field: 'webhookRetryCapSeconds', type: 'number', kind: 'value', setBy: 'stack', default: 21_600, doc: 'Longest wait between two webhook attempts (6 h).' },
  WEBHOOK_MAX_AGE_SECONDS: {
    field: 'webhookMaxAgeSeconds',
    type: 'number',
    kind: 'value',
    setBy: 'stack',
    default: 259_200,
    doc: 'A delivery not accepted this long after its first attempt (3 days) goes to the webhook dead-letter queue.',
  },
  WEBHOOK_EVENT_RETENTION_SECONDS: {
    field: 'webhookEventRetentionSeconds',
    type: 'number',
    kind: 'value',
    setBy: 'stack',
    default: 2_592_000,
    doc: 'How long an event stays listed and resendable (30 days; DynamoDB TTL removes it after).',
  },
  WEBHOOK_ALLOW_LOOPBACK_HTTP: {
    field: 'webhookAllowLoopbackHttp',
    type: 'boolean',
    kind: 'value',
    setBy: 'local',
    default: false,
    doc: 'Local only: admits http:// webhook URLs on loopback (127.0.0.1, ::1). Never deployed: staging and prod (and a deployed dev) take https to public addresses only.',
  },
  PROVIDER_URL: {
    field: 'providerUrlOverride',
    type: 'string',
    kind: 'value',
    setBy: 'local',
    optional: true,
    doc: 'Local only: the whole provider base URL (a simulator); overrides PROVIDER_API_HOST/PORT/PROTOCOL.',
  },
  PROVIDER_WEBHOOK_SECRET: {
    field: 'providerWebhookSecret',
    type: 'string',
    kind: 'value',
    setBy: 'local',
    optional: true,
    doc: 'Local only: the webhook signing secret itself (whsec_...), shared with the provider simulator. Accepted only while PROVIDER_WEBHOOK_SECRET_ID is unset or empty.',
  },
  PROVIDER_API_KEY: {
    field: 'providerApiKey',
    type: 'string',
    kind: 'value',
    setBy: 'local',
    optional: true,
    doc: 'Local only (there is no Secrets Manager locally): the provider API key itself. Accepted only while PROVIDER_SECRET_ID is unset or empty.',
  },
  FAULT_CRASH_AFTER_CHARGE: {
    field: 'faultCrashAfterCharge',
    type: 'string',
    kind: 'value',
    setBy: 'local',
    optional: true,
    doc: "Local only, recovery drills: '1' crashes after every charge; 'token' only on the first attempt of tok_crash_after_charge payments.",
  },
} as const satisfies Record<string, SettingSpec>;

export type SettingName = keyof typeof SETTINGS;
/** Settings of one kind, e.g. `SettingOf<'table'>` for `fn.bindTable`. */
export type SettingOf<K extends SettingKind> = { [N in SettingName]: (typeof SETTINGS)[N]['kind'] extends K ? N : never }[SettingName];

/** Read wherever the provider is called (the worker, and the reconciler through the same processor). */
const PROVIDER_CALLS: readonly SettingName[] = [
  'PROVIDER_API_HOST',
  'PROVIDER_API_PORT',
  'PROVIDER_API_PROTOCOL',
  'PROVIDER_TIMEOUT_MS',
  'PROVIDER_SECRET_ID',
  'PROVIDER_BUDGET_TABLE',
  'PROVIDER_OPS_PER_SECOND',
  'PROVIDER_BUDGET_MAX_WAIT_MS',
  'PROVIDER_URL',
  'PROVIDER_API_KEY',
  'BREAKER_MIN_FAILING_PAYMENTS',
  'BREAKER_FAILURE_RATE',
  'BREAKER_WINDOW_SECONDS',
  'BREAKER_OPEN_SECONDS',
  'FAULT_CRASH_AFTER_CHARGE',
];
const PROCESSING: readonly SettingName[] = [
  'PAYMENTS_TABLE',
  'PAYMENTS_QUEUE_URL',
  'REFUNDS_TABLE',
  'RETRY_BASE_SECONDS',
  'RETRY_CAP_SECONDS',
  'LEASE_SECONDS',
  'STUCK_AFTER_SECONDS',
  'OPEN_DEADLINE_SECONDS',
  'PROVIDER_KEY_RETENTION_SECONDS',
  ...PROVIDER_CALLS,
];

/**
 * What each function's code reads. The stack sets exactly the `stack` settings listed here (the infra
 * test checks the template against this), and `loadConfig` requires the required ones at cold start.
 */
export const FUNCTION_SETTINGS = {
  /** OPEN_DEADLINE_SECONDS: the key's TTL is checked against it (settingRelationProblems). */
  createPayment: ['PRINCIPALS_TABLE', 'PRINCIPAL_CACHE_SECONDS', 'PAYMENTS_TABLE', 'IDEMPOTENCY_TABLE', 'PAYMENTS_QUEUE_URL', 'IDEMPOTENCY_TTL_SECONDS', 'OPEN_DEADLINE_SECONDS', 'MAX_AMOUNT', 'MAX_RETRIES', 'STUCK_AFTER_SECONDS', 'CREATE_BY_TRANSACTION'],
  /** GET payment, status and key record; POST validate-key; GET the tenant's payments. */
  paymentQueries: ['PRINCIPALS_TABLE', 'PRINCIPAL_CACHE_SECONDS', 'PAYMENTS_TABLE', 'IDEMPOTENCY_TABLE', 'MAX_AMOUNT', 'PAYMENTS_BY_TENANT_INDEX', 'CURSOR_SECRET_ID'],
  retryPayment: ['PRINCIPALS_TABLE', 'PRINCIPAL_CACHE_SECONDS', 'OPERATOR_IDEMPOTENCY_TABLE', 'PAYMENTS_TABLE', 'PAYMENTS_QUEUE_URL', 'MAX_RETRIES', 'STUCK_AFTER_SECONDS'],
  /** POST and GET /api/payments/{paymentID}/refunds. */
  refunds: ['PRINCIPALS_TABLE', 'PRINCIPAL_CACHE_SECONDS', 'PAYMENTS_TABLE', 'IDEMPOTENCY_TABLE', 'REFUNDS_TABLE', 'REFUNDS_BY_PAYMENT_INDEX', 'PAYMENTS_QUEUE_URL', 'IDEMPOTENCY_TTL_SECONDS', 'OPEN_DEADLINE_SECONDS', 'MAX_AMOUNT', 'STUCK_AFTER_SECONDS'],
  /** POST /api/payments/{paymentID}/cancel: cancels the provider intent, so it calls the provider like the worker. */
  cancelPayment: [
    'PRINCIPALS_TABLE',
    'PRINCIPAL_CACHE_SECONDS',
    'OPERATOR_IDEMPOTENCY_TABLE',
    'PAYMENTS_TABLE',
    'PAYMENTS_QUEUE_URL',
    'RETRY_BASE_SECONDS',
    'RETRY_CAP_SECONDS',
    'LEASE_SECONDS',
    'STUCK_AFTER_SECONDS',
    'OPEN_DEADLINE_SECONDS',
    'PROVIDER_KEY_RETENTION_SECONDS',
    ...PROVIDER_CALLS,
  ],
  auditApi: ['PRINCIPALS_TABLE', 'PRINCIPAL_CACHE_SECONDS', 'AUDIT_TABLE', 'PAYMENTS_TABLE', 'CURSOR_SECRET_ID'],
  auditStream: ['AUDIT_TABLE'],
  recoveryApi: ['PRINCIPALS_TABLE', 'PRINCIPAL_CACHE_SECONDS', 'OPERATOR_IDEMPOTENCY_TABLE', 'RECOVERY_TABLE', 'RECOVERY_RUN_LEASE_SECONDS', 'PAYMENTS_TABLE', 'OPEN_PAYMENTS_INDEX', 'RECONCILER_FUNCTION_NAME'],
  worker: PROCESSING,
  /** POST /webhooks/provider: verifies the event, reads the payment or refund it names, queues a resolve. */
  providerWebhook: ['PROVIDER_WEBHOOK_SECRET_ID', 'PROVIDER_WEBHOOK_SECRET', 'PAYMENTS_TABLE', 'REFUNDS_TABLE', 'PAYMENTS_QUEUE_URL'],
  /** Tenant webhook endpoints: create (the URL checked), list, delete, rotate the secret. */
  webhookEndpointsApi: ['PRINCIPALS_TABLE', 'PRINCIPAL_CACHE_SECONDS', 'WEBHOOK_ENDPOINTS_TABLE', 'WEBHOOK_ALLOW_LOOPBACK_HTTP'],
  /** GET /api/events and POST /api/events/{id}/resend. */
  webhookEventsApi: ['PRINCIPALS_TABLE', 'PRINCIPAL_CACHE_SECONDS', 'WEBHOOK_EVENTS_TABLE', 'WEBHOOK_EVENTS_BY_TENANT_INDEX', 'WEBHOOK_ENDPOINTS_TABLE', 'WEBHOOK_DELIVERY_QUEUE_URL', 'CURSOR_SECRET_ID'],
  /** Payments and Refunds streams → stored events → first deliveries. */
  webhookEventStream: ['WEBHOOK_EVENTS_TABLE', 'WEBHOOK_ENDPOINTS_TABLE', 'WEBHOOK_DELIVERY_QUEUE_URL', 'WEBHOOK_EVENT_RETENTION_SECONDS'],
  /** One attempt per message: signed POST, then done, a delayed re-send, or the dead-letter queue. */
  webhookDelivery: [
    'WEBHOOK_EVENTS_TABLE',
    'WEBHOOK_ENDPOINTS_TABLE',
    'WEBHOOK_DELIVERY_QUEUE_URL',
    'WEBHOOK_DEAD_LETTER_QUEUE_URL',
    'WEBHOOK_RETRY_BASE_SECONDS',
    'WEBHOOK_RETRY_CAP_SECONDS',
    'WEBHOOK_MAX_AGE_SECONDS',
    'WEBHOOK_ALLOW_LOOPBACK_HTTP',
  ],
  reconciler: [...PROCESSING, 'OPEN_PAYMENTS_INDEX', 'OPEN_REFUNDS_INDEX', 'RECOVERY_TABLE', 'RECOVERY_RUN_LEASE_SECONDS'],
} as const satisfies Record<string, readonly SettingName[]>;

export type FunctionName = keyof typeof FUNCTION_SETTINGS;

/**
 * Set by the stack on every function: which contract above the environment was built for, so
 * `loadConfig` knows which settings are required. Not a setting: nothing else reads it.
 */
export const FUNCTION_CONTRACT_VARIABLE = 'PAYMENTS_FUNCTION';

/** Runtime variables every function gets besides its settings (Node, stage, Powertools). */
export const RUNTIME_VARIABLES = [
  'NODE_OPTIONS',
  'STAGE',
  'POWERTOOLS_SERVICE_NAME',
  'POWERTOOLS_METRICS_NAMESPACE',
  'POWERTOOLS_LOG_LEVEL',
  FUNCTION_CONTRACT_VARIABLE,
] as const;

export const isFunctionName = (name: string): name is FunctionName => Object.hasOwn(FUNCTION_SETTINGS, name);

/** The settings the stack sets for a function: its contract's `stack` settings. */
export function stackSettingsOf(fn: FunctionName): SettingName[] {
  return (FUNCTION_SETTINGS[fn] as readonly SettingName[]).filter((n) => SETTINGS[n].setBy === 'stack');
}

/** The whole deployed environment of a function, by variable name: runtime variables plus its stack settings. */
export function deployedVariablesOf(fn: FunctionName): string[] {
  return [...RUNTIME_VARIABLES, ...stackSettingsOf(fn)];
}

/** A setting has no default and is not optional: a function that lists it cannot start without it. */
export const isRequired = (name: SettingName): boolean => {
  const s: SettingSpec = SETTINGS[name];
  return s.default === undefined && !s.optional;
};

/** Default of a value setting, typed, for the stage config and the stack. */
export type SettingValue<N extends SettingName> = (typeof SETTINGS)[N]['type'] extends 'number'
  ? number
  : (typeof SETTINGS)[N]['type'] extends 'boolean'
    ? boolean
    : string;

/** Value settings the stack sets (not resources, not local-only). */
export type StageSettingName = { [N in SettingName]: (typeof SETTINGS)[N] extends { kind: 'value'; setBy: 'stack' } ? N : never }[SettingName];

/** Per-stage values of the stack's value settings; anything not given takes the contract's default. */
export type StageSettings = { readonly [N in StageSettingName]?: SettingValue<N> };

export function defaultOf<N extends SettingName>(name: N): SettingValue<N> | undefined {
  return (SETTINGS[name] as SettingSpec).default as SettingValue<N> | undefined;
}
