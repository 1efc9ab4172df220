/**
 * The WAF web ACL in front of the REST API stage, sized from the stage config (lib/config.ts, WafLimits):
 *
 *   BodyOverApiLimit   a body over the API's own limit (MAX_BODY_BYTES, 16 KiB) → 413 PAYLOAD_TOO_LARGE.
 *                      The web ACL forwards bodies up to 16 KB for inspection; a larger one is oversize and
 *                      matches. The common rule set's own 8 KB body rule only counts, so a body the API
 *                      accepts is never blocked here.
 *   AWS managed rules  common rule set and known bad inputs (WAF's plain 403).
 *   RatePerApiKey      requests per `x-api-key` value per window → 429 RATE_LIMITED, Retry-After.
 *   RatePerIp          requests per client IP, all keys together → the same 429.
 *   RatePerIpWithoutKey requests without an API key per IP (refused by API Gateway) → the same 429; except
 *                      the provider webhook route (PROVIDER_WEBHOOK_PATH), which never carries a key: the
 *                      provider's events come from its few addresses at a rate our own payments set (a few
 *                      per payment), so they count under RatePerIp only, and its signature check answers
 *                      anything else with a 400.
 *
 * WAF answers blocks itself, with a fixed body: the API's error shape with `code`, `message` and
 * `retryable`, but no `requestId` or `timestamp` (a WAF body cannot carry per-request values). The
 * rate rules sit above API Gateway's per-key and per-stage throttles, which answer first with the
 * API's own 429; the infra test (test/infra/limits.test.ts) holds each limit to the capacity figures.
 */
import type * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';
import type { WafLimits } from '../config';

/** The header clients send their API key in (API Gateway's HEADER key source). */
export const API_KEY_HEADER = 'x-api-key';

/** The route the payment provider posts its events to, without an API key (signature-checked). */
export const PROVIDER_WEBHOOK_PATH = '/webhooks/provider';

/** Bodies WAF inspects at most for API Gateway at the default price (16 KB; more costs extra). */
export const WAF_BODY_INSPECTION_BYTES = 16 * 1024;

export interface ApiFirewallProps {
  readonly stage: apigw.Stage;
  readonly limits: WafLimits;
  /** The API's own request body limit in bytes (functions/shared/http.ts MAX_BODY_BYTES). */
  readonly maxBodyBytes: number;
  /** Prefix of the web ACL's CloudWatch metric names (unique per deployment). */
  readonly metricPrefix: string;
}

const visibility = (metricName: string): wafv2.CfnWebACL.VisibilityConfigProperty => ({
  cloudWatchMetricsEnabled: true,
  metricName,
  sampledRequestsEnabled: true,
});

export class ApiFirewall extends Construct {
  readonly webAcl: wafv2.CfnWebACL;

  constructor(scope: Construct, id: string, props: ApiFirewallProps) {
    super(scope, id);
    const { limits, maxBodyBytes } = props;
    if (maxBodyBytes > WAF_BODY_INSPECTION_BYTES) {
      throw new Error(`the API accepts bodies of ${maxBodyBytes} bytes but WAF inspects ${WAF_BODY_INSPECTION_BYTES}: raise the inspection limit`);
    }
    const m = (name: string) => visibility(`${props.metricPrefix}-${name}`);
    const errorBody = (code: string, message: string, retryable: boolean) => JSON.stringify({ error: { code, message, retryable } });
    const rateLimited: wafv2.CfnWebACL.RuleActionProperty = {
      block: {
        customResponse: {
          responseCode: 429,
          customResponseBodyKey: 'rate-limited',
          // The block lasts until the count over the trailing window falls below the limit.
          responseHeaders: [{ name: 'Retry-After', value: String(limits.windowSeconds) }],
        },
      },
    };
    const rate = (name: string, priority: number, statement: wafv2.CfnWebACL.RateBasedStatementProperty): wafv2.CfnWebACL.RuleProperty => ({
      name,
      priority,
      action: rateLimited,
      statement: { rateBasedStatement: { evaluationWindowSec: limits.windowSeconds, ...statement } },
      visibilityConfig: m(name),
    });
    const managed = (name: string, priority: number, ruleActionOverrides?: wafv2.CfnWebACL.RuleActionOverrideProperty[]): wafv2.CfnWebACL.RuleProperty => ({
      name,
      priority,
      overrideAction: { none: {} },
      statement: { managedRuleGroupStatement: { vendorName: 'AWS', name, ...(ruleActionOverrides ? { ruleActionOverrides } : {}) } },
      visibilityConfig: m(name),
    });
    const hasApiKey: wafv2.CfnWebACL.StatementProperty = {
      sizeConstraintStatement: {
        fieldToMatch: { singleHeader: { Name: API_KEY_HEADER } },
        comparisonOperator: 'GT',
        size: 0,
        textTransformations: [{ priority: 0, type: 'NONE' }],
      },
    };
    // WAF sees the stage in the path (/<stage>/webhooks/provider).
    const isProviderWebhook: wafv2.CfnWebACL.StatementProperty = {
      byteMatchStatement: {
        fieldToMatch: { uriPath: {} },
        positionalConstraint: 'ENDS_WITH',
        searchString: PROVIDER_WEBHOOK_PATH,
        textTransformations: [{ priority: 0, type: 'NONE' }],
      },
    };

    this.webAcl = new wafv2.CfnWebACL(this, 'WebAcl', {
      scope: 'REGIONAL',
      defaultAction: { allow: {} },
      visibilityConfig: m('web-acl'),
      associationConfig: { requestBody: { API_GATEWAY: { defaultSizeInspectionLimit: `KB_${WAF_BODY_INSPECTION_BYTES / 1024}` } } },
      customResponseBodies: {
        'rate-limited': {
          contentType: 'APPLICATION_JSON',
          content: errorBody('RATE_LIMITED', `Too many requests; retry after the Retry-After seconds`, true),
        },
        'too-large': {
          contentType: 'APPLICATION_JSON',
          content: errorBody('PAYLOAD_TOO_LARGE', `Request body must be at most ${maxBodyBytes} bytes`, false),
        },
      },
      rules: [
        {
          name: 'BodyOverApiLimit',
          priority: 0,
          action: { block: { customResponse: { responseCode: 413, customResponseBodyKey: 'too-large' } } },
          statement: {
            sizeConstraintStatement: {
              fieldToMatch: { body: { oversizeHandling: 'MATCH' } },
              comparisonOperator: 'GT',
              size: maxBodyBytes,
              textTransformations: [{ priority: 0, type: 'NONE' }],
            },
          },
          visibilityConfig: m('BodyOverApiLimit'),
        },
        // Its SizeRestrictions_BODY blocks bodies over 8 KB; the API takes 16 KiB (the rule above).
        managed('AWSManagedRulesCommonRuleSet', 1, [{ name: 'SizeRestrictions_BODY', actionToUse: { count: {} } }]),
        managed('AWSManagedRulesKnownBadInputsRuleSet', 2),
        rate('RatePerApiKey', 3, {
          limit: limits.perApiKey,
          aggregateKeyType: 'CUSTOM_KEYS',
          customKeys: [{ header: { name: API_KEY_HEADER, textTransformations: [{ priority: 0, type: 'NONE' }] } }],
        }),
        rate('RatePerIp', 4, { limit: limits.perIp, aggregateKeyType: 'IP' }),
        rate('RatePerIpWithoutKey', 5, {
          limit: limits.perIpWithoutKey,
          aggregateKeyType: 'IP',
          scopeDownStatement: { andStatement: { statements: [{ notStatement: { statement: hasApiKey } }, { notStatement: { statement: isProviderWebhook } }] } },
        }),
      ],
    });
    new wafv2.CfnWebACLAssociation(this, 'Association', { resourceArn: props.stage.stageArn, webAclArn: this.webAcl.attrArn });
  }
}
