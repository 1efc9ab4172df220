import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { configFor, type Stage } from '../../lib/config';
import { PaymentsStack } from '../../lib/payments-stack';

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
      GlobalSecondaryIndexes: Match.arrayWith([
        {
          IndexName: 'open-payments',
          KeySchema: [
            { AttributeName: 'openShard', KeyType: 'HASH' },
            { AttributeName: 'dueAt', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'ALL' },
        },
        Match.objectLike({ IndexName: 'settled-by-hour' }),
      ]),
    });
  });

  it('IdempotencyKeys table expires records by TTL on expiresAt', () => {
    t.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
    });
  });

  it('AuditLog table: paymentId + version, tenant/time index; RecoveryRuns table', () => {
    t.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [
        { AttributeName: 'paymentId', KeyType: 'HASH' },
        { AttributeName: 'version', KeyType: 'RANGE' },
      ],
      GlobalSecondaryIndexes: [Match.objectLike({ IndexName: 'audit-by-tenant' })],
    });
    t.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
    });
    t.resourceCountIs('AWS::DynamoDB::Table', 4);
  });

  it('payments queue redrives to a DLQ and outlives the worker timeout', () => {
    const dlq = logicalId('AWS::SQS::Queue', 'PaymentsDlq');
    t.hasResourceProperties('AWS::SQS::Queue', {
      VisibilityTimeout: 180,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [dlq, 'Arn'] }, maxReceiveCount: 5 },
    });
    t.hasResourceProperties('AWS::SQS::Queue', { MessageRetentionPeriod: 14 * 86400 });
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

  it('functions: Node.js 22 on ARM64, tracing, explicit log groups, table and queue names in the environment', () => {
    const fns = t.findResources('AWS::Lambda::Function');
    expect(Object.keys(fns)).toHaveLength(8);
    for (const fn of Object.values(fns)) {
      expect(fn.Properties).toMatchObject({
        Runtime: 'nodejs22.x',
        Architectures: ['arm64'],
        TracingConfig: { Mode: 'Active' },
        LoggingConfig: { LogGroup: expect.anything() },
      });
      const env = fn.Properties.Environment.Variables;
      expect(Object.keys(env)).toEqual(expect.arrayContaining(['PAYMENTS_TABLE', 'IDEMPOTENCY_TABLE', 'PAYMENTS_QUEUE_URL', 'NODE_OPTIONS', 'POWERTOOLS_SERVICE_NAME']));
    }
    t.resourceCountIs('AWS::Logs::LogGroup', 8);
  });

  it('REST API: all nine routes, each requiring an API key, one key per tenant on a usage plan', () => {
    const methods = Object.values(t.findResources('AWS::ApiGateway::Method'));
    expect(methods).toHaveLength(9);
    for (const m of methods) {
      expect(m.Properties.ApiKeyRequired).toBe(true);
      expect(m.Properties.Integration.Type).toBe('AWS_PROXY');
    }
    const resources = t.findResources('AWS::ApiGateway::Resource');
    const parts = Object.values(resources).map((r) => r.Properties.PathPart);
    expect(parts).toEqual(
      expect.arrayContaining(['api', 'payments', 'process', 'validate-key', 'key', '{idempotencyKey}', '{paymentID}', 'status', 'retry', 'audit', 'recovery']),
    );
    t.resourceCountIs('AWS::ApiGateway::ApiKey', 2);
    t.resourceCountIs('AWS::ApiGateway::UsagePlanKey', 2);
    t.hasResourceProperties('AWS::ApiGateway::RestApi', { ApiKeySourceType: 'HEADER' });
    t.hasResourceProperties('AWS::ApiGateway::GatewayResponse', { ResponseType: 'INVALID_API_KEY', StatusCode: '403' });
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

  it('alarms when a dead-letter queue holds messages', () => {
    t.resourceCountIs('AWS::CloudWatch::Alarm', 2);
  });

  it('prod retains data tables; dev deletes them', () => {
    const prod = synth('prod');
    for (const table of Object.values(prod.findResources('AWS::DynamoDB::Table'))) expect(table.DeletionPolicy).toBe('Retain');
    for (const table of Object.values(t.findResources('AWS::DynamoDB::Table'))) expect(table.DeletionPolicy).toBe('Delete');
  });
});
