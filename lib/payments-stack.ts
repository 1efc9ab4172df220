import { CfnOutput, Duration, RemovalPolicy, Stack, Validations, type CfnResource, type StackProps } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sources from 'aws-cdk-lib/aws-lambda-event-sources';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import {
  API_KEY_PRINCIPALS_METADATA,
  MAX_BODY_BYTES,
  OPEN_PAYMENTS_INDEX,
  OPEN_REFUNDS_INDEX,
  PAYMENTS_BY_TENANT_INDEX,
  REFUNDS_BY_PAYMENT_INDEX,
  WEBHOOK_EVENTS_BY_TENANT_INDEX,
  defaultOf,
  settingRelationProblems,
  type FunctionName,
} from '../functions/shared/config-contract';
import type { EnvironmentConfig } from './config';
import { ApiFirewall } from './constructs/api-firewall';
import { Monitoring, type AlarmRecipients } from './constructs/monitoring';
import { PaymentsFunction, retentionName } from './constructs/payments-function';

export interface PaymentsStackProps extends StackProps {
  readonly config: EnvironmentConfig;
  /**
   * A second copy of the stage in the same account (lib/deployment.ts): the metrics' `stage` dimension
   * becomes `<stage>-<qualifier>`, so each copy's alarms watch its own functions. Physical names come from
   * the stack name, so the copies never collide.
   */
  readonly qualifier?: string;
  /** Where alarms go. None (dev): the topic has no subscriber; alarms show in the console only. */
  readonly alarmRecipients?: AlarmRecipients;
  /**
   * Use this existing secret for the provider key (e.g. the one a destroyed copy of the stage retained)
   * instead of creating one.
   */
  readonly providerSecretArn?: string;
}

const WORKER_TIMEOUT = Duration.seconds(30);
/** A batch of deliveries runs in parallel, each attempt bounded by 10 s. */
const WEBHOOK_DELIVERY_TIMEOUT = Duration.seconds(30);

export class PaymentsStack extends Stack {
  constructor(scope: Construct, id: string, props: PaymentsStackProps) {
    super(scope, id, props);
    const { config } = props;
    // Settings that must agree with each other (an idempotency key outlives its payment): fail the synth.
    const relations = settingRelationProblems({
      idempotencyTtlSeconds: config.settings.IDEMPOTENCY_TTL_SECONDS ?? defaultOf('IDEMPOTENCY_TTL_SECONDS')!,
      openDeadlineSeconds: config.settings.OPEN_DEADLINE_SECONDS ?? defaultOf('OPEN_DEADLINE_SECONDS')!,
    });
    if (relations.length) throw new Error(`stage ${config.stage}: ${relations.join('; ')}`);
    // The value of every function's STAGE (the metrics' `stage` dimension) and of the alarms' metrics.
    const metricsStage = props.qualifier ? `${config.stage}-${props.qualifier}` : config.stage;
    const removalPolicy = config.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;
    const tableDefaults = {
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: config.deletionProtection,
      removalPolicy,
    };
    // One customer-managed key for the data that carries card tokens (payments, idempotency records,
    // audit entries) and for the queues: access to the data needs the key too, and key use is logged.
    const dataKey = new kms.Key(this, 'PaymentsDataKey', {
      description: `Idempotent payments ${config.stage}: tables holding card tokens, and the queues`,
      enableKeyRotation: true,
      removalPolicy,
    });
    const cmk = { encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED, encryptionKey: dataKey };

    // ---- Data ---------------------------------------------------------------------------------
    const payments = new dynamodb.Table(this, 'PaymentsTable', {
      ...tableDefaults,
      ...cmk,
      partitionKey: { name: 'id', type: dynamodb.AttributeType.STRING },
      stream: dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
    });
    // Sparse: only open payments (pending, processing, retrying) carry openShard/dueAt, so the
    // reconciler reads the open set, never the whole table. Keys only: a version that does not move the
    // due time (a claim that keeps it, the stored intent id) writes nothing here; the reconciler and the
    // status call read the payments themselves by id.
    // A projection cannot change in place: on a deployed table, a new projection is a new index name.
    payments.addGlobalSecondaryIndex({
      indexName: OPEN_PAYMENTS_INDEX,
      partitionKey: { name: 'openShard', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'dueAt', type: dynamodb.AttributeType.NUMBER },
      projectionType: dynamodb.ProjectionType.KEYS_ONLY,
    });

    // GET /api/payments: a tenant's payments newest first. The partition is sharded per tenant
    // (<tenantId>#<n>, n from a hash of the payment id) so one busy tenant never heats one partition;
    // the listing merges the shards. Keys only: both keys are fixed at create, so the index is written
    // once per payment, never per version; a listing page reads its payments by id.
    payments.addGlobalSecondaryIndex({
      indexName: PAYMENTS_BY_TENANT_INDEX,
      partitionKey: { name: 'tenantShard', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'createdSort', type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.KEYS_ONLY,
    });

    const idempotencyKeys = new dynamodb.Table(this, 'IdempotencyKeysTable', {
      ...tableDefaults,
      ...cmk,
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      timeToLiveAttribute: 'expiresAt',
    });

    // Keyed for a tenant's time-ordered listing, with no index (issue 20: the index cost a write per
    // entry): tenantId#<shard of the payment> spreads a tenant's audit writes over AUDIT_TENANT_SHARDS
    // partitions (docs/capacity.md), a listing merges the shards, and a payment's own entries are read by
    // key from the update times the payment keeps (Payment.versionAt). A table's key cannot change in
    // place: see the README's note on upgrading a stage deployed before issue 20.
    const auditLog = new dynamodb.Table(this, 'AuditLogTable', {
      ...tableDefaults,
      ...cmk,
      partitionKey: { name: 'tenantShard', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'tenantSort', type: dynamodb.AttributeType.STRING },
    });

    // Refunds the service owes (issue 17: captures no payment accounts for; issue 18: tenant refunds): one
    // item per refund, written before it is sent and followed until the provider says it is final.
    // Sparse index: only pending refunds carry openShard/dueAt, so the reconciler reads what is in flight.
    const refundsTable = new dynamodb.Table(this, 'RefundsTable', {
      ...tableDefaults,
      ...cmk,
      partitionKey: { name: 'id', type: dynamodb.AttributeType.STRING },
      // Refund events for tenants' webhooks are derived from it, as payment events from the Payments stream.
      stream: dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
    });
    refundsTable.addGlobalSecondaryIndex({
      indexName: OPEN_REFUNDS_INDEX,
      partitionKey: { name: 'openShard', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'dueAt', type: dynamodb.AttributeType.NUMBER },
      projectionType: dynamodb.ProjectionType.ALL,
    });

    // GET /api/payments/{paymentID}/refunds. Sparse: only tenant refunds carry byPayment (a capture no
    // payment accounts for has no payment to list it under). One payment's refunds are few and slow.
    refundsTable.addGlobalSecondaryIndex({
      indexName: REFUNDS_BY_PAYMENT_INDEX,
      partitionKey: { name: 'byPayment', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'createdAt', type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.ALL,
    });

    const recoveryRuns = new dynamodb.Table(this, 'RecoveryRunsTable', {
      ...tableDefaults,
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
    });

    // The provider rate budget: tickets per second (functions/adapters/dynamo/provider-rate-budget.ts),
    // where every worker and reconciler instance takes its provider calls' slots.
    const providerBudget = new dynamodb.Table(this, 'ProviderBudgetTable', {
      ...tableDefaults,
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      timeToLiveAttribute: 'expiresAt',
    });

    // Tenant webhooks. Endpoints: pk tenantId, sk id (a tenant's endpoints are one Query, read by every
    // event's fan-out); they hold the signing secrets, hence the data key. Events: pk the derived event id
    // (the stream consumer's conditional put), kept WEBHOOK_EVENT_RETENTION_SECONDS by TTL, listed per
    // tenant newest first from the sharded index.
    const webhookEndpointsTable = new dynamodb.Table(this, 'WebhookEndpointsTable', {
      ...tableDefaults,
      ...cmk,
      partitionKey: { name: 'tenantId', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'id', type: dynamodb.AttributeType.STRING },
    });
    const webhookEventsTable = new dynamodb.Table(this, 'WebhookEventsTable', {
      ...tableDefaults,
      ...cmk,
      partitionKey: { name: 'id', type: dynamodb.AttributeType.STRING },
      timeToLiveAttribute: 'expiresAt',
    });
    webhookEventsTable.addGlobalSecondaryIndex({
      indexName: WEBHOOK_EVENTS_BY_TENANT_INDEX,
      // <tenantId>#<n>, 4 shards per tenant (adapters/dynamo/webhook-events.ts): one tenant's events never heat one partition.
      partitionKey: { name: 'tenantShard', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'createdSort', type: dynamodb.AttributeType.STRING },
      // The listing reads the stored event text only; the fan-out mark never rewrites the index.
      projectionType: dynamodb.ProjectionType.INCLUDE,
      nonKeyAttributes: ['event'],
    });

    // ---- Queues -------------------------------------------------------------------------------
    const queueEncryption = { encryption: sqs.QueueEncryption.KMS, encryptionMasterKey: dataKey, enforceSSL: true };
    const paymentsDlq = new sqs.Queue(this, 'PaymentsDlq', {
      retentionPeriod: Duration.days(14),
      ...queueEncryption,
    });
    const paymentsQueue = new sqs.Queue(this, 'PaymentsQueue', {
      // Six times the worker timeout, as AWS recommends for Lambda event sources.
      visibilityTimeout: Duration.seconds(WORKER_TIMEOUT.toSeconds() * 6),
      deliveryDelay: Duration.seconds(0),
      retentionPeriod: Duration.days(4),
      ...queueEncryption,
      deadLetterQueue: { queue: paymentsDlq, maxReceiveCount: config.queueMaxReceiveCount },
    });
    const auditFailures = new sqs.Queue(this, 'AuditFailuresDlq', {
      retentionPeriod: Duration.days(14),
      ...queueEncryption,
    });

    // Webhook deliveries: one message per attempt, delayed by the backoff (longer waits chained past 900 s).
    // The delivery function sends a delivery it gives up on (3 days) to the DLQ itself; a message it
    // cannot handle at all lands there after maxReceiveCount. Either way the DLQ alarm pages.
    const webhookDlq = new sqs.Queue(this, 'WebhookDeliveryDlq', { retentionPeriod: Duration.days(14), ...queueEncryption });
    const webhookQueue = new sqs.Queue(this, 'WebhookDeliveryQueue', {
      visibilityTimeout: Duration.seconds(WEBHOOK_DELIVERY_TIMEOUT.toSeconds() * 6),
      retentionPeriod: Duration.days(4),
      ...queueEncryption,
      deadLetterQueue: { queue: webhookDlq, maxReceiveCount: 5 },
    });
    // Stream records the event function could not turn into events after its retries.
    const webhookEventFailures = new sqs.Queue(this, 'WebhookEventFailuresDlq', { retentionPeriod: Duration.days(14), ...queueEncryption });

    // ---- Provider secret ----------------------------------------------------------------------
    // Created with a random placeholder and a name CloudFormation makes unique (a copy of the stage, or a
    // redeploy after a destroy that retained the old secret, gets its own); the operator stores the
    // provider API key in it after the first deploy (output ProviderSecretArn). Or an existing secret,
    // `-c providerSecretArn=...`. Functions get its ARN in PROVIDER_SECRET_ID, never the value.
    const providerSecret = props.providerSecretArn
      ? secretsmanager.Secret.fromSecretCompleteArn(this, 'ProviderApiKeySecret', props.providerSecretArn)
      : new secretsmanager.Secret(this, 'ProviderApiKeySecret', {
          description:
            `Payment provider API key for ${this.stackName}. Filled in by the operator after deploy ` +
            '(aws secretsmanager put-secret-value --secret-id <this ARN> --secret-string <key>); read by the payment worker and the reconciler.',
          removalPolicy,
        });

    // The provider webhook endpoint's signing secret (Stripe's whsec_..., shown once when the endpoint is
    // registered): created empty like the API key, filled in by the operator (output ProviderWebhookSecretArn).
    const providerWebhookSecret = new secretsmanager.Secret(this, 'ProviderWebhookSecret', {
      description:
        `Signing secret of the provider webhook endpoint of ${this.stackName} (whsec_...). Filled in by the operator after registering ` +
        '<api url>/webhooks/provider with the provider; read by the provider webhook function only.',
      removalPolicy,
    });

    // Signs listing cursors (HMAC), so a client cannot edit one into another position. Generated here;
    // the name is CloudFormation's, unique per stack, so copies of a stage and a redeploy after a destroy
    // do not collide. Losing it only invalidates the cursors handed out before.
    const cursorKey = new secretsmanager.Secret(this, 'CursorSigningKey', {
      description: `Signs the listing cursors of ${this.stackName} (HMAC key); replacing it invalidates the cursors handed out before`,
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
      removalPolicy: RemovalPolicy.DESTROY,
    });

    // ---- Functions ----------------------------------------------------------------------------
    // Each function's environment is its config contract (functions/shared/config-contract.ts):
    // value settings from the stage config, resources bound here together with their grants.
    const fn = (id: string, contract: FunctionName, entry: string, description: string, extra: Partial<{ timeout: Duration; reservedConcurrentExecutions: number }> = {}) =>
      new PaymentsFunction(this, id, { contract, entry, description, config, metricsStage, ...extra });

    const createPayment = fn('CreatePaymentFunction', 'createPayment', 'functions/api/create-payment.ts', 'POST /api/payments/process')
      .bindTable(idempotencyKeys, 'IDEMPOTENCY_TABLE', ['PutItem', 'GetItem'])
      .bindTable(payments, 'PAYMENTS_TABLE', ['PutItem', 'GetItem'])
      .bindQueue(paymentsQueue, 'PAYMENTS_QUEUE_URL', 'send');

    const paymentQueries = fn('PaymentQueriesFunction', 'paymentQueries', 'functions/api/payment-queries.ts', 'Payment lookups, listing and key validation')
      .bindTable(idempotencyKeys, 'IDEMPOTENCY_TABLE', ['GetItem'])
      // BatchGetItem: the listing index holds keys only; a page's payments are read by id.
      .bindTable(payments, 'PAYMENTS_TABLE', ['GetItem', 'BatchGetItem'], [PAYMENTS_BY_TENANT_INDEX])
      .bindSecret(cursorKey, 'CURSOR_SECRET_ID', 'read');

    const retryPayment = fn('RetryPaymentFunction', 'retryPayment', 'functions/api/retry-payment.ts', 'POST /api/payments/{paymentID}/retry')
      .bindTable(payments, 'PAYMENTS_TABLE', ['GetItem', 'UpdateItem'])
      .bindQueue(paymentsQueue, 'PAYMENTS_QUEUE_URL', 'send');

    // One transaction per refund: the key record, the payment's refunded amount, the refund record.
    const refundsApi = fn('RefundsApiFunction', 'refunds', 'functions/api/refunds-api.ts', 'POST and GET /api/payments/{paymentID}/refunds')
      .bindTable(idempotencyKeys, 'IDEMPOTENCY_TABLE', ['PutItem', 'GetItem'])
      .bindTable(payments, 'PAYMENTS_TABLE', ['GetItem', 'UpdateItem'])
      .bindTable(refundsTable, 'REFUNDS_TABLE', ['PutItem', 'GetItem'], [REFUNDS_BY_PAYMENT_INDEX])
      .bindQueue(paymentsQueue, 'PAYMENTS_QUEUE_URL', 'send');

    const auditApi = fn('AuditApiFunction', 'auditApi', 'functions/api/audit-api.ts', 'GET /api/audit/payments')
      .bindTable(auditLog, 'AUDIT_TABLE', ['Query', 'GetItem', 'BatchGetItem'])
      .bindTable(payments, 'PAYMENTS_TABLE', ['GetItem'])
      .bindSecret(cursorKey, 'CURSOR_SECRET_ID', 'read');

    const worker = fn('PaymentWorkerFunction', 'worker', 'functions/worker/payment-worker.ts', 'Processes payment attempts from the queue', {
      timeout: WORKER_TIMEOUT,
      // Worker sizing arithmetic: lib/config.ts workerPaymentsPerSecond.
      ...(config.workerReservedConcurrency !== undefined ? { reservedConcurrentExecutions: config.workerReservedConcurrency } : {}),
    })
      .bindTable(payments, 'PAYMENTS_TABLE', ['GetItem', 'UpdateItem'])
      // Refund messages: the refund is read and moved on (conditional updates).
      .bindTable(refundsTable, 'REFUNDS_TABLE', ['GetItem', 'UpdateItem'])
      .bindQueue(paymentsQueue, 'PAYMENTS_QUEUE_URL', 'send')
      .bindSecret(providerSecret, 'PROVIDER_SECRET_ID', 'read')
      .bindTable(providerBudget, 'PROVIDER_BUDGET_TABLE', ['UpdateItem']);
    worker.addEventSource(
      new sources.SqsEventSource(paymentsQueue, {
        batchSize: config.workerBatchSize,
        maxBatchingWindow: Duration.seconds(1),
        reportBatchItemFailures: true,
        maxConcurrency: config.workerMaxConcurrency,
      }),
    );

    // Cancels the provider intent before the payment is written canceled: provider access like the worker's.
    const cancelPayment = fn('CancelPaymentFunction', 'cancelPayment', 'functions/api/cancel-payment.ts', 'POST /api/payments/{paymentID}/cancel', { timeout: Duration.seconds(29) })
      .bindTable(payments, 'PAYMENTS_TABLE', ['GetItem', 'UpdateItem'])
      .bindQueue(paymentsQueue, 'PAYMENTS_QUEUE_URL', 'send')
      .bindSecret(providerSecret, 'PROVIDER_SECRET_ID', 'read')
      .bindTable(providerBudget, 'PROVIDER_BUDGET_TABLE', ['UpdateItem']);

    const auditWriter = fn('AuditStreamFunction', 'auditStream', 'functions/audit/audit-stream.ts', 'Appends payment versions to the audit log')
      .bindTable(auditLog, 'AUDIT_TABLE', ['PutItem', 'GetItem']);
    auditWriter.addEventSource(
      new sources.DynamoEventSource(payments, {
        startingPosition: lambda.StartingPosition.TRIM_HORIZON,
        batchSize: 100,
        bisectBatchOnError: true,
        retryAttempts: 10,
        maxRecordAge: Duration.days(1),
        reportBatchItemFailures: true,
        onFailure: new sources.SqsDlq(auditFailures),
      }),
    );

    // Provider webhooks: verify, read the payment or refund named, queue a resolve. No provider call and no
    // write here: the worker resolves (functions/core/provider-events.ts).
    const providerWebhook = fn('ProviderWebhookFunction', 'providerWebhook', 'functions/api/provider-webhook.ts', 'POST /webhooks/provider (provider events, signature-checked)')
      .bindSecret(providerWebhookSecret, 'PROVIDER_WEBHOOK_SECRET_ID', 'read')
      .bindTable(payments, 'PAYMENTS_TABLE', ['GetItem'])
      .bindTable(refundsTable, 'REFUNDS_TABLE', ['GetItem'])
      .bindQueue(paymentsQueue, 'PAYMENTS_QUEUE_URL', 'send');

    // ---- Tenant webhooks -----------------------------------------------------------------------
    const webhookEndpointsApi = fn('WebhookEndpointsApiFunction', 'webhookEndpointsApi', 'functions/api/webhook-endpoints.ts', 'Tenant webhook endpoints: create, list, delete, rotate the secret')
      .bindTable(webhookEndpointsTable, 'WEBHOOK_ENDPOINTS_TABLE', ['PutItem', 'GetItem', 'Query', 'DeleteItem', 'UpdateItem']);
    const webhookEventsApi = fn('WebhookEventsApiFunction', 'webhookEventsApi', 'functions/api/webhook-events.ts', 'GET /api/events, POST /api/events/{eventID}/resend')
      .bindTable(webhookEventsTable, 'WEBHOOK_EVENTS_TABLE', ['GetItem', 'Query'], [WEBHOOK_EVENTS_BY_TENANT_INDEX])
      .bindTable(webhookEndpointsTable, 'WEBHOOK_ENDPOINTS_TABLE', ['Query'])
      .bindQueue(webhookQueue, 'WEBHOOK_DELIVERY_QUEUE_URL', 'send')
      .bindSecret(cursorKey, 'CURSOR_SECRET_ID', 'read');
    // Payments and Refunds streams → events (stored idempotently) → first deliveries. With the audit writer
    // this is the Payments stream's second reader, the most DynamoDB advises per shard: a third consumer
    // would need a fan-out (Kinesis Data Streams for DynamoDB, or EventBridge Pipes) instead.
    const webhookEventStream = fn('WebhookEventStreamFunction', 'webhookEventStream', 'functions/webhooks/event-stream.ts', 'Turns committed payment and refund changes into tenant events')
      .bindTable(webhookEventsTable, 'WEBHOOK_EVENTS_TABLE', ['PutItem', 'GetItem', 'UpdateItem'])
      .bindTable(webhookEndpointsTable, 'WEBHOOK_ENDPOINTS_TABLE', ['Query'])
      .bindQueue(webhookQueue, 'WEBHOOK_DELIVERY_QUEUE_URL', 'send');
    for (const table of [payments, refundsTable]) {
      webhookEventStream.addEventSource(
        new sources.DynamoEventSource(table, {
          startingPosition: lambda.StartingPosition.TRIM_HORIZON,
          batchSize: 100,
          bisectBatchOnError: true,
          retryAttempts: 10,
          maxRecordAge: Duration.days(1),
          reportBatchItemFailures: true,
          onFailure: new sources.SqsDlq(webhookEventFailures),
        }),
      );
    }
    const webhookDelivery = fn('WebhookDeliveryFunction', 'webhookDelivery', 'functions/webhooks/delivery-worker.ts', 'Delivers signed tenant webhooks, one attempt per message', {
      timeout: WEBHOOK_DELIVERY_TIMEOUT,
    })
      .bindTable(webhookEventsTable, 'WEBHOOK_EVENTS_TABLE', ['GetItem'])
      .bindTable(webhookEndpointsTable, 'WEBHOOK_ENDPOINTS_TABLE', ['GetItem'])
      .bindQueue(webhookQueue, 'WEBHOOK_DELIVERY_QUEUE_URL', 'send')
      .bindQueue(webhookDlq, 'WEBHOOK_DEAD_LETTER_QUEUE_URL', 'send');
    webhookDelivery.addEventSource(new sources.SqsEventSource(webhookQueue, { batchSize: 10, maxBatchingWindow: Duration.seconds(1), reportBatchItemFailures: true }));

    // RecoveryRuns: the run lock is taken with a conditional PutItem and released with a conditional
    // DeleteItem when the run finishes; runs are recorded with PutItem/UpdateItem and listed by Query.
    const runsAccess = ['PutItem', 'UpdateItem', 'DeleteItem', 'Query'] as const;
    const reconciler = fn('ReconcilerFunction', 'reconciler', 'functions/recovery/reconciler.ts', 'Finds and finishes stuck payments', {
      timeout: Duration.seconds(config.reconcilerTimeoutSeconds),
      ...(config.reconcilerReservedConcurrency !== undefined ? { reservedConcurrentExecutions: config.reconcilerReservedConcurrency } : {}),
    })
      // BatchGetItem: the provider comparison reads the payments of a page of intents at once.
      .bindTable(payments, 'PAYMENTS_TABLE', ['GetItem', 'BatchGetItem', 'UpdateItem'], [OPEN_PAYMENTS_INDEX])
      // GetItem: the saved cursor the next run resumes from.
      .bindTable(recoveryRuns, 'RECOVERY_TABLE', [...runsAccess, 'GetItem'])
      // PutItem: a refund owed is written before it is sent; UpdateItem moves it on; the open index is swept.
      .bindTable(refundsTable, 'REFUNDS_TABLE', ['PutItem', 'GetItem', 'UpdateItem'], [OPEN_REFUNDS_INDEX])
      .bindQueue(paymentsQueue, 'PAYMENTS_QUEUE_URL', 'send')
      .bindSecret(providerSecret, 'PROVIDER_SECRET_ID', 'read')
      .bindTable(providerBudget, 'PROVIDER_BUDGET_TABLE', ['UpdateItem']);
    const reconcilerSchedule = new events.Rule(this, 'ReconcilerSchedule', {
      description: 'Runs the payment reconciler',
      schedule: events.Schedule.rate(Duration.minutes(config.reconcileEveryMinutes)),
      targets: [new targets.LambdaFunction(reconciler, { retryAttempts: 2 })],
    });

    // Starts runs, and finishes (releasing the lock) one whose reconciler could not be started.
    const recoveryApi = fn('RecoveryApiFunction', 'recoveryApi', 'functions/api/recovery-api.ts', 'Recovery runs: start and status')
      .bindTable(recoveryRuns, 'RECOVERY_TABLE', runsAccess)
      // BatchGetItem: the status call reads the statuses of the open payments the index names.
      .bindTable(payments, 'PAYMENTS_TABLE', ['BatchGetItem'], [OPEN_PAYMENTS_INDEX])
      .bindFunction(reconciler, 'RECONCILER_FUNCTION_NAME', 'invoke');

    // ---- API ----------------------------------------------------------------------------------
    const accessLogs = new logs.LogGroup(this, 'ApiAccessLogs', {
      retention: logs.RetentionDays[retentionName(config.logRetentionDays)],
      removalPolicy,
    });
    const api = new apigw.RestApi(this, 'PaymentsApi', {
      restApiName: this.stackName,
      apiKeySourceType: apigw.ApiKeySourceType.HEADER,
      defaultMethodOptions: { apiKeyRequired: true },
      deployOptions: {
        stageName: config.stage,
        accessLogDestination: new apigw.LogGroupLogDestination(accessLogs),
        accessLogFormat: accessLogFormat(),
        // Errors only, without request or response bodies (they carry card tokens).
        loggingLevel: apigw.MethodLoggingLevel.ERROR,
        dataTraceEnabled: false,
        tracingEnabled: true,
        throttlingRateLimit: config.apiThrottle.rateLimit,
        throttlingBurstLimit: config.apiThrottle.burstLimit,
      },
      // API Gateway writes access and execution logs only once the account has a CloudWatch role: the
      // stack sets it (kept when the stack is deleted, since it is an account-wide setting).
      cloudWatchRole: true,
      cloudWatchRoleRemovalPolicy: RemovalPolicy.RETAIN,
    });
    // API Gateway's own errors (bad key, throttling, too large, timeouts) in the same shape as the
    // handlers' errors. API Gateway has no ISO clock variable: timestamp is $context.requestTime
    // (e.g. 26/Nov/2026:06:29:11 +0000).
    const errorTemplate = (code: string, retryable: boolean) => ({
      'application/json':
        `{"error":{"code":"${code}","message":$context.error.messageString,` +
        `"retryable":${retryable},"timestamp":"$context.requestTime","requestId":"$context.requestId"}}`,
    });
    const gatewayErrors: Array<[string, apigw.ResponseType, string | undefined, string, boolean]> = [
      ['ApiKeyError', apigw.ResponseType.INVALID_API_KEY, '403', 'FORBIDDEN', false],
      ['MissingAuth', apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN, '403', 'FORBIDDEN', false],
      ['AccessDenied', apigw.ResponseType.ACCESS_DENIED, '403', 'FORBIDDEN', false],
      ['Throttled', apigw.ResponseType.THROTTLED, '429', 'RATE_LIMITED', true],
      ['QuotaExceeded', apigw.ResponseType.QUOTA_EXCEEDED, '429', 'RATE_LIMITED', true],
      ['TooLarge', apigw.ResponseType.REQUEST_TOO_LARGE, '413', 'PAYLOAD_TOO_LARGE', false],
      ['IntegrationTimeout', apigw.ResponseType.INTEGRATION_TIMEOUT, '504', 'UPSTREAM_TIMEOUT', true],
      ['Default4xx', apigw.ResponseType.DEFAULT_4XX, undefined, 'BAD_REQUEST', false],
      ['Default5xx', apigw.ResponseType.DEFAULT_5XX, undefined, 'INTERNAL_ERROR', true],
    ];
    // Retryable gateway errors say when to come back, as the handlers' retryable errors do; every one
    // carries x-request-id (the error's requestId), as the handlers' responses do.
    for (const [id, type, statusCode, code, retryable] of gatewayErrors) {
      api.addGatewayResponse(id, {
        type,
        ...(statusCode ? { statusCode } : {}),
        responseHeaders: { 'x-request-id': 'context.requestId', ...(retryable ? { 'Retry-After': "'1'" } : {}) },
        templates: errorTemplate(code, retryable),
      });
    }

    const integration = (f: lambda.IFunction) => new apigw.LambdaIntegration(f, { proxy: true });
    const apiRoot = api.root.addResource('api');
    const paymentsRes = apiRoot.addResource('payments');
    paymentsRes.addMethod('GET', integration(paymentQueries));
    paymentsRes.addResource('process').addMethod('POST', integration(createPayment));
    paymentsRes.addResource('validate-key').addMethod('POST', integration(paymentQueries));
    paymentsRes.addResource('key').addResource('{idempotencyKey}').addMethod('GET', integration(paymentQueries));
    const onePayment = paymentsRes.addResource('{paymentID}');
    onePayment.addMethod('GET', integration(paymentQueries));
    onePayment.addResource('status').addMethod('GET', integration(paymentQueries));
    onePayment.addResource('retry').addMethod('POST', integration(retryPayment));
    const refundsRes = onePayment.addResource('refunds');
    refundsRes.addMethod('POST', integration(refundsApi));
    refundsRes.addMethod('GET', integration(refundsApi));
    onePayment.addResource('cancel').addMethod('POST', integration(cancelPayment));
    apiRoot.addResource('audit').addResource('payments').addMethod('GET', integration(auditApi));
    const endpointsRes = apiRoot.addResource('webhook-endpoints');
    endpointsRes.addMethod('POST', integration(webhookEndpointsApi));
    endpointsRes.addMethod('GET', integration(webhookEndpointsApi));
    const oneEndpoint = endpointsRes.addResource('{endpointID}');
    oneEndpoint.addMethod('DELETE', integration(webhookEndpointsApi));
    oneEndpoint.addResource('rotate-secret').addMethod('POST', integration(webhookEndpointsApi));
    const eventsRes = apiRoot.addResource('events');
    eventsRes.addMethod('GET', integration(webhookEventsApi));
    eventsRes.addResource('{eventID}').addResource('resend').addMethod('POST', integration(webhookEventsApi));
    const recoveryRes = apiRoot.addResource('recovery');
    recoveryRes.addResource('process').addMethod('POST', integration(recoveryApi));
    recoveryRes.addResource('status').addMethod('GET', integration(recoveryApi));
    // The provider holds no API key of ours: this route is authenticated by the event's signature instead.
    api.root.addResource('webhooks').addResource('provider').addMethod('POST', integration(providerWebhook), { apiKeyRequired: false });

    // Tenant plans (config.tenantPlans): API Gateway applies a plan's throttle and quota to each key on
    // it, so every tenant key has its own budget, below the stage's throttle.
    const tenantPlans = Object.entries(config.tenantPlans).map(([name, limits]) =>
      api.addUsagePlan(`TenantPlan-${name}`, {
        name: `${this.stackName}-tenants-${name}`,
        description: `Tenant keys on the ${name} plan: ${limits.rateLimit} requests/s, ${limits.quotaPerDay} a day, per key`,
        throttle: { rateLimit: limits.rateLimit, burstLimit: limits.burstLimit },
        quota: { limit: limits.quotaPerDay, period: apigw.Period.DAY },
        apiStages: [{ api, stage: api.deploymentStage }],
      }),
    );

    // ---- Tenancy and operators ----------------------------------------------------------------
    // API keys are credentials, not identities. Tenants and operators get their keys from the tenants
    // command (scripts/tenants.ts), without a deploy: it creates the key in API Gateway, puts it on a
    // plan, and records key id → `tenant:<id>` / `operator:<name>` in the principals table, which every
    // API function reads (cached briefly). Rotation is a second key for the same tenant, then a revoke.
    const operatorPlan = api.addUsagePlan('OperatorUsagePlan', {
      name: `${this.stackName}-operators`,
      throttle: { rateLimit: config.operatorPlan.rateLimit, burstLimit: config.operatorPlan.burstLimit },
      quota: { limit: config.operatorPlan.quotaPerDay, period: apigw.Period.DAY },
      apiStages: [{ api, stage: api.deploymentStage }],
    });
    const principals = new dynamodb.Table(this, 'PrincipalsTable', {
      ...tableDefaults,
      partitionKey: { name: 'apiKeyId', type: dynamodb.AttributeType.STRING },
    });
    // For the local stack (packages/local-stack): it gives its LOCAL_API_KEYS ids and principals here.
    (principals.node.defaultChild as CfnResource).addMetadata(API_KEY_PRINCIPALS_METADATA, { KeyIdAttribute: 'apiKeyId', PrincipalAttribute: 'principal', StatusAttribute: 'status' });
    for (const f of [createPayment, paymentQueries, retryPayment, refundsApi, cancelPayment, auditApi, recoveryApi, webhookEndpointsApi, webhookEventsApi]) f.bindTable(principals, 'PRINCIPALS_TABLE', ['GetItem']);

    const operatorIdempotency = new dynamodb.Table(this, 'OperatorIdempotencyTable', {
      ...tableDefaults,
      partitionKey: { name: 'id', type: dynamodb.AttributeType.STRING },
      timeToLiveAttribute: 'expiration',
    });
    const idempotencyAccess = ['GetItem', 'PutItem', 'UpdateItem', 'DeleteItem'] as const;
    retryPayment.bindTable(operatorIdempotency, 'OPERATOR_IDEMPOTENCY_TABLE', idempotencyAccess);
    recoveryApi.bindTable(operatorIdempotency, 'OPERATOR_IDEMPOTENCY_TABLE', idempotencyAccess);
    cancelPayment.bindTable(operatorIdempotency, 'OPERATOR_IDEMPOTENCY_TABLE', idempotencyAccess);

    // ---- Hardening (cdk-nag AwsSolutions: fixed here, or acknowledged with a reason) -------------
    // Parameters are checked by API Gateway; bodies have no models, since the handlers validate them
    // with stable error codes (README, Errors).
    const validator = api.addRequestValidator('RequestValidator', { validateRequestParameters: true, validateRequestBody: true });
    for (const method of api.methods) (method.node.defaultChild as apigw.CfnMethod).requestValidatorId = validator.requestValidatorId;
    if (config.waf) {
      new ApiFirewall(this, 'ApiFirewall', { stage: api.deploymentStage, limits: config.waf, maxBodyBytes: MAX_BODY_BYTES, metricPrefix: this.stackName });
    }
    const acknowledge = (scope: Construct, rule: string, reason: string) => Validations.of(scope).acknowledge({ id: `AwsSolutions::AwsSolutions-${rule}`, reason });
    for (const f of [createPayment, paymentQueries, retryPayment, refundsApi, cancelPayment, auditApi, worker, auditWriter, reconciler, recoveryApi, providerWebhook, webhookEndpointsApi, webhookEventsApi, webhookEventStream, webhookDelivery]) {
      acknowledge(f.role!, 'IAM5[Resource::*]', 'X-Ray PutTraceSegments/PutTelemetryRecords and DynamoDB ListStreams have no resource-level permissions');
      acknowledge(f, 'L1', 'Node.js 22 is the runtime the bundles are built and tested for (target node20 locally); moving to 24 is a tested change');
    }
    for (const rule of ['IAM5[Action::kms:ReEncrypt*]', 'IAM5[Action::kms:GenerateDataKey*]']) {
      acknowledge(auditWriter.role!, rule, "CDK's grant for the stream source's on-failure queue, on that queue's one key");
      acknowledge(webhookEventStream.role!, rule, "CDK's grant for the stream sources' on-failure queue, on that queue's one key");
    }
    acknowledge(webhookDlq, 'SQS3', 'it is itself the dead-letter queue of the webhook delivery queue');
    acknowledge(webhookEventFailures, 'SQS3', 'it is itself a dead-letter queue: the on-failure destination of the webhook event stream sources');
    acknowledge(auditFailures, 'SQS3', 'it is itself a dead-letter queue: the on-failure destination of the audit stream source');
    if (!props.providerSecretArn) acknowledge(providerSecret, 'SMG4', "a third-party provider API key: rotated at the provider by the operator, who stores the new value");
    acknowledge(providerWebhookSecret, 'SMG4', "the provider's webhook signing secret: rolled at the provider (which signs with old and new for a while), then stored here by the operator");
    acknowledge(cursorKey, 'SMG4', 'the cursor signing key is rotated by replacing it (put-secret-value); cursors live for one listing, so a rotation only makes clients restart a listing');
    acknowledge(api, 'APIG4', 'clients authenticate with API keys (usage plan); the key id maps to the tenant');
    acknowledge(api, 'COG4', 'no Cognito: clients are services with API keys, not end users');
    acknowledge(api, 'IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]', "API Gateway's account logging role: AWS's managed policy is the documented one for it");
    if (!config.waf) acknowledge(api, 'APIG3', `no WAF in ${config.stage}: a developer stage; staging and prod have the web ACL`);

    // ---- Alarms and dashboard ----------------------------------------------------------------
    const monitoring = new Monitoring(this, 'Monitoring', {
      config,
      namePrefix: this.stackName,
      metricsStage,
      recipients: props.alarmRecipients ?? { emails: [] },
      tables: { Payments: payments, IdempotencyKeys: idempotencyKeys, AuditLog: auditLog, RecoveryRuns: recoveryRuns, OperatorIdempotency: operatorIdempotency, ProviderBudget: providerBudget, Principals: principals, WebhookEndpoints: webhookEndpointsTable, WebhookEvents: webhookEventsTable },
      reconcilerSchedule,
      functions: {
        CreatePayment: createPayment,
        PaymentQueries: paymentQueries,
        RetryPayment: retryPayment,
        AuditApi: auditApi,
        Worker: worker,
        AuditStream: auditWriter,
        Reconciler: reconciler,
        RecoveryApi: recoveryApi,
        WebhookEndpointsApi: webhookEndpointsApi,
        WebhookEventsApi: webhookEventsApi,
        WebhookEventStream: webhookEventStream,
        WebhookDelivery: webhookDelivery,
      },
      api,
      paymentsQueue,
      deadLetterQueues: { PaymentsDlq: paymentsDlq, AuditFailuresDlq: auditFailures, WebhookDeliveryDlq: webhookDlq, WebhookEventFailuresDlq: webhookEventFailures },
      streamConsumer: auditWriter,
    });

    new CfnOutput(this, 'ApiUrl', { value: api.url });
    new CfnOutput(this, 'PaymentsTableName', { value: payments.tableName });
    new CfnOutput(this, 'PaymentsQueueUrl', { value: paymentsQueue.queueUrl });
    // What the tenants command and a user need after a deploy: where keys and principals go, the secret
    // to store the provider key in, where alarms go and the dashboard.
    new CfnOutput(this, 'RestApiId', { value: api.restApiId });
    new CfnOutput(this, 'PrincipalsTableName', { value: principals.tableName, description: 'API key id → tenant or operator (npm run tenants)' });
    Object.keys(config.tenantPlans).forEach((name, i) => {
      new CfnOutput(this, `TenantPlanId${name.replace(/[^A-Za-z0-9]/g, '')}`, { value: tenantPlans[i]!.usagePlanId, description: `Usage plan "${name}" for tenant keys` });
    });
    new CfnOutput(this, 'OperatorPlanId', { value: operatorPlan.usagePlanId, description: 'Usage plan for operator keys' });
    new CfnOutput(this, 'ProviderWebhookSecretArn', {
      value: providerWebhookSecret.secretArn,
      description: 'Store the provider webhook signing secret (whsec_...) here after registering <api url>/webhooks/provider with the provider',
    });
    new CfnOutput(this, 'ProviderSecretArn', {
      value: providerSecret.secretArn,
      description: 'Store the provider API key here: aws secretsmanager put-secret-value --secret-id <this> --secret-string <key>',
    });
    new CfnOutput(this, 'AlarmTopicArn', { value: monitoring.topic.topicArn });
    new CfnOutput(this, 'DashboardName', { value: monitoring.dashboard.dashboardName });
  }
}

/**
 * One JSON line per request: the standard fields plus the API key id (never the key: who called, for key
 * rotation and per-tenant traffic), the error type of API Gateway's own refusals (THROTTLED,
 * QUOTA_EXCEEDED, INVALID_API_KEY, ...), the WAF's answer, latencies and the trace id.
 */
function accessLogFormat(): apigw.AccessLogFormat {
  const f = apigw.AccessLogField;
  return apigw.AccessLogFormat.custom(
    JSON.stringify({
      requestId: f.contextRequestId(),
      requestTime: f.contextRequestTime(),
      ip: f.contextIdentitySourceIp(),
      apiKeyId: f.contextIdentityApiKeyId(),
      httpMethod: f.contextHttpMethod(),
      resourcePath: f.contextResourcePath(),
      path: f.contextPath(),
      protocol: f.contextProtocol(),
      status: f.contextStatus(),
      responseLength: f.contextResponseLength(),
      responseLatency: f.contextResponseLatency(),
      integrationLatency: f.contextIntegrationLatency(),
      errorType: f.contextErrorResponseType(),
      wafStatus: f.contextWafResponseCode(),
      xrayTraceId: f.contextXrayTraceId(),
    }),
  );
}
