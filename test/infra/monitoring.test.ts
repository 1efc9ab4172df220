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
import { deploymentFromContext } from '../../lib/deployment';
import { PaymentsStack, type PaymentsStackProps } from '../../lib/payments-stack';
import { projectRoot } from '../helpers/project-root';

const cdkContext = JSON.parse(readFileSync(path.join(projectRoot, 'cdk.json'), 'utf8')).context as Record<string, unknown>;
const outdirs: string[] = [];
afterAll(() => {
  for (const d of outdirs) rmSync(d, { recursive: true, force: true });
});

const ONCALL = 'oncall@example.com';

function synth(stage: Stage, extra: Partial<PaymentsStackProps> = {}) {
  const outdir = mkdtempSync(path.join(tmpdir(), `synth-${stage}-`));
  outdirs.push(outdir);
  // Skip esbuild bundling: the template is the subject here.
  const app = new App({ outdir, context: { ...cdkContext, stage, 'aws:cdk:bundling-stacks': [] } });
  const stack = new PaymentsStack(app, `IdempotentPayments-${stage}`, { config: configFor(stage), alarmRecipients: { emails: [ONCALL] }, ...extra });
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

  it('every alarm notifies the stack topic, on ALARM and on OK', () => {
    const topics = Object.keys(t.findResources('AWS::SNS::Topic'));
    expect(topics).toHaveLength(1);
    const alarms = Object.values(t.findResources('AWS::CloudWatch::Alarm'));
    expect(alarms.length).toBeGreaterThan(20);
    for (const a of alarms) {
      expect(a.Properties.AlarmActions, a.Properties.AlarmName).toEqual([{ Ref: topics[0] }]);
      expect(a.Properties.OKActions, a.Properties.AlarmName).toEqual([{ Ref: topics[0] }]);
    }
  });

  it('says per alarm what missing data means: a stopped reconciler is an alarm, an absent error count is not', () => {
    // Heartbeats: nothing published means the job stopped.
    const heartbeats = ['ReconcilerNotRunning'];
    for (const a of Object.values(t.findResources('AWS::CloudWatch::Alarm'))) {
      const name = String(a.Properties.AlarmName).replace(`IdempotentPayments-${stage}-`, '');
      expect(a.Properties.TreatMissingData, name).toBe(heartbeats.includes(name) ? 'breaching' : 'notBreaching');
    }
    t.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmName: `IdempotentPayments-${stage}-ReconcilerNotRunning`,
      MetricName: 'ReconcilerRunsCompleted',
      ComparisonOperator: 'LessThanThreshold',
      Threshold: 1,
      Dimensions: [
        { Name: 'service', Value: 'payments' },
        { Name: 'stage', Value: stage },
      ],
    });
  });

  it("alarms when a function's longest run nears its timeout, at a share of each function's own timeout", () => {
    const fns = t.findResources('AWS::Lambda::Function');
    const share = configFor(stage).alarms.durationShareOfTimeout;
    for (const [name, prefix] of [['Worker', 'PaymentWorkerFunction'], ['Reconciler', 'ReconcilerFunction'], ['CreatePayment', 'CreatePaymentFunction']]) {
      const timeout = Object.entries(fns).find(([id]) => id.startsWith(prefix!))![1].Properties.Timeout as number;
      t.hasResourceProperties('AWS::CloudWatch::Alarm', {
        AlarmName: `IdempotentPayments-${stage}-${name}DurationNearTimeout`,
        MetricName: 'Duration',
        Statistic: 'Maximum',
        Threshold: Math.round(timeout * 1000 * share),
      });
    }
  });

  it('alarms on errors and throttles per function, API 5xx rate and p99, queue age, DLQs, stream lag and the business signals', () => {
    const names = Object.values(t.findResources('AWS::CloudWatch::Alarm')).map((a) => String(a.Properties.AlarmName).replace(`IdempotentPayments-${stage}-`, ''));
    const functions = ['CreatePayment', 'PaymentQueries', 'RetryPayment', 'AuditApi', 'Worker', 'AuditStream', 'Reconciler', 'RecoveryApi', 'WebhookEndpointsApi', 'WebhookEventsApi', 'WebhookEventStream', 'WebhookDelivery'];
    const tables = ['Payments', 'IdempotencyKeys', 'AuditLog', 'RecoveryRuns', 'OperatorIdempotency', 'ProviderBudget', 'Principals', 'WebhookEndpoints', 'WebhookEvents'];
    expect(names.sort()).toEqual(
      [
        ...functions.flatMap((f) => [`${f}Errors`, `${f}Throttles`, `${f}DurationNearTimeout`]),
        ...tables.map((table) => `${table}TableThrottles`),
        'ReconcilerScheduleFailedInvocations',
        'ProviderAuthFailures',
        'SuccessWithoutCapture',
        'ReconcilerNotRunning',
        'Api5xxRate',
        'ApiLatencyP99',
        'PaymentsQueueOldestMessageAge',
        'PaymentsDlqNotEmpty',
        'AuditFailuresDlqNotEmpty',
        'WebhookDeliveryDlqNotEmpty',
        'WebhookEventFailuresDlqNotEmpty',
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
      AlarmName: `IdempotentPayments-${stage}-RefundsIssued`,
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
    expect(dashboards[0]!.Properties.DashboardName).toBe(`IdempotentPayments-${stage}`);
    const body = JSON.stringify(dashboards[0]!.Properties.DashboardBody);
    for (const metric of ['ProviderAuthFailures', 'SuccessWithoutCapture', 'ReconcilerRunsCompleted', 'ThrottledRequests', 'PaymentsCreated', 'PaymentsReplayed', 'PaymentAttempts', 'RetriesScheduled', 'ReconcilerResolved', 'RefundsIssued', 'AuditEntriesWritten', '5XXError', 'IteratorAge']) {
      expect(body).toContain(metric);
    }
  });

  it('outputs what the first deploy needs: API URL and id, the principals table and plans for the tenants command, the provider secret, the alarm topic', () => {
    const outputs = Object.keys(t.findOutputs('*'));
    expect(outputs).toEqual(
      expect.arrayContaining(['ApiUrl', 'RestApiId', 'PrincipalsTableName', 'OperatorPlanId', 'ProviderSecretArn', 'AlarmTopicArn', 'DashboardName']),
    );
    expect(outputs.filter((o) => o.startsWith('TenantPlanId'))).toHaveLength(Object.keys(configFor(stage).tenantPlans).length);
  });

  it('subscribes the alarm emails given at deploy time', () => {
    t.resourceCountIs('AWS::SNS::Subscription', 1);
    t.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: ONCALL });
  });
});

describe('alarm recipients and names', () => {
  it('an existing topic: every alarm notifies it and no topic is made', () => {
    const arn = 'arn:aws:sns:us-east-1:123456789012:oncall';
    const { template } = synth('prod', { alarmRecipients: { emails: [], topicArn: arn } });
    template.resourceCountIs('AWS::SNS::Topic', 0);
    for (const a of Object.values(template.findResources('AWS::CloudWatch::Alarm'))) {
      expect(a.Properties.AlarmActions).toEqual([arn]);
      expect(a.Properties.OKActions).toEqual([arn]);
    }
  });

  it('staging and prod refuse to deploy without a recipient; dev may (its alarms notify nobody)', () => {
    const ctx = (c: Record<string, string>) => (key: string) => c[key];
    expect(() => deploymentFromContext(ctx({ stage: 'prod' }))).toThrow(/prod needs an alarm recipient: -c alarmEmail=/);
    expect(() => deploymentFromContext(ctx({ stage: 'staging' }))).toThrow(/staging needs an alarm recipient/);
    expect(deploymentFromContext(ctx({ stage: 'dev' })).props.alarmRecipients).toEqual({ emails: [] });
    expect(deploymentFromContext(ctx({ stage: 'prod', alarmEmail: 'a@example.com, b@example.com' })).props.alarmRecipients).toEqual({
      emails: ['a@example.com', 'b@example.com'],
    });
    expect(() => deploymentFromContext(ctx({ stage: 'prod', alarmEmail: 'nobody' }))).toThrow(/not an email address/);
    expect(() => deploymentFromContext(ctx({ stage: 'prod', alarmTopicArn: 'oncall' }))).toThrow(/not an SNS topic ARN/);
  });

  it('two copies of a stage: the qualifier names the stack, and with it every alarm, the dashboard and the metrics stage', () => {
    const ctx = (key: string) => ({ stage: 'prod', qualifier: 'blue', alarmEmail: ONCALL })[key];
    const d = deploymentFromContext(ctx);
    expect(d.stackName).toBe('IdempotentPayments-prod-blue');
    expect(() => deploymentFromContext((key) => ({ stage: 'prod', qualifier: 'Blue!', alarmEmail: ONCALL })[key])).toThrow(/qualifier/);
    const outdir = mkdtempSync(path.join(tmpdir(), 'synth-copy-'));
    outdirs.push(outdir);
    const app = new App({ outdir, context: { ...cdkContext, 'aws:cdk:bundling-stacks': [] } });
    const stackA = new PaymentsStack(app, 'IdempotentPayments-prod', deploymentFromContext((key) => ({ stage: 'prod', alarmEmail: ONCALL })[key]).props);
    const stackB = new PaymentsStack(app, d.stackName, d.props);
    const [a, b] = [Template.fromStack(stackA), Template.fromStack(stackB)];
    // No physical name of one copy is a physical name of the other (alarms, dashboard, secret, plans, API).
    const names = (t: Template) =>
      [
        ...Object.values(t.findResources('AWS::CloudWatch::Alarm')).map((r) => r.Properties.AlarmName),
        ...Object.values(t.findResources('AWS::CloudWatch::Dashboard')).map((r) => r.Properties.DashboardName),
        ...Object.values(t.findResources('AWS::SecretsManager::Secret')).map((r) => r.Properties.Name),
        ...Object.values(t.findResources('AWS::ApiGateway::UsagePlan')).map((r) => r.Properties.UsagePlanName),
      ].filter((n) => n !== undefined);
    const shared = names(a).filter((n) => names(b).includes(n));
    expect(shared).toEqual([]);
    // The secret has no fixed name: a redeploy after a destroy that retained it gets a new one.
    for (const s of Object.values(b.findResources('AWS::SecretsManager::Secret'))) expect(s.Properties.Name).toBeUndefined();
    const stages = new Set(Object.values(b.findResources('AWS::Lambda::Function')).map((f) => f.Properties.Environment.Variables.STAGE));
    expect([...stages]).toEqual(['prod-blue']);
    b.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'RefundsIssued', Dimensions: [{ Name: 'service', Value: 'payments' }, { Name: 'stage', Value: 'prod-blue' }] });
  });

  it('adopts an existing provider secret instead of creating one', () => {
    const arn = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:payments-provider-key-AbC123';
    const { template } = synth('prod', { providerSecretArn: arn });
    // Only the cursor signing key and the webhook signing secret are the stack's own; the provider key is the adopted one.
    template.resourceCountIs('AWS::SecretsManager::Secret', 2);
    expect(Object.keys(template.findResources('AWS::SecretsManager::Secret')).sort()).toEqual([expect.stringMatching(/^CursorSigningKey/), expect.stringMatching(/^ProviderWebhookSecret/)]);
    const worker = Object.entries(template.findResources('AWS::Lambda::Function')).find(([id]) => id.startsWith('PaymentWorkerFunction'))![1];
    expect(worker.Properties.Environment.Variables.PROVIDER_SECRET_ID).toBe(arn);
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
