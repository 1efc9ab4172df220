import { CfnOutput, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sources from 'aws-cdk-lib/aws-lambda-event-sources';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import {
  AUDIT_BY_TENANT_INDEX,
  OPEN_PAYMENTS_INDEX,
  SETTLED_INDEX,
  providerSecretName,
  type FunctionName,
} from '../functions/shared/config-contract';
import type { EnvironmentConfig } from './config';
import { PaymentsFunction } from './constructs/payments-function';

export interface PaymentsStackProps extends StackProps {
  readonly config: EnvironmentConfig;
}

const WORKER_TIMEOUT = Duration.seconds(30);

export class PaymentsStack extends Stack {
  constructor(scope: Construct, id: string, props: PaymentsStackProps) {
    super(scope, id, props);
    const { config } = props;
    const removalPolicy = config.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;
    const tableDefaults = {
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      removalPolicy,
    };

    // ---- Data ---------------------------------------------------------------------------------
    const payments = new dynamodb.Table(this, 'PaymentsTable', {
      ...tableDefaults,
      partitionKey: { name: 'id', type: dynamodb.AttributeType.STRING },
      stream: dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
    });
    // Sparse: only open payments (pending, processing, retrying) carry openShard/dueAt, so the
    // reconciler reads the open set, never the whole table.
    payments.addGlobalSecondaryIndex({
      indexName: OPEN_PAYMENTS_INDEX,
      partitionKey: { name: 'openShard', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'dueAt', type: dynamodb.AttributeType.NUMBER },
      projectionType: dynamodb.ProjectionType.ALL,
    });

    // Sparse: only successful payments, bucketed by (hour, shard), so provider reconciliation reads the
    // successes of a window without scanning the table.
    payments.addGlobalSecondaryIndex({
      indexName: SETTLED_INDEX,
      partitionKey: { name: 'settledBucket', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'settledAt', type: dynamodb.AttributeType.NUMBER },
      projectionType: dynamodb.ProjectionType.INCLUDE,
      nonKeyAttributes: ['status', 'providerChargeId', 'amountMinor', 'currency'],
    });

    const idempotencyKeys = new dynamodb.Table(this, 'IdempotencyKeysTable', {
      ...tableDefaults,
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      timeToLiveAttribute: 'expiresAt',
    });

    const auditLog = new dynamodb.Table(this, 'AuditLogTable', {
      ...tableDefaults,
      partitionKey: { name: 'paymentId', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'version', type: dynamodb.AttributeType.NUMBER },
    });
    auditLog.addGlobalSecondaryIndex({
      indexName: AUDIT_BY_TENANT_INDEX,
      // tenantId#<shard of the payment>: a tenant's audit writes spread over AUDIT_TENANT_SHARDS partitions
      // (docs/capacity.md); listing a tenant merges the shards.
      partitionKey: { name: 'tenantShard', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'tenantSort', type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.ALL,
    });

    const recoveryRuns = new dynamodb.Table(this, 'RecoveryRunsTable', {
      ...tableDefaults,
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
    });

    // ---- Queues -------------------------------------------------------------------------------
    const paymentsDlq = new sqs.Queue(this, 'PaymentsDlq', {
      retentionPeriod: Duration.days(14),
      enforceSSL: true,
    });
    const paymentsQueue = new sqs.Queue(this, 'PaymentsQueue', {
      // Six times the worker timeout, as AWS recommends for Lambda event sources.
      visibilityTimeout: Duration.seconds(WORKER_TIMEOUT.toSeconds() * 6),
      deliveryDelay: Duration.seconds(0),
      retentionPeriod: Duration.days(4),
      enforceSSL: true,
      deadLetterQueue: { queue: paymentsDlq, maxReceiveCount: config.queueMaxReceiveCount },
    });
    const auditFailures = new sqs.Queue(this, 'AuditFailuresDlq', {
      retentionPeriod: Duration.days(14),
      enforceSSL: true,
    });

    // ---- Provider secret ----------------------------------------------------------------------
    // Created with a random placeholder; the operator stores the provider API key in it after the
    // first deploy. Functions get its name in PROVIDER_SECRET_ID, never the value.
    const providerSecretId = providerSecretName(config.stage);
    const providerSecret = new secretsmanager.Secret(this, 'ProviderApiKeySecret', {
      secretName: providerSecretId,
      description:
        `Payment provider API key for ${config.stage}. Filled in by the operator after deploy ` +
        `(aws secretsmanager put-secret-value --secret-id ${providerSecretId} --secret-string <key>); ` +
        'read by the payment worker and the reconciler.',
      removalPolicy,
    });

    // ---- Functions ----------------------------------------------------------------------------
    // Each function's environment is its config contract (functions/shared/config-contract.ts):
    // value settings from the stage config, resources bound here together with their grants.
    const fn = (id: string, contract: FunctionName, entry: string, description: string, extra: Partial<{ timeout: Duration; reservedConcurrentExecutions: number }> = {}) =>
      new PaymentsFunction(this, id, { contract, entry, description, config, ...extra });

    const createPayment = fn('CreatePaymentFunction', 'createPayment', 'functions/api/create-payment.ts', 'POST /api/payments/process')
      .bindTable(idempotencyKeys, 'IDEMPOTENCY_TABLE', ['PutItem', 'GetItem'])
      .bindTable(payments, 'PAYMENTS_TABLE', ['PutItem', 'GetItem'])
      .bindQueue(paymentsQueue, 'PAYMENTS_QUEUE_URL', 'send');

    const paymentQueries = fn('PaymentQueriesFunction', 'paymentQueries', 'functions/api/payment-queries.ts', 'Payment lookups and key validation')
      .bindTable(idempotencyKeys, 'IDEMPOTENCY_TABLE', ['GetItem'])
      .bindTable(payments, 'PAYMENTS_TABLE', ['GetItem']);

    const retryPayment = fn('RetryPaymentFunction', 'retryPayment', 'functions/api/retry-payment.ts', 'POST /api/payments/{paymentID}/retry')
      .bindTable(payments, 'PAYMENTS_TABLE', ['GetItem', 'UpdateItem'])
      .bindQueue(paymentsQueue, 'PAYMENTS_QUEUE_URL', 'send');

    const auditApi = fn('AuditApiFunction', 'auditApi', 'functions/api/audit-api.ts', 'GET /api/audit/payments')
      .bindTable(auditLog, 'AUDIT_TABLE', ['Query', 'GetItem'])
      .bindTable(payments, 'PAYMENTS_TABLE', ['GetItem']);

    const worker = fn('PaymentWorkerFunction', 'worker', 'functions/worker/payment-worker.ts', 'Processes payment attempts from the queue', {
      timeout: WORKER_TIMEOUT,
      // Worker sizing arithmetic: lib/config.ts workerPaymentsPerSecond.
      ...(config.workerReservedConcurrency !== undefined ? { reservedConcurrentExecutions: config.workerReservedConcurrency } : {}),
    })
      .bindTable(payments, 'PAYMENTS_TABLE', ['GetItem', 'UpdateItem'])
      .bindQueue(paymentsQueue, 'PAYMENTS_QUEUE_URL', 'send')
      .bindSecret(providerSecret, 'PROVIDER_SECRET_ID', providerSecretId, 'read');
    worker.addEventSource(
      new sources.SqsEventSource(paymentsQueue, {
        batchSize: config.workerBatchSize,
        maxBatchingWindow: Duration.seconds(1),
        reportBatchItemFailures: true,
        maxConcurrency: config.workerMaxConcurrency,
      }),
    );

    const auditWriter = fn('AuditStreamFunction', 'auditStream', 'functions/audit/audit-stream.ts', 'Appends payment versions to the audit log')
      .bindTable(auditLog, 'AUDIT_TABLE', ['PutItem', 'GetItem', 'Query']);
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

    // RecoveryRuns: the run lock is taken with a conditional PutItem and released with a conditional
    // DeleteItem when the run finishes; runs are recorded with PutItem/UpdateItem and listed by Query.
    const runsAccess = ['PutItem', 'UpdateItem', 'DeleteItem', 'Query'] as const;
    const reconciler = fn('ReconcilerFunction', 'reconciler', 'functions/recovery/reconciler.ts', 'Finds and finishes stuck payments', {
      timeout: Duration.minutes(5),
      ...(config.reconcilerReservedConcurrency !== undefined ? { reservedConcurrentExecutions: config.reconcilerReservedConcurrency } : {}),
    })
      // BatchGetItem: the provider comparison reads the payments of a page of intents at once.
      .bindTable(payments, 'PAYMENTS_TABLE', ['Query', 'GetItem', 'BatchGetItem', 'UpdateItem'])
      // GetItem: the saved cursor the next run resumes from.
      .bindTable(recoveryRuns, 'RECOVERY_TABLE', [...runsAccess, 'GetItem'])
      .bindQueue(paymentsQueue, 'PAYMENTS_QUEUE_URL', 'send')
      .bindSecret(providerSecret, 'PROVIDER_SECRET_ID', providerSecretId, 'read');
    new events.Rule(this, 'ReconcilerSchedule', {
      description: 'Runs the payment reconciler',
      schedule: events.Schedule.rate(Duration.minutes(config.reconcileEveryMinutes)),
      targets: [new targets.LambdaFunction(reconciler, { retryAttempts: 2 })],
    });

    // Starts runs, and finishes (releasing the lock) one whose reconciler could not be started.
    const recoveryApi = fn('RecoveryApiFunction', 'recoveryApi', 'functions/api/recovery-api.ts', 'Recovery runs: start and status')
      .bindTable(recoveryRuns, 'RECOVERY_TABLE', runsAccess)
      .bindTable(payments, 'PAYMENTS_TABLE', ['Query'])
      .bindFunction(reconciler, 'RECONCILER_FUNCTION_NAME', 'invoke');

    // ---- API ----------------------------------------------------------------------------------
    const api = new apigw.RestApi(this, 'PaymentsApi', {
      restApiName: `idempotent-payments-${config.stage}`,
      apiKeySourceType: apigw.ApiKeySourceType.HEADER,
      defaultMethodOptions: { apiKeyRequired: true },
      deployOptions: {
        stageName: config.stage,
        tracingEnabled: true,
        throttlingRateLimit: config.apiThrottle.rateLimit,
        throttlingBurstLimit: config.apiThrottle.burstLimit,
      },
      cloudWatchRole: false,
    });
    // API Gateway's own errors (bad key, throttling) in the same shape as the handlers' errors.
    const errorTemplate = (code: string, retryable: boolean) => ({
      'application/json':
        `{"error":{"code":"${code}","message":$context.error.messageString,` +
        `"retryable":${retryable},"requestId":"$context.requestId"}}`,
    });
    api.addGatewayResponse('ApiKeyError', {
      type: apigw.ResponseType.INVALID_API_KEY,
      statusCode: '403',
      templates: errorTemplate('FORBIDDEN', false),
    });
    api.addGatewayResponse('MissingAuth', {
      type: apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN,
      statusCode: '403',
      templates: errorTemplate('FORBIDDEN', false),
    });
    api.addGatewayResponse('Throttled', {
      type: apigw.ResponseType.THROTTLED,
      statusCode: '429',
      templates: errorTemplate('RATE_LIMITED', true),
    });
    api.addGatewayResponse('Default5xx', {
      type: apigw.ResponseType.DEFAULT_5XX,
      templates: errorTemplate('INTERNAL_ERROR', true),
    });

    const integration = (f: lambda.IFunction) => new apigw.LambdaIntegration(f, { proxy: true });
    const apiRoot = api.root.addResource('api');
    const paymentsRes = apiRoot.addResource('payments');
    paymentsRes.addResource('process').addMethod('POST', integration(createPayment));
    paymentsRes.addResource('validate-key').addMethod('POST', integration(paymentQueries));
    paymentsRes.addResource('key').addResource('{idempotencyKey}').addMethod('GET', integration(paymentQueries));
    const onePayment = paymentsRes.addResource('{paymentID}');
    onePayment.addMethod('GET', integration(paymentQueries));
    onePayment.addResource('status').addMethod('GET', integration(paymentQueries));
    onePayment.addResource('retry').addMethod('POST', integration(retryPayment));
    apiRoot.addResource('audit').addResource('payments').addMethod('GET', integration(auditApi));
    const recoveryRes = apiRoot.addResource('recovery');
    recoveryRes.addResource('process').addMethod('POST', integration(recoveryApi));
    recoveryRes.addResource('status').addMethod('GET', integration(recoveryApi));

    const plan = api.addUsagePlan('UsagePlan', {
      name: `idempotent-payments-${config.stage}`,
      throttle: config.apiThrottle,
      apiStages: [{ api, stage: api.deploymentStage }],
    });
    for (const tenant of config.tenants) {
      plan.addApiKey(api.addApiKey(`ApiKey-${tenant}`, { apiKeyName: `${config.stage}-${tenant}`, description: `tenant ${tenant}` }));
    }

    // ---- Alarms -------------------------------------------------------------------------------
    for (const [name, queue] of [['PaymentsDlq', paymentsDlq], ['AuditFailuresDlq', auditFailures]] as const) {
      new cloudwatch.Alarm(this, `${name}NotEmpty`, {
        alarmDescription: `${name} holds messages that need an operator`,
        metric: queue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(1) }),
        threshold: 0,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }

    new CfnOutput(this, 'ApiUrl', { value: api.url });
    new CfnOutput(this, 'PaymentsTableName', { value: payments.tableName });
    new CfnOutput(this, 'PaymentsQueueUrl', { value: paymentsQueue.queueUrl });
  }
}
