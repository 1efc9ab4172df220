/**
 * cdk-nag's AwsSolutions pack on every stage: synthesis must report no unacknowledged finding (each
 * acknowledgement in lib/payments-stack.ts carries its reason), and the hardening it asked for is there.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { App, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import { STAGES, configFor, type Stage } from '../../lib/config';
import { PaymentsStack } from '../../lib/payments-stack';

interface Finding {
  rule: string;
  paths: string[];
}

/** Synthesizes the stage with AwsSolutions checks; the unacknowledged findings, and the template. */
function nag(stage: Stage): { findings: Finding[]; template: Template } {
  const outdir = mkdtempSync(path.join(tmpdir(), 'nag-'));
  try {
    const app = new App({ outdir, context: { 'aws:cdk:bundling-stacks': [], '@aws-cdk/core:validationReportJson': true } });
    const stack = new PaymentsStack(app, `Nag-${stage}`, { config: configFor(stage) });
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    try {
      app.synth();
    } catch (err) {
      // Findings are read from the report below, so that the test names them all.
      if ((err as Error).name !== 'ValidationFailed') throw err;
    }
    const report = path.join(outdir, 'policy-validation-report.json');
    const findings: Finding[] = existsSync(report)
      ? JSON.parse(readFileSync(report, 'utf8')).pluginReports.flatMap((p: { violations: Array<{ ruleName: string; violatingConstructs: Array<{ constructPath?: string }> }> }) =>
          p.violations.map((v) => ({ rule: v.ruleName, paths: v.violatingConstructs.map((c) => c.constructPath ?? '?') })),
        )
      : [];
    // The assembly written before validation ran (Template.fromStack would synthesize, and fail, again).
    return { findings, template: Template.fromJSON(JSON.parse(readFileSync(path.join(outdir, stack.templateFile), 'utf8'))) };
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

describe.each(STAGES)('cdk-nag AwsSolutions on %s', (stage) => {
  let findings: Finding[];
  let template: Template;
  beforeAll(() => {
    ({ findings, template } = nag(stage));
  });

  it('reports no unacknowledged finding', () => {
    expect(findings).toEqual([]);
  });

  it('encrypts the tables holding card tokens and the queues with the customer-managed key', () => {
    const keyId = Object.keys(template.findResources('AWS::KMS::Key'))[0]!;
    template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    const cmkTables = Object.entries(template.findResources('AWS::DynamoDB::Table')).filter(
      ([, t]) => t.Properties.SSESpecification?.KMSMasterKeyId?.['Fn::GetAtt']?.[0] === keyId,
    );
    expect(cmkTables.map(([id]) => id.replace(/[0-9A-F]{8}$/, '')).sort()).toEqual(['AuditLogTable', 'IdempotencyKeysTable', 'PaymentsTable', 'RefundsTable', 'WebhookEndpointsTable', 'WebhookEventsTable']);
    for (const q of Object.values(template.findResources('AWS::SQS::Queue'))) {
      expect(q.Properties.KmsMasterKeyId).toEqual({ 'Fn::GetAtt': [keyId, 'Arn'] });
    }
  });

  it('logs API access with the API key id, guards staging and prod with a WAF, prod with deletion protection, and bounds the worker', () => {
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      AccessLogSetting: Match.objectLike({ DestinationArn: Match.anyValue(), Format: Match.stringLikeRegexp('"apiKeyId":"\\$context.identity.apiKeyId"') }),
    });
    const prod = stage === 'prod';
    for (const t of Object.values(template.findResources('AWS::DynamoDB::Table'))) expect(t.Properties.DeletionProtectionEnabled).toBe(prod);
    const waf = stage !== 'dev';
    template.resourceCountIs('AWS::WAFv2::WebACL', waf ? 1 : 0);
    if (waf) {
      template.hasResourceProperties('AWS::WAFv2::WebACL', {
        Rules: Match.arrayWith([Match.objectLike({ Statement: { RateBasedStatement: Match.objectLike({ AggregateKeyType: 'IP' }) } })]),
      });
      template.resourceCountIs('AWS::WAFv2::WebACLAssociation', 1);
    }
    const worker = Object.entries(template.findResources('AWS::Lambda::Function')).find(([id]) => id.startsWith('PaymentWorkerFunction'))![1];
    const reserved = configFor(stage).workerReservedConcurrency;
    expect(worker.Properties.ReservedConcurrentExecutions).toBe(reserved);
    if (reserved !== undefined) expect(reserved).toBeGreaterThanOrEqual(configFor(stage).workerMaxConcurrency);
  });
});
