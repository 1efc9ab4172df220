/** Tenancy in the template: keys mapped to principals, the operator plan, rotation, gateway error shape. */
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { configFor } from '../../lib/config';
import { PaymentsStack } from '../../lib/payments-stack';

function synth(config = configFor('dev')): Template {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  return Template.fromStack(new PaymentsStack(app, `Tenancy-${Math.random().toString(36).slice(2, 8)}`, { config }));
}

const keyIdOf = (t: Template, name: string): string => {
  const [id] = Object.entries(t.findResources('AWS::ApiGateway::ApiKey')).find(([, r]) => r.Properties.Name === name) ?? [];
  if (!id) throw new Error(`no key ${name}`);
  return id;
};

/** API_KEY_PRINCIPALS of a function as `<keyLogicalId>=<principal>` pairs. */
function principalsOf(t: Template, description: string): string[] {
  const fn = Object.values(t.findResources('AWS::Lambda::Function')).find((r) => r.Properties.Description === description)!;
  const value = fn.Properties.Environment.Variables.API_KEY_PRINCIPALS;
  const parts: unknown[] = value['Fn::Join'][1];
  return parts
    .map((p) => (typeof p === 'string' ? p : `${(p as { Ref: string }).Ref}`))
    .join('')
    .split(',');
}

let t: Template;
beforeAll(() => {
  t = synth();
});

describe('tenancy in the stack', () => {
  it('maps every key id to its principal in each API function, and operator keys sit on their own plan', () => {
    const expected = [`${keyIdOf(t, 'dev-tenant-1')}=tenant:tenant-1`, `${keyIdOf(t, 'dev-tenant-2')}=tenant:tenant-2`, `${keyIdOf(t, 'dev-operator-ops')}=operator:ops`];
    for (const d of ['POST /api/payments/process', 'Payment lookups, listing and key validation', 'POST /api/payments/{paymentID}/retry', 'GET /api/audit/payments', 'Recovery runs: start and status']) {
      expect(principalsOf(t, d)).toEqual(expected);
    }
    const plans = t.findResources('AWS::ApiGateway::UsagePlan');
    const operatorPlan = Object.entries(plans).find(([, r]) => String(r.Properties.UsagePlanName).endsWith('-operators'))![0];
    const planKeys = Object.values(t.findResources('AWS::ApiGateway::UsagePlanKey'));
    expect(planKeys.filter((k) => k.Properties.UsagePlanId.Ref === operatorPlan).map((k) => k.Properties.KeyId.Ref)).toEqual([keyIdOf(t, 'dev-operator-ops')]);
  });

  it('rotation: a second key of a tenant maps to the same tenant; the first keeps its logical id', () => {
    const base = configFor('dev');
    const rotated = synth({ ...base, tenantKeys: { 'tenant-1': ['v1', 'v2'] } });
    const pairs = principalsOf(rotated, 'POST /api/payments/process');
    expect(pairs).toContain(`${keyIdOf(rotated, 'dev-tenant-1')}=tenant:tenant-1`);
    expect(pairs).toContain(`${keyIdOf(rotated, 'dev-tenant-1-v2')}=tenant:tenant-1`);
    expect(keyIdOf(rotated, 'dev-tenant-1')).toBe(keyIdOf(t, 'dev-tenant-1'));
  });

  it('operator idempotency records: own table with TTL, used only by the operator routes', () => {
    const tables = t.findResources('AWS::DynamoDB::Table', { Properties: { TimeToLiveSpecification: { AttributeName: 'expiration', Enabled: true } } });
    expect(Object.keys(tables)).toHaveLength(1);
    const [tableId] = Object.keys(tables);
    const users = Object.values(t.findResources('AWS::Lambda::Function'))
      .filter((f) => JSON.stringify(f.Properties.Environment.Variables.OPERATOR_IDEMPOTENCY_TABLE ?? '').includes(tableId!))
      .map((f) => f.Properties.Description)
      .sort();
    expect(users).toEqual(['POST /api/payments/{paymentID}/retry', 'Recovery runs: start and status']);
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
