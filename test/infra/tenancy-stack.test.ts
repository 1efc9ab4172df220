/** Tenancy in the template: the principals table, the plans keys go on, operator idempotency, gateway error shape. */
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { configFor } from '../../lib/config';
import { PaymentsStack } from '../../lib/payments-stack';

const stackName = `Tenancy-${Math.random().toString(36).slice(2, 8)}`;
function synth(config = configFor('dev')): Template {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  return Template.fromStack(new PaymentsStack(app, stackName, { config }));
}

let t: Template;
beforeAll(() => {
  t = synth();
});

const API_FUNCTIONS = ['POST /api/payments/process', 'Payment lookups, listing and key validation', 'POST /api/payments/{paymentID}/retry', 'POST and GET /api/payments/{paymentID}/refunds', 'POST /api/payments/{paymentID}/cancel', 'GET /api/audit/payments', 'Recovery runs: start and status', 'Tenant webhook endpoints: create, list, delete, rotate the secret', 'GET /api/events, POST /api/events/{eventID}/resend'];

describe('tenancy in the stack', () => {
  it('tenants need no deploy: no API key in the template, a principals table every API function reads (GetItem only), and nothing else does', () => {
    t.resourceCountIs('AWS::ApiGateway::ApiKey', 0);
    const [tableId, table] = Object.entries(t.findResources('AWS::DynamoDB::Table')).find(([id]) => id.startsWith('PrincipalsTable'))!;
    expect(table.Properties.KeySchema).toEqual([{ AttributeName: 'apiKeyId', KeyType: 'HASH' }]);
    // The local stack writes its LOCAL_API_KEYS there, with the attributes the tenants command writes.
    expect(table.Metadata['LocalStack::ApiKeyPrincipals']).toEqual({ KeyIdAttribute: 'apiKeyId', PrincipalAttribute: 'principal', StatusAttribute: 'status' });
    const readers = Object.values(t.findResources('AWS::Lambda::Function'))
      .filter((f) => JSON.stringify(f.Properties.Environment.Variables.PRINCIPALS_TABLE ?? '').includes(tableId))
      .map((f) => f.Properties.Description)
      .sort();
    expect(readers).toEqual([...API_FUNCTIONS].sort());
    const grants = Object.values(t.findResources('AWS::IAM::Policy')).flatMap((p) =>
      (p.Properties.PolicyDocument.Statement as Array<{ Action: string | string[]; Resource: unknown }>).filter((st) => JSON.stringify(st.Resource).includes(`"${tableId}"`)),
    );
    expect(grants.flatMap((g) => [g.Action].flat()).every((a) => a === 'dynamodb:GetItem')).toBe(true);
    expect(grants).toHaveLength(API_FUNCTIONS.length);
  });

  it('operators have their own plan; every plan is tied to the stage for the tenants command to put keys on', () => {
    const plans = Object.values(t.findResources('AWS::ApiGateway::UsagePlan')).map((p) => p.Properties);
    expect(plans.map((p) => p.UsagePlanName).sort()).toEqual([`${stackName}-operators`, `${stackName}-tenants-standard`]);
    for (const p of plans) expect(p.ApiStages).toHaveLength(1);
    t.resourceCountIs('AWS::ApiGateway::UsagePlanKey', 0);
  });

  it('action idempotency records: own table with TTL, used only by the action routes (retry, cancel, recovery)', () => {
    const tables = t.findResources('AWS::DynamoDB::Table', { Properties: { TimeToLiveSpecification: { AttributeName: 'expiration', Enabled: true } } });
    expect(Object.keys(tables)).toHaveLength(1);
    const [tableId] = Object.keys(tables);
    const users = Object.values(t.findResources('AWS::Lambda::Function'))
      .filter((f) => JSON.stringify(f.Properties.Environment.Variables.OPERATOR_IDEMPOTENCY_TABLE ?? '').includes(tableId!))
      .map((f) => f.Properties.Description)
      .sort();
    expect(users).toEqual(['POST /api/payments/{paymentID}/cancel', 'POST /api/payments/{paymentID}/retry', 'Recovery runs: start and status']);
  });

  it("API Gateway's own errors carry code and timestamp (413, 403, 429, 4xx, 5xx)", () => {
    const responses = Object.values(t.findResources('AWS::ApiGateway::GatewayResponse'));
    const byType = new Map(responses.map((r) => [r.Properties.ResponseType, r.Properties]));
    for (const [type, code] of [
      ['REQUEST_TOO_LARGE', 'PAYLOAD_TOO_LARGE'],
      ['INVALID_API_KEY', 'FORBIDDEN'],
      ['THROTTLED', 'RATE_LIMITED'],
      ['DEFAULT_4XX', 'BAD_REQUEST'],
      ['DEFAULT_5XX', 'INTERNAL_ERROR'],
    ]) {
      const template = byType.get(type)?.ResponseTemplates['application/json'];
      expect(template, type).toContain(`"code":"${code}"`);
      expect(template, type).toContain('"timestamp":"$context.requestTime"');
    }
  });
});
