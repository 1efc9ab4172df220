import { CfnOutput, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sources from 'aws-cdk-lib/aws-lambda-event-sources';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import type { EnvironmentConfig } from './config';
import { PaymentsFunction } from './constructs/payments-function';

export interface PaymentsStackProps extends StackProps {
  readonly config: EnvironmentConfig;
}

/** Names shared by the stack and the code that reads the indexes. */
export const OPEN_PAYMENTS_INDEX = 'open-payments';
export const AUDIT_BY_TENANT_INDEX = 'audit-by-tenant';
export const SETTLED_INDEX = 'settled-by-hour';

const WORKER_TIMEOUT = Duration.seconds(30);

type TableAction =
  | 'GetItem'
  | 'BatchGetItem'
  | 'Query'
  | 'PutItem'
  | 'UpdateItem'
  | 'DeleteItem'
  | 'ConditionCheckItem';

/** Grants exactly the listed DynamoDB actions on a table and its indexes. */
function grantTable(fn: lambda.IFunction, table: dynamodb.Table, actions: TableAction[]): void {
  fn.addToRolePolicy(
    new iam.PolicyStatement({
      actions: actions.map((a) => `dynamodb:${a}`),
      resources: [table.tableArn, `${table.tableArn}/index/*`],
    }),
  );
}

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
      partitionKey: { name: 'tenantId', type: dynamodb.AttributeType.STRING },
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

    // ---- Functions ----------------------------------------------------------------------------
    const environment: Record<string, string> = {
      PAYMENTS_TABLE: payments.tableName,
      IDEMPOTENCY_TABLE: idempotencyKeys.tableName,
      AUDIT_TABLE: auditLog.tableName,
      RECOVERY_TABLE: recoveryRuns.tableName,
      PAYMENTS_QUEUE_URL: paymentsQueue.queueUrl,
      OPEN_PAYMENTS_INDEX,
      AUDIT_BY_TENANT_INDEX,
      IDEMPOTENCY_TTL_SECONDS: String(config.idempotencyTtlHours * 3600),
      MAX_AMOUNT: String(config.maxAmount),
      MAX_RETRIES: String(config.maxRetries),
      RETRY_BASE_SECONDS: String(config.retryBaseSeconds),
      RETRY_CAP_SECONDS: String(config.retryCapSeconds),
      LEASE_SECONDS: String(config.leaseSeconds),
      PROVIDER_URL: config.providerUrl,
      PROVIDER_TIMEOUT_MS: String(config.providerTimeoutMs),
      OPEN_DEADLINE_SECONDS: String(config.openDeadlineHours * 3600),
      STUCK_AFTER_SECONDS: String(config.stuckAfterSeconds),
    };
    const fn = (id: string, entry: string, description: string, extra: Partial<{ timeout: Duration }> = {}) =>
      new PaymentsFunction(this, id, { entry, description, config, environment, ...extra });

    const createPayment = fn('CreatePaymentFunction', 'functions/api/create-payment.ts', 'POST /api/payments/process');
    grantTable(createPayment, idempotencyKeys, ['PutItem', 'GetItem']);
    grantTable(createPayment, payments, ['PutItem', 'GetItem']);
    paymentsQueue.grantSendMessages(createPayment);

    const paymentQueries = fn('PaymentQueriesFunction', 'functions/api/payment-queries.ts', 'Payment lookups and key validation');
    grantTable(paymentQueries, idempotencyKeys, ['GetItem']);
    grantTable(paymentQueries, payments, ['GetItem']);

    const retryPayment = fn('RetryPaymentFunction', 'functions/api/retry-payment.ts', 'POST /api/payments/{paymentID}/retry');
    grantTable(retryPayment, payments, ['GetItem', 'UpdateItem']);
    paymentsQueue.grantSendMessages(retryPayment);

    const auditApi = fn('AuditApiFunction', 'functions/api/audit-api.ts', 'GET /api/audit/payments');
    grantTable(auditApi, auditLog, ['Query', 'GetItem']);
    grantTable(auditApi, payments, ['GetItem']);

    const worker = fn('PaymentWorkerFunction', 'functions/worker/payment-worker.ts', 'Processes payment attempts from the queue', {
      timeout: WORKER_TIMEOUT,
    });
    grantTable(worker, payments, ['GetItem', 'UpdateItem']);
    paymentsQueue.grantSendMessages(worker);
    worker.addEventSource(
      new sources.SqsEventSource(paymentsQueue, {
        batchSize: config.workerBatchSize,
        maxBatchingWindow: Duration.seconds(1),
        reportBatchItemFailures: true,
        maxConcurrency: config.workerMaxConcurrency,
      }),
    );

    const auditWriter = fn('AuditStreamFunction', 'functions/audit/audit-stream.ts', 'Appends payment versions to the audit log');
    grantTable(auditWriter, auditLog, ['PutItem', 'GetItem', 'Query']);
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

    const reconciler = fn('ReconcilerFunction', 'functions/recovery/reconciler.ts', 'Finds and finishes stuck payments', {
      timeout: Duration.minutes(5),
    });
    grantTable(reconciler, payments, ['Query', 'GetItem', 'UpdateItem']);
    grantTable(reconciler, recoveryRuns, ['GetItem', 'PutItem', 'UpdateItem', 'Query']);
    paymentsQueue.grantSendMessages(reconciler);
    new events.Rule(this, 'ReconcilerSchedule', {
      description: 'Runs the payment reconciler',
      schedule: events.Schedule.rate(Duration.minutes(config.reconcileEveryMinutes)),
      targets: [new targets.LambdaFunction(reconciler, { retryAttempts: 2 })],
    });

    const recoveryApi = fn('RecoveryApiFunction', 'functions/api/recovery-api.ts', 'Recovery runs: start and status');
    recoveryApi.addEnvironment('RECONCILER_FUNCTION_NAME', reconciler.functionName);
    grantTable(recoveryApi, recoveryRuns, ['GetItem', 'PutItem', 'UpdateItem', 'Query']);
    grantTable(recoveryApi, payments, ['Query']);
    reconciler.grantInvoke(recoveryApi);

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
