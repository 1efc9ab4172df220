/** Tenant webhooks in the template: tables, the two streams feeding events, the delivery queue and its DLQ alarm, least-privilege grants. */
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { configFor, STAGES } from '../../lib/config';
import { PaymentsStack } from '../../lib/payments-stack';

function synth(stage: (typeof STAGES)[number]): Template {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  return Template.fromStack(new PaymentsStack(app, `Hooks-${stage}`, { config: configFor(stage) }));
}

let t: Template;
beforeAll(() => {
  t = synth('dev');
});

const idOf = (type: string, prefix: string) => {
  const found = Object.keys(t.findResources(type)).find((k) => k.startsWith(prefix));
  if (!found) throw new Error(`no ${type} ${prefix}`);
  return found;
};

/** DynamoDB item actions a function's role holds on one table (or its indexes). */
const actionsOn = (fnPrefix: string, resourceId: string) => [
  ...new Set(
  Object.values(t.findResources('AWS::IAM::Policy'))
    .filter((p) => JSON.stringify(p.Properties.Roles).includes(`${fnPrefix}ServiceRole`))
    .flatMap((p) => p.Properties.PolicyDocument.Statement as Array<{ Action: string | string[]; Resource: unknown }>)
    .filter((st) => JSON.stringify(st.Resource).includes(`"${resourceId}"`))
    .flatMap((st) => [st.Action].flat())
    .filter((a) => a.startsWith('dynamodb:') && !a.startsWith('dynamodb:DescribeStream') && !['dynamodb:GetRecords', 'dynamodb:GetShardIterator', 'dynamodb:ListStreams'].includes(a)),
  ),
].sort();

const rolesWithAnyActionOn = (resourceId: string) =>
  Object.values(t.findResources('AWS::IAM::Policy'))
    .filter((p) => (p.Properties.PolicyDocument.Statement as { Resource: unknown }[]).some((st) => JSON.stringify(st.Resource).includes(`"${resourceId}"`)))
    .flatMap((p) => p.Properties.Roles.map((r: { Ref: string }) => r.Ref.replace(/ServiceRole[0-9A-F]{8}$/, '')))
    .sort();

describe('tenant webhooks in the stack', () => {
  it('events come from the Payments and the Refunds streams (both NEW_AND_OLD_IMAGES), retried by bisection, failures to an alarmed queue', () => {
    const fn = idOf('AWS::Lambda::Function', 'WebhookEventStreamFunction');
    const refunds = idOf('AWS::DynamoDB::Table', 'RefundsTable');
    const payments = idOf('AWS::DynamoDB::Table', 'PaymentsTable');
    expect(t.findResources('AWS::DynamoDB::Table')[refunds]!.Properties.StreamSpecification).toEqual({ StreamViewType: 'NEW_AND_OLD_IMAGES' });
    const mappings = Object.values(t.findResources('AWS::Lambda::EventSourceMapping')).filter((m) => m.Properties.FunctionName.Ref === fn);
    expect(mappings.map((m) => m.Properties.EventSourceArn['Fn::GetAtt']).sort()).toEqual([
      [payments, 'StreamArn'],
      [refunds, 'StreamArn'],
    ]);
    const failures = idOf('AWS::SQS::Queue', 'WebhookEventFailuresDlq');
    for (const m of mappings) {
      expect(m.Properties).toMatchObject({
        StartingPosition: 'TRIM_HORIZON',
        BisectBatchOnFunctionError: true,
        FunctionResponseTypes: ['ReportBatchItemFailures'],
        DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [failures, 'Arn'] } } },
      });
    }
  });

  it('deliveries run from their own queue with partial batch failures; it redrives to a DLQ that pages when not empty', () => {
    const fn = idOf('AWS::Lambda::Function', 'WebhookDeliveryFunction');
    const queue = idOf('AWS::SQS::Queue', 'WebhookDeliveryQueue');
    const dlq = idOf('AWS::SQS::Queue', 'WebhookDeliveryDlq');
    t.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: fn },
      EventSourceArn: { 'Fn::GetAtt': [queue, 'Arn'] },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
    // The payments queue and DLQ, the audit failures queue, and the webhook delivery queue, its DLQ and the event failures queue.
    t.resourceCountIs('AWS::SQS::Queue', 6);
    const q = t.findResources('AWS::SQS::Queue')[queue]!.Properties;
    expect(q.RedrivePolicy).toEqual({ deadLetterTargetArn: { 'Fn::GetAtt': [dlq, 'Arn'] }, maxReceiveCount: 5 });
    // Visibility well over the function's timeout, which is over one attempt's 10 s.
    const timeout = t.findResources('AWS::Lambda::Function')[fn]!.Properties.Timeout as number;
    expect(timeout).toBeGreaterThan(10);
    expect(q.VisibilityTimeout).toBeGreaterThanOrEqual(timeout * 6);
    for (const name of [dlq, idOf('AWS::SQS::Queue', 'WebhookEventFailuresDlq')]) {
      t.hasResourceProperties('AWS::CloudWatch::Alarm', {
        AlarmName: Match.stringLikeRegexp('DlqNotEmpty$'),
        Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [name, 'QueueName'] } }],
        Threshold: 1,
      });
    }
    // The delivery function sends given-up deliveries to the DLQ itself (with the reason).
    expect(t.findResources('AWS::Lambda::Function')[fn]!.Properties.Environment.Variables.WEBHOOK_DEAD_LETTER_QUEUE_URL).toEqual({ Ref: dlq });
  });

  it('each function holds only the table actions its code calls; the endpoint secrets are reachable by the four webhook functions only', () => {
    const endpoints = idOf('AWS::DynamoDB::Table', 'WebhookEndpointsTable');
    const events = idOf('AWS::DynamoDB::Table', 'WebhookEventsTable');
    const dd = (...a: string[]) => a.map((x) => `dynamodb:${x}`).sort();
    expect(actionsOn('WebhookEndpointsApiFunction', endpoints)).toEqual(dd('DeleteItem', 'GetItem', 'PutItem', 'Query', 'UpdateItem'));
    expect(actionsOn('WebhookEndpointsApiFunction', events)).toEqual([]);
    expect(actionsOn('WebhookEventsApiFunction', endpoints)).toEqual(dd('Query'));
    expect(actionsOn('WebhookEventsApiFunction', events)).toEqual(dd('GetItem', 'Query'));
    expect(actionsOn('WebhookEventStreamFunction', endpoints)).toEqual(dd('Query'));
    expect(actionsOn('WebhookEventStreamFunction', events)).toEqual(dd('GetItem', 'PutItem', 'UpdateItem'));
    expect(actionsOn('WebhookDeliveryFunction', endpoints)).toEqual(dd('GetItem'));
    expect(actionsOn('WebhookDeliveryFunction', events)).toEqual(dd('GetItem'));
    expect(rolesWithAnyActionOn(endpoints)).toEqual(['WebhookDeliveryFunction', 'WebhookEndpointsApiFunction', 'WebhookEventStreamFunction', 'WebhookEventsApiFunction'].sort());
    // Events expire by TTL and are listed per tenant, newest first, from the index sharded per tenant.
    t.hasResourceProperties('AWS::DynamoDB::Table', {
      TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
      GlobalSecondaryIndexes: [Match.objectLike({
          IndexName: 'events-by-tenant',
          KeySchema: [
            { AttributeName: 'tenantShard', KeyType: 'HASH' },
            { AttributeName: 'createdSort', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: ['event'] },
        })],
    });
  });

  it.each(STAGES)('%s: no function is deployed with loopback http allowed (the setting is local only)', (stage) => {
    const tt = stage === 'dev' ? t : synth(stage);
    for (const fn of Object.values(tt.findResources('AWS::Lambda::Function'))) {
      expect(Object.keys(fn.Properties.Environment?.Variables ?? {})).not.toContain('WEBHOOK_ALLOW_LOOPBACK_HTTP');
    }
  });
});
