import { App, Stack } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { FUNCTION_CONTRACT_VARIABLE, FUNCTION_SETTINGS, deployedVariablesOf, isFunctionName } from '../../functions/shared/config-contract';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  AVERAGE_PAYMENTS_PER_SECOND,
  PEAK_FACTOR,
  PROVIDER_OPS_PER_PAYMENT,
  configFor,
  providerOpsPerSecond,
  providerPaymentsPerSecond,
  workerPaymentsPerSecond,
  type Stage,
} from '../../lib/config';
import { PaymentsFunction } from '../../lib/constructs/payments-function';
import { PaymentsStack } from '../../lib/payments-stack';
import { projectRoot } from '../helpers/project-root';

function synth(stage: Stage): Template {
  // Skip esbuild bundling: these tests look at the template, not the code.
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  return Template.fromStack(new PaymentsStack(app, `Test-${stage}`, { config: configFor(stage) }));
}

let t: Template;
beforeAll(() => {
  t = synth('dev');
});

const logicalId = (type: string, prefix: string) => {
  const found = Object.keys(t.findResources(type)).find((k) => k.startsWith(prefix));
  if (!found) throw new Error(`no ${type} ${prefix}`);
  return found;
};

describe('PaymentsStack', () => {
  it('rejects an unknown stage', () => {
    expect(() => configFor('qa')).toThrow(/Unknown stage/);
  });

  it('Payments table: id key, NEW_AND_OLD_IMAGES stream, PITR, sparse open-payments index', () => {
    t.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
      StreamSpecification: { StreamViewType: 'NEW_AND_OLD_IMAGES' },
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      BillingMode: 'PAY_PER_REQUEST',
      // Two indexes, no more (issue 20): each one is written on the payment's way through its states.
      GlobalSecondaryIndexes: [
        {
          IndexName: 'open-payments',
          KeySchema: [
            { AttributeName: 'openShard', KeyType: 'HASH' },
            { AttributeName: 'dueAt', KeyType: 'RANGE' },
          ],
          // Keys only: a version that keeps the due time (a claim, the intent id) writes nothing to it (issue 20).
          Projection: { ProjectionType: 'KEYS_ONLY' },
        },
        Match.objectLike({ IndexName: 'payments-by-tenant' }),
      ],
    });
  });

  it('Payments table keeps every payment: no TTL (a key\'s first payment is its key record while a later generation may hold the key)', () => {
    const payments = t.findResources('AWS::DynamoDB::Table')[logicalId('AWS::DynamoDB::Table', 'PaymentsTable')];
    expect(payments?.Properties.KeySchema).toEqual([{ AttributeName: 'id', KeyType: 'HASH' }]);
    expect(payments?.Properties.TimeToLiveSpecification).toBeUndefined();
  });

  it('IdempotencyKeys table expires records by TTL on expiresAt', () => {
    t.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
    });
  });

  it('AuditLog table: keyed by tenant shard and time, with no index to write; RecoveryRuns table', () => {
    const audit = Object.values(t.findResources('AWS::DynamoDB::Table')).find((r) => r.Properties.KeySchema[0].AttributeName === 'tenantShard');
    // Sharded: one tenant's entries spread over partitions, so its audit writes cannot throttle one; a
    // payment's own entries are read by key (Payment.versionAt), so no index costs a write per entry.
    expect(audit?.Properties.KeySchema).toEqual([
      { AttributeName: 'tenantShard', KeyType: 'HASH' },
      { AttributeName: 'tenantSort', KeyType: 'RANGE' },
    ]);
    expect(audit?.Properties.GlobalSecondaryIndexes).toBeUndefined();
    t.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
    });
    t.resourceCountIs('AWS::DynamoDB::Table', 10); // + operator idempotency records, refunds, provider rate budget, principals, webhook endpoints and events
  });

  it('Refunds table: one item per refund owed, a sparse open-refunds index the reconciler sweeps; worker and reconciler hold only what they call', () => {
    t.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
      GlobalSecondaryIndexes: [
        Match.objectLike({
          IndexName: 'open-refunds',
          KeySchema: [
            { AttributeName: 'openShard', KeyType: 'HASH' },
            { AttributeName: 'dueAt', KeyType: 'RANGE' },
          ],
        }),
        Match.objectLike({
          IndexName: 'refunds-by-payment',
          KeySchema: [
            { AttributeName: 'byPayment', KeyType: 'HASH' },
            { AttributeName: 'createdAt', KeyType: 'RANGE' },
          ],
        }),
      ],
    });
    const refundsTable = Object.keys(t.findResources('AWS::DynamoDB::Table')).find((id) => id.startsWith('RefundsTable'))!;
    const actionsOn = (fn: string) => {
      const policies = Object.values(t.findResources('AWS::IAM::Policy')).filter((p) => JSON.stringify(p.Properties.Roles).includes(fn));
      const statements = policies.flatMap((p) => p.Properties.PolicyDocument.Statement as Array<{ Action: string | string[]; Resource: unknown }>);
      return statements.filter((st) => JSON.stringify(st.Resource).includes(refundsTable)).flatMap((st) => [st.Action].flat()).sort();
    };
    expect(actionsOn('PaymentWorkerFunction')).toEqual(['dynamodb:GetItem', 'dynamodb:UpdateItem']);
    expect(actionsOn('ReconcilerFunction')).toEqual(['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Query', 'dynamodb:UpdateItem']);
    expect(actionsOn('CreatePaymentFunction')).toEqual([]);
    // The refunds API makes a refund (PutItem in its transaction), replays it (GetItem) and lists by payment.
    expect(actionsOn('RefundsApiFunction')).toEqual(['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Query']);
  });

  it('payments queue redrives to a DLQ and outlives the worker timeout', () => {
    const dlq = logicalId('AWS::SQS::Queue', 'PaymentsDlq');
    t.hasResourceProperties('AWS::SQS::Queue', {
      VisibilityTimeout: 180,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [dlq, 'Arn'] }, maxReceiveCount: 5 },
    });
    t.hasResourceProperties('AWS::SQS::Queue', { MessageRetentionPeriod: 14 * 86400 });
  });

  it.each(['dev', 'staging', 'prod'] as const)(
    '%s: the worker fleet is sized from the provider rate budget: it can use all of it, and never queues calls past the wait bound',
    (stage) => {
      const c = configFor(stage);
      const ops = providerOpsPerSecond(c);
      const tt = stage === 'dev' ? t : synth(stage);
      for (const prefix of ['PaymentWorkerFunction', 'ReconcilerFunction']) {
        const env = Object.entries(tt.findResources('AWS::Lambda::Function')).find(([id]) => id.startsWith(prefix))![1].Properties.Environment.Variables;
        expect(Number(env.PROVIDER_OPS_PER_SECOND), prefix).toBe(ops);
        const maxWaitSeconds = Number(env.PROVIDER_BUDGET_MAX_WAIT_MS) / 1000;
        // Each message in flight waits for one call at a time; the budget serves `ops` a second: the last
        // one in line waits (in flight) / ops seconds, which must stay under the bound.
        expect(c.workerMaxConcurrency * c.workerBatchSize, prefix).toBeLessThanOrEqual(ops * maxWaitSeconds);
      }
      // The fleet is not what limits: it settles more than the budget lets through.
      expect(workerPaymentsPerSecond(c)).toBeGreaterThanOrEqual(1.3 * providerPaymentsPerSecond(c));
    },
  );

  it("prod at Stripe's default live limit: 100 operations/s = 50 payments/s, short of the 10× peak, as docs/capacity.md says", () => {
    const prod = configFor('prod');
    expect(AVERAGE_PAYMENTS_PER_SECOND).toBeCloseTo(115.7, 1);
    expect(providerOpsPerSecond(prod)).toBe(100);
    expect(providerPaymentsPerSecond(prod)).toBe(50);
    const capacity = readFileSync(path.join(projectRoot, 'docs/capacity.md'), 'utf8');
    expect(capacity).toContain('100 operations/s');
    expect(capacity).toContain('50 payments/s');
    // The peak needs this many operations a second from the provider; the doc says how to get them.
    const needed = Math.ceil(PEAK_FACTOR * AVERAGE_PAYMENTS_PER_SECOND * PROVIDER_OPS_PER_PAYMENT);
    expect(capacity).toContain(`${needed.toLocaleString('en-US')} operations/s`);
  });

  it('prod reserves the concurrency its worker and reconciler may use', () => {
    const prod = configFor('prod');
    const p = synth('prod');
    p.hasResourceProperties('AWS::Lambda::EventSourceMapping', { BatchSize: prod.workerBatchSize, ScalingConfig: { MaximumConcurrency: prod.workerMaxConcurrency } });
    p.hasResourceProperties('AWS::Lambda::Function', { Description: 'Processes payment attempts from the queue', ReservedConcurrentExecutions: prod.workerMaxConcurrency });
    p.hasResourceProperties('AWS::Lambda::Function', { Description: 'Finds and finishes stuck payments', ReservedConcurrentExecutions: 2 });
  });

  it('worker consumes the queue with partial batch responses', () => {
    t.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: { 'Fn::GetAtt': [logicalId('AWS::SQS::Queue', 'PaymentsQueue'), 'Arn'] },
      FunctionName: { Ref: logicalId('AWS::Lambda::Function', 'PaymentWorkerFunction') },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      BatchSize: 10,
    });
  });

  it('audit function reads the Payments stream with bounded retries, bisect and an on-failure queue', () => {
    t.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: { 'Fn::GetAtt': [logicalId('AWS::DynamoDB::Table', 'PaymentsTable'), 'StreamArn'] },
      FunctionName: { Ref: logicalId('AWS::Lambda::Function', 'AuditStreamFunction') },
      StartingPosition: 'TRIM_HORIZON',
      BisectBatchOnFunctionError: true,
      MaximumRetryAttempts: 10,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [logicalId('AWS::SQS::Queue', 'AuditFailuresDlq'), 'Arn'] } } },
    });
  });

  it('a schedule runs the reconciler', () => {
    t.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(1 minute)',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [logicalId('AWS::Lambda::Function', 'ReconcilerFunction'), 'Arn'] } })],
    });
  });

  it.each(['dev', 'staging', 'prod'] as const)(
    "%s: the reconciler's schedule, timeout, run lock and reserved concurrency agree (a normal long run throttles nothing)",
    (stage) => {
      const c = configFor(stage);
      const tt = stage === 'dev' ? t : synth(stage);
      const fn = Object.entries(tt.findResources('AWS::Lambda::Function')).find(([id]) => id.startsWith('ReconcilerFunction'))![1].Properties;
      const periodSeconds = c.reconcileEveryMinutes * 60;
      // A run ends before the next one is due: scheduled runs never overlap.
      expect(fn.Timeout).toBe(c.reconcilerTimeoutSeconds);
      expect(fn.Timeout).toBeLessThan(periodSeconds);
      // A live run never loses the lock, and a crashed one holds it for little more than a period.
      const lease = Number(fn.Environment.Variables.RECOVERY_RUN_LEASE_SECONDS);
      expect(lease).toBeGreaterThan(fn.Timeout);
      expect(lease).toBeLessThanOrEqual(2 * periodSeconds);
      // Room for the scheduled run and one more (an API-started run, a retried schedule) that finds the lock.
      if (fn.ReservedConcurrentExecutions !== undefined) expect(fn.ReservedConcurrentExecutions).toBeGreaterThanOrEqual(2);
      const rule = Object.values(tt.findResources('AWS::Events::Rule'))[0]!.Properties;
      expect(rule.ScheduleExpression).toBe(`rate(${c.reconcileEveryMinutes} minute${c.reconcileEveryMinutes === 1 ? '' : 's'})`);
    },
  );

  it('functions: Node.js 22 on ARM64, tracing, explicit log groups, each its contract as environment', () => {
    const fns = t.findResources('AWS::Lambda::Function');
    expect(Object.keys(fns)).toHaveLength(15); // + the provider webhook, refunds and cancel functions, the two webhook APIs, the event stream and delivery functions
    for (const fn of Object.values(fns)) {
      expect(fn.Properties).toMatchObject({
        Runtime: 'nodejs22.x',
        Architectures: ['arm64'],
        TracingConfig: { Mode: 'Active' },
        LoggingConfig: { LogGroup: expect.anything() },
      });
      const env = fn.Properties.Environment.Variables;
      expect(Object.keys(env)).toEqual(expect.arrayContaining(['NODE_OPTIONS', 'POWERTOOLS_SERVICE_NAME', FUNCTION_CONTRACT_VARIABLE]));
    }
    // One per function, and the API's access logs.
    t.resourceCountIs('AWS::Logs::LogGroup', 16);
  });

  it('REST API: twenty routes, each requiring an API key but the provider webhook; keys come from the tenants command, not the template', () => {
    const methods = Object.values(t.findResources('AWS::ApiGateway::Method'));
    expect(methods).toHaveLength(20);
    const webhookResource = Object.entries(t.findResources('AWS::ApiGateway::Resource')).find(([, r]) => r.Properties.PathPart === 'provider')![0];
    for (const m of methods) {
      // The provider holds no key of ours: its events are authenticated by their signature instead.
      const isWebhook = m.Properties.ResourceId?.Ref === webhookResource;
      expect(m.Properties.ApiKeyRequired, JSON.stringify(m.Properties.ResourceId)).toBe(!isWebhook);
      expect(m.Properties.Integration.Type).toBe('AWS_PROXY');
    }
    const resources = t.findResources('AWS::ApiGateway::Resource');
    const parts = Object.values(resources).map((r) => r.Properties.PathPart);
    expect(parts).toEqual(
      expect.arrayContaining(['api', 'payments', 'process', 'validate-key', 'key', '{idempotencyKey}', '{paymentID}', 'status', 'retry', 'refunds', 'cancel', 'audit', 'recovery', 'webhook-endpoints', '{endpointID}', 'rotate-secret', 'events', '{eventID}', 'resend']),
    );
    t.resourceCountIs('AWS::ApiGateway::ApiKey', 0);
    t.resourceCountIs('AWS::ApiGateway::UsagePlan', 2); // the tenant plan and the operators'
    t.hasResourceProperties('AWS::ApiGateway::RestApi', { ApiKeySourceType: 'HEADER' });
    t.hasResourceProperties('AWS::ApiGateway::GatewayResponse', { ResponseType: 'INVALID_API_KEY', StatusCode: '403' });
  });

  it("lists a tenant's payments from a per-tenant sharded index, readable only by the queries function", () => {
    t.hasResourceProperties('AWS::DynamoDB::Table', {
      GlobalSecondaryIndexes: Match.arrayWith([
        {
          IndexName: 'payments-by-tenant',
          KeySchema: [
            { AttributeName: 'tenantShard', KeyType: 'HASH' },
            { AttributeName: 'createdSort', KeyType: 'RANGE' },
          ],
          // Keys only: written once per payment, not once per version; the listing reads payments by id.
          Projection: { ProjectionType: 'KEYS_ONLY' },
        },
      ]),
    });
    const queries = logicalId('AWS::Lambda::Function', 'PaymentQueriesFunction');
    const env = t.findResources('AWS::Lambda::Function')[queries]!.Properties.Environment.Variables;
    expect(env.PAYMENTS_BY_TENANT_INDEX).toBe('payments-by-tenant');
  });

  it("every gateway error carries x-request-id, API Gateway's request id (the body's requestId)", () => {
    const responses = Object.values(t.findResources('AWS::ApiGateway::GatewayResponse'));
    expect(responses.length).toBeGreaterThan(5);
    for (const r of responses) {
      expect(r.Properties.ResponseParameters?.['gatewayresponse.header.x-request-id'], r.Properties.ResponseType).toBe('context.requestId');
      expect(r.Properties.ResponseTemplates['application/json'], r.Properties.ResponseType).toContain('"requestId":"$context.requestId"');
    }
  });

  it('retryable gateway errors (429, 5xx) carry Retry-After', () => {
    for (const type of ['THROTTLED', 'DEFAULT_5XX']) {
      t.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
        ResponseType: type,
        ResponseParameters: { 'gatewayresponse.header.Retry-After': "'1'" },
      });
    }
  });

  it('grants least privilege: the create function may not update or delete payments', () => {
    const policies = t.findResources('AWS::IAM::Policy');
    const createRole = logicalId('AWS::IAM::Role', 'CreatePaymentFunctionServiceRole');
    const policy = Object.values(policies).find((p) => p.Properties.Roles.some((r: { Ref: string }) => r.Ref === createRole))!;
    const actions = policy.Properties.PolicyDocument.Statement.flatMap((s: { Action: string | string[] }) => [s.Action].flat());
    expect(actions).toEqual(expect.arrayContaining(['dynamodb:PutItem', 'dynamodb:GetItem']));
    expect(actions).not.toContain('dynamodb:DeleteItem');
    expect(actions).not.toContain('dynamodb:UpdateItem');
    expect(actions).not.toContain('dynamodb:Scan');
    expect(actions.some((a: string) => a.startsWith('sqs:SendMessage'))).toBe(true);
  });

  it("each function's environment is exactly what its config contract says it reads", () => {
    const fns = Object.entries(t.findResources('AWS::Lambda::Function'));
    const contracts = fns.map(([id, fn]) => {
      const env: Record<string, unknown> = fn.Properties.Environment.Variables;
      const contract = String(env[FUNCTION_CONTRACT_VARIABLE]);
      expect(isFunctionName(contract), id).toBe(true);
      expect(Object.keys(env).sort(), id).toEqual(deployedVariablesOf(contract as keyof typeof FUNCTION_SETTINGS).sort());
      return contract;
    });
    // Every contract is deployed, once.
    expect(contracts.sort()).toEqual(Object.keys(FUNCTION_SETTINGS).sort());
  });

  const statementsOf = (rolePrefix: string) => {
    const role = logicalId('AWS::IAM::Role', rolePrefix);
    return Object.values(t.findResources('AWS::IAM::Policy'))
      .filter((p) => p.Properties.Roles.some((r: { Ref: string }) => r.Ref === role))
      .flatMap((p) => p.Properties.PolicyDocument.Statement as { Action: string | string[]; Resource: unknown }[]);
  };
  const actionsOn = (rolePrefix: string, resourceId: string) =>
    statementsOf(rolePrefix)
      .filter((s) => JSON.stringify(s.Resource).includes(`"${resourceId}"`))
      .flatMap((s) => [s.Action].flat());
  /** The roles with any statement on the resource. */
  const readersOf = (resourceId: string) =>
    Object.values(t.findResources('AWS::IAM::Policy'))
      .filter((p) => (p.Properties.PolicyDocument.Statement as { Resource: unknown }[]).some((st) => JSON.stringify(st.Resource).includes(`"${resourceId}"`)))
      .flatMap((p) => p.Properties.Roles.map((r: { Ref: string }) => r.Ref))
      .sort();

  it('a pending payment is re-queued only once its message is provably lost: stuck-after ≥ visibility timeout + 60 s latency', () => {
    const visibility = Number(t.findResources('AWS::SQS::Queue')[logicalId('AWS::SQS::Queue', 'PaymentsQueue')]!.Properties.VisibilityTimeout);
    const stuck = Object.values(t.findResources('AWS::Lambda::Function'))
      .map((fn) => fn.Properties.Environment.Variables.STUCK_AFTER_SECONDS)
      .filter((v) => v !== undefined)
      .map(Number);
    expect(stuck.length).toBeGreaterThan(0);
    for (const s of stuck) expect(s).toBeGreaterThanOrEqual(visibility + 60);
  });

  it('the reconciler reads payments in batches and its saved cursor: BatchGetItem on Payments, GetItem on RecoveryRuns', () => {
    expect(actionsOn('ReconcilerFunctionServiceRole', logicalId('AWS::DynamoDB::Table', 'PaymentsTable'))).toContain('dynamodb:BatchGetItem');
    // The listing index holds keys only: a listing page reads its payments by id.
    expect(actionsOn('PaymentQueriesFunctionServiceRole', logicalId('AWS::DynamoDB::Table', 'PaymentsTable'))).toContain('dynamodb:BatchGetItem');
    expect(actionsOn('ReconcilerFunctionServiceRole', logicalId('AWS::DynamoDB::Table', 'RecoveryRunsTable'))).toContain('dynamodb:GetItem');
    // The open index holds keys only: the status call reads the statuses of its sample by id.
    expect(actionsOn('RecoveryApiFunctionServiceRole', logicalId('AWS::DynamoDB::Table', 'PaymentsTable'))).toContain('dynamodb:BatchGetItem');
  });

  it('the reconciler and the recovery API may release the run lock: DeleteItem on RecoveryRuns', () => {
    const runs = logicalId('AWS::DynamoDB::Table', 'RecoveryRunsTable');
    expect(actionsOn('ReconcilerFunctionServiceRole', runs)).toEqual(expect.arrayContaining(['dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem', 'dynamodb:Query']));
    expect(actionsOn('RecoveryApiFunctionServiceRole', runs)).toContain('dynamodb:DeleteItem');
    expect(actionsOn('ReconcilerFunctionServiceRole', runs)).not.toContain('dynamodb:Scan');
  });

  it('a provider secret per stack, its ARN (not value) in PROVIDER_SECRET_ID, readable only by the worker, the reconciler and the cancel route', () => {
    t.hasResourceProperties('AWS::SecretsManager::Secret', { Description: Match.stringLikeRegexp('put-secret-value') });
    const secret = logicalId('AWS::SecretsManager::Secret', 'ProviderApiKeySecret');
    const readers = ['PaymentWorkerFunctionServiceRole', 'ReconcilerFunctionServiceRole', 'CancelPaymentFunctionServiceRole'];
    expect(readersOf(secret)).toEqual(readers.map((r) => logicalId('AWS::IAM::Role', r)).sort());
    for (const role of readers) {
      expect(actionsOn(role, secret)).toEqual(['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret']);
    }
    t.resourceCountIs('AWS::SecretsManager::ResourcePolicy', 0);
    for (const fn of ['PaymentWorkerFunction', 'ReconcilerFunction']) {
      const env = t.findResources('AWS::Lambda::Function')[logicalId('AWS::Lambda::Function', fn)]!.Properties.Environment.Variables;
      expect(env.PROVIDER_SECRET_ID).toEqual({ Ref: secret });
      expect(env).toMatchObject({ PROVIDER_API_HOST: 'api.stripe.com', PROVIDER_API_PORT: '443', PROVIDER_API_PROTOCOL: 'https' });
      expect(env.PROVIDER_API_KEY).toBeUndefined();
    }
  });

  it('a generated cursor signing key, its ARN in CURSOR_SECRET_ID, readable only by the three listing functions', () => {
    const secret = logicalId('AWS::SecretsManager::Secret', 'CursorSigningKey');
    const props = t.findResources('AWS::SecretsManager::Secret')[secret]!.Properties;
    // No fixed name: CloudFormation's is unique per stack (copies of a stage, a redeploy after a destroy).
    expect(props.Name).toBeUndefined();
    expect(props.GenerateSecretString).toMatchObject({ PasswordLength: 64, ExcludePunctuation: true });
    expect(readersOf(secret)).toEqual(
      [logicalId('AWS::IAM::Role', 'AuditApiFunctionServiceRole'), logicalId('AWS::IAM::Role', 'PaymentQueriesFunctionServiceRole'), logicalId('AWS::IAM::Role', 'WebhookEventsApiFunctionServiceRole')].sort(),
    );
    // No secret is readable through a wildcard.
    const statements = Object.values(t.findResources('AWS::IAM::Policy')).flatMap((p) => p.Properties.PolicyDocument.Statement as { Action: string | string[]; Resource: unknown }[]);
    for (const st of statements.filter((x) => [x.Action].flat().some((a) => a.startsWith('secretsmanager:')))) expect(JSON.stringify(st.Resource)).not.toContain('*');
    for (const fn of ['AuditApiFunction', 'PaymentQueriesFunction', 'WebhookEventsApiFunction']) {
      const env = t.findResources('AWS::Lambda::Function')[logicalId('AWS::Lambda::Function', fn)]!.Properties.Environment.Variables;
      expect(env.CURSOR_SECRET_ID).toEqual({ Ref: secret });
    }
  });

  it('a function cannot be given a setting outside its contract, nor synthesize with one unbound', () => {
    const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
    const stack = new Stack(app, 'Contract');
    const table = new dynamodb.Table(stack, 'T', { partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING } });
    const fn = new PaymentsFunction(stack, 'Audit', { contract: 'auditStream', entry: 'functions/audit/audit-stream.ts', description: 'x', config: configFor('dev') });
    expect(() => fn.bindTable(table, 'PAYMENTS_TABLE', ['GetItem'])).toThrow(/PAYMENTS_TABLE is not in the auditStream contract/);
    expect(() => app.synth()).toThrow(/AUDIT_TABLE is in the auditStream contract but not bound/);
  });

  it('alarms when a dead-letter queue holds messages', () => {
    const names = Object.values(t.findResources('AWS::CloudWatch::Alarm')).map((a) => a.Properties.AlarmName as string);
    expect(names.filter((n) => n.endsWith('DlqNotEmpty'))).toHaveLength(4);
  });

  it('prod retains data tables; dev deletes them', () => {
    const prod = synth('prod');
    for (const table of Object.values(prod.findResources('AWS::DynamoDB::Table'))) expect(table.DeletionPolicy).toBe('Retain');
    const secrets = prod.findResources('AWS::SecretsManager::Secret');
    for (const [id, secret] of Object.entries(secrets)) expect(secret.DeletionPolicy, id).toBe(id.startsWith('CursorSigningKey') ? 'Delete' : 'Retain');
    for (const table of Object.values(t.findResources('AWS::DynamoDB::Table'))) expect(table.DeletionPolicy).toBe('Delete');
  });
});
