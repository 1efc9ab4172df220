/**
 * The deployed limits, derived from lib/config.ts and the capacity model (docs/capacity.md): API Gateway's
 * stage throttle and tenant plans, the WAF's rate and body rules. Each test names the figure a limit must
 * carry, so a change that lowers one below it fails here.
 */
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { MAX_BODY_BYTES } from '../../functions/shared/config-contract';
import { AVERAGE_PAYMENTS_PER_SECOND, PEAK_FACTOR, STAGES, configFor, type EnvironmentConfig, type Stage } from '../../lib/config';
import { PaymentsStack } from '../../lib/payments-stack';

/** docs/capacity.md: one API request per payment (the create); prod has one tenant, carrying the whole peak. */
const PROD_TENANT_PEAK_PER_SECOND = PEAK_FACTOR * AVERAGE_PAYMENTS_PER_SECOND;

const synth = (config: EnvironmentConfig): Template => {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  return Template.fromStack(new PaymentsStack(app, `Limits-${config.stage}`, { config }));
};
const templates = Object.fromEntries(STAGES.map((s) => [s, synth(configFor(s))])) as Record<Stage, Template>;

interface Rule {
  Name: string;
  Action?: { Block?: { CustomResponse?: { ResponseCode: number; CustomResponseBodyKey: string; ResponseHeaders?: Array<{ Name: string; Value: string }> } } };
  Statement: Record<string, any>;
}
const webAclOf = (t: Template) => {
  const acls = Object.values(t.findResources('AWS::WAFv2::WebACL'));
  expect(acls).toHaveLength(1);
  return acls[0]!.Properties as { Rules: Rule[]; CustomResponseBodies: Record<string, { Content: string; ContentType: string }>; AssociationConfig: any };
};
const ruleOf = (t: Template, name: string): Rule => {
  const rule = webAclOf(t).Rules.find((r) => r.Name === name);
  if (!rule) throw new Error(`no WAF rule ${name}`);
  return rule;
};
const maxTenantRate = (c: EnvironmentConfig) => Math.max(...Object.values(c.tenantPlans).map((p) => p.rateLimit));

describe.each(STAGES)('limits of %s', (stage) => {
  const c = configFor(stage);
  const t = templates[stage];

  it("each tenant plan throttles and caps a key below the stage's throttle, so no tenant takes all of it", () => {
    const plans = Object.values(t.findResources('AWS::ApiGateway::UsagePlan')).map((p) => p.Properties);
    const stageProps = Object.values(t.findResources('AWS::ApiGateway::Stage'))[0]!.Properties;
    const stageRate = stageProps.MethodSettings.find((m: { HttpMethod: string }) => m.HttpMethod === '*').ThrottlingRateLimit;
    expect(stageRate).toBe(c.apiThrottle.rateLimit);
    const tenantPlans = plans.filter((p) => String(p.UsagePlanName).includes('-tenants-'));
    expect(tenantPlans.map((p) => p.UsagePlanName).sort()).toEqual(Object.keys(c.tenantPlans).map((n) => `Limits-${stage}-tenants-${n}`).sort());
    for (const p of plans) {
      expect(p.Throttle.RateLimit, p.UsagePlanName).toBeLessThan(stageRate);
      expect(p.Quota, p.UsagePlanName).toMatchObject({ Period: 'DAY', Limit: expect.any(Number) });
    }
    // One tenant at its limit leaves room for the operators.
    expect(stageRate).toBeGreaterThanOrEqual(maxTenantRate(c) + c.operatorPlan.rateLimit);
  });

  it.runIf(stage === 'prod')("prod: a tenant's plan carries its peak (1,157 requests/s) with headroom, and its daily volume", () => {
    expect(PROD_TENANT_PEAK_PER_SECOND).toBeCloseTo(1157.4, 1);
    const plans = Object.values(t.findResources('AWS::ApiGateway::UsagePlan')).map((p) => p.Properties).filter((p) => String(p.UsagePlanName).includes('-tenants-'));
    const largest = plans.reduce((a, b) => (b.Throttle.RateLimit > a.Throttle.RateLimit ? b : a));
    expect(largest.Throttle.RateLimit).toBeGreaterThanOrEqual(1.25 * PROD_TENANT_PEAK_PER_SECOND);
    expect(largest.Throttle.BurstLimit).toBeGreaterThanOrEqual(largest.Throttle.RateLimit);
    // Creates of a whole day at the average (10M) and as many reads again.
    expect(largest.Quota.Limit).toBeGreaterThanOrEqual(2 * AVERAGE_PAYMENTS_PER_SECOND * 86_400);
  });

  it.runIf(stage !== 'dev')('the WAF never blocks a caller within its plan: per key ≥ a tenant plan over the window, per IP ≥ the stage', () => {
    const waf = c.waf!;
    const perKey = ruleOf(t, 'RatePerApiKey').Statement.RateBasedStatement;
    expect(perKey).toMatchObject({ AggregateKeyType: 'CUSTOM_KEYS', CustomKeys: [{ Header: { Name: 'x-api-key' } }], EvaluationWindowSec: waf.windowSeconds });
    expect(perKey.Limit).toBeGreaterThanOrEqual(maxTenantRate(c) * waf.windowSeconds);
    if (stage === 'prod') expect(perKey.Limit).toBeGreaterThanOrEqual(PROD_TENANT_PEAK_PER_SECOND * waf.windowSeconds);
    const perIp = ruleOf(t, 'RatePerIp').Statement.RateBasedStatement;
    expect(perIp).toMatchObject({ AggregateKeyType: 'IP', EvaluationWindowSec: waf.windowSeconds });
    expect(perIp.Limit).toBeGreaterThanOrEqual(c.apiThrottle.rateLimit * waf.windowSeconds);
    // Requests without a key are refused by API Gateway anyway: only those are held to the low limit, except
    // the provider's webhooks, which never carry a key (they count under RatePerIp).
    const noKey = ruleOf(t, 'RatePerIpWithoutKey').Statement.RateBasedStatement;
    const [withoutKey, notWebhook] = noKey.ScopeDownStatement.AndStatement.Statements;
    expect(withoutKey.NotStatement.Statement.SizeConstraintStatement.FieldToMatch).toEqual({ SingleHeader: { Name: 'x-api-key' } });
    expect(notWebhook.NotStatement.Statement.ByteMatchStatement).toMatchObject({ FieldToMatch: { UriPath: {} }, PositionalConstraint: 'ENDS_WITH', SearchString: '/webhooks/provider' });
  });

  it.runIf(stage !== 'dev')("a WAF rate block is the API's 429 RATE_LIMITED, retryable, with Retry-After", () => {
    const acl = webAclOf(t);
    for (const name of ['RatePerApiKey', 'RatePerIp', 'RatePerIpWithoutKey']) {
      const response = ruleOf(t, name).Action?.Block?.CustomResponse;
      expect(response, name).toMatchObject({ ResponseCode: 429 });
      const retryAfter = response!.ResponseHeaders?.find((h) => h.Name === 'Retry-After');
      expect(Number(retryAfter?.Value), name).toBeGreaterThan(0);
      const body = acl.CustomResponseBodies[response!.CustomResponseBodyKey]!;
      expect(body.ContentType).toBe('APPLICATION_JSON');
      expect(JSON.parse(body.Content)).toEqual({ error: { code: 'RATE_LIMITED', message: expect.any(String), retryable: true } });
    }
  });

  it.runIf(stage !== 'dev')("the body rule blocks only above the API's own limit (16 KiB), as 413 PAYLOAD_TOO_LARGE", () => {
    const acl = webAclOf(t);
    const common = acl.Rules.find((r) => r.Name === 'AWSManagedRulesCommonRuleSet')!;
    // The managed 8 KB body rule would refuse bodies the API accepts: it only counts.
    expect(common.Statement.ManagedRuleGroupStatement.RuleActionOverrides).toEqual([{ Name: 'SizeRestrictions_BODY', ActionToUse: { Count: {} } }]);
    const own = ruleOf(t, 'BodyOverApiLimit');
    expect(own.Statement.SizeConstraintStatement).toMatchObject({ ComparisonOperator: 'GT', Size: MAX_BODY_BYTES, FieldToMatch: { Body: { OversizeHandling: 'MATCH' } } });
    // WAF sees the whole of any body the API accepts.
    const inspected = Number(/^KB_(\d+)$/.exec(acl.AssociationConfig.RequestBody.API_GATEWAY.DefaultSizeInspectionLimit)![1]) * 1024;
    expect(inspected).toBeGreaterThanOrEqual(MAX_BODY_BYTES);
    const response = own.Action!.Block!.CustomResponse!;
    expect(response.ResponseCode).toBe(413);
    expect(JSON.parse(acl.CustomResponseBodies[response.CustomResponseBodyKey]!.Content).error).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', retryable: false });
  });

  it('the WAF guards staging and prod (dev has none)', () => {
    t.resourceCountIs('AWS::WAFv2::WebACL', stage === 'dev' ? 0 : 1);
    t.resourceCountIs('AWS::WAFv2::WebACLAssociation', stage === 'dev' ? 0 : 1);
  });
});
