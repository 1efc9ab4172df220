/**
 * Operability of the deployed stack, synthesized with cdk.json's context (the feature flags a real
 * `cdk synth` uses) for every stage: alarms that notify, a dashboard per stage, no unset feature flag,
 * and an unknown stage refused in one line.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { afterAll, describe, expect, it } from 'vitest';
import { configFor, STAGES, type Stage } from '../../lib/config';
import { PaymentsStack } from '../../lib/payments-stack';
import { projectRoot } from '../helpers/project-root';

const cdkContext = JSON.parse(readFileSync(path.join(projectRoot, 'cdk.json'), 'utf8')).context as Record<string, unknown>;
const outdirs: string[] = [];
afterAll(() => {
  for (const d of outdirs) rmSync(d, { recursive: true, force: true });
});

function synth(stage: Stage) {
  const outdir = mkdtempSync(path.join(tmpdir(), `synth-${stage}-`));
  outdirs.push(outdir);
  // Skip esbuild bundling: the template is the subject here.
  const app = new App({ outdir, context: { ...cdkContext, stage, 'aws:cdk:bundling-stacks': [] } });
  const stack = new PaymentsStack(app, `IdempotentPayments-${stage}`, { config: configFor(stage) });
  const assembly = app.synth();
  return { template: Template.fromStack(stack), assembly };
}

const synthesized = Object.fromEntries(STAGES.map((s) => [s, synth(s)])) as Record<Stage, ReturnType<typeof synth>>;

describe.each(STAGES)('stage %s', (stage) => {
  const { template: t, assembly } = synthesized[stage];

  it('synthesizes with no unset feature flag (what cdk synth warns about)', () => {
    const report = Object.values(assembly.manifest.artifacts ?? {}).find((a) => a.type === 'cdk:feature-flag-report');
    expect(report).toBeDefined();
    const flags = (report!.properties as unknown as { flags: Record<string, { userValue?: unknown }> }).flags;
    expect(Object.keys(flags).length).toBeGreaterThan(50);
    expect(Object.entries(flags).filter(([, f]) => f.userValue === undefined).map(([name]) => name)).toEqual([]);
  });

  it('every alarm notifies the stage topic, on ALARM and on OK', () => {
    const topics = Object.keys(t.findResources('AWS::SNS::Topic'));
    expect(topics).toHaveLength(1);
    const alarms = Object.values(t.findResources('AWS::CloudWatch::Alarm'));
    expect(alarms.length).toBeGreaterThan(20);
    for (const a of alarms) {
      expect(a.Properties.AlarmActions, a.Properties.AlarmName).toEqual([{ Ref: topics[0] }]);
      expect(a.Properties.OKActions, a.Properties.AlarmName).toEqual([{ Ref: topics[0] }]);
    }
  });

  it('alarms on errors and throttles per function, API 5xx rate and p99, queue age, DLQs, stream lag and the business signals', () => {
    const names = Object.values(t.findResources('AWS::CloudWatch::Alarm')).map((a) => String(a.Properties.AlarmName).replace(`idempotent-payments-${stage}-`, ''));
    const functions = ['CreatePayment', 'PaymentQueries', 'RetryPayment', 'AuditApi', 'Worker', 'AuditStream', 'Reconciler', 'RecoveryApi'];
    expect(names.sort()).toEqual(
      [
        ...functions.flatMap((f) => [`${f}Errors`, `${f}Throttles`]),
        'Api5xxRate',
        'ApiLatencyP99',
        'PaymentsQueueOldestMessageAge',
        'PaymentsDlqNotEmpty',
        'AuditFailuresDlqNotEmpty',
        'StreamIteratorAge',
        'ReconcilerFailures',
        'UnknownOutcomeBacklog',
        'RefundsIssued',
        'RefundsFailed',
        'AuditChainFailures',
      ].sort(),
    );
    // A business alarm watches the metric the functions emit, with the dimensions they emit it with.
    t.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmName: `idempotent-payments-${stage}-RefundsIssued`,
      Namespace: 'IdempotentPayments',
      MetricName: 'RefundsIssued',
      Dimensions: [
        { Name: 'service', Value: 'payments' },
        { Name: 'stage', Value: stage },
      ],
      Threshold: 1,
    });
  });

  it('one dashboard, named for the stage, with the business and health metrics', () => {
    const dashboards = Object.values(t.findResources('AWS::CloudWatch::Dashboard'));
    expect(dashboards).toHaveLength(1);
    expect(dashboards[0]!.Properties.DashboardName).toBe(`idempotent-payments-${stage}`);
    const body = JSON.stringify(dashboards[0]!.Properties.DashboardBody);
    for (const metric of ['PaymentsCreated', 'PaymentsReplayed', 'PaymentAttempts', 'RetriesScheduled', 'ReconcilerResolved', 'RefundsIssued', 'AuditEntriesWritten', '5XXError', 'IteratorAge']) {
      expect(body).toContain(metric);
    }
  });

  it('outputs the API URL, each tenant API key id, the provider secret name and the alarm topic', () => {
    const outputs = Object.keys(t.findOutputs('*'));
    expect(outputs).toEqual(expect.arrayContaining(['ApiUrl', 'ProviderSecretName', 'AlarmTopicArn', 'DashboardName']));
    expect(outputs.filter((o) => o.startsWith('ApiKeyId'))).toHaveLength(configFor(stage).tenants.length);
  });

  it('subscribes the configured alarm emails', () => {
    t.resourceCountIs('AWS::SNS::Subscription', configFor(stage).alarmEmails.length);
  });
});

describe('bin/app.ts', () => {
  it('refuses an unknown stage with one line and exit code 1, no stack trace', () => {
    const outdir = mkdtempSync(path.join(tmpdir(), 'synth-bad-'));
    outdirs.push(outdir);
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'bin/app.ts'], {
      cwd: projectRoot,
      encoding: 'utf8',
      env: { ...process.env, CDK_CONTEXT_JSON: JSON.stringify({ stage: 'qa' }), CDK_OUTDIR: outdir },
      timeout: 60_000,
    });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual(['Error: Unknown stage "qa": use -c stage=dev|staging|prod']);
  });
});
