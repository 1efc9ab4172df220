/**
 * What tells an operator the service is unwell, and where to look: one SNS topic per stack (email
 * subscriptions from `-c alarmEmail`, or an existing topic from `-c alarmTopicArn`), alarms that all
 * notify it (on ALARM and on OK), each saying what missing data means, and one
 * CloudWatch dashboard with the business metrics the functions emit (EMF, namespace METRICS_NAMESPACE)
 * beside the platform's health metrics. README "Operations" is the runbook for each alarm.
 */
import { Duration } from 'aws-cdk-lib';
import type * as apigw from 'aws-cdk-lib/aws-apigateway';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as events from 'aws-cdk-lib/aws-events';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type { MetricName } from '../../functions/core/ports';
import type { EnvironmentConfig } from '../config';

/** CloudWatch namespace and `service` dimension of the functions' EMF metrics (set on every function). */
export const METRICS_NAMESPACE = 'IdempotentPayments';
export const METRICS_SERVICE = 'payments';

/** The operations whose throttled requests count (every one the functions make). */
const THROTTLE_OPERATIONS = ['GetItem', 'BatchGetItem', 'PutItem', 'UpdateItem', 'DeleteItem', 'Query', 'TransactWriteItems'];

/**
 * Requests DynamoDB throttled on a table, for every operation the functions make (a write throttled
 * because of an index counts on the table). Metric ids carry the table's name, so several tables'
 * sums can share a graph.
 */
function throttledRequests(table: dynamodb.ITable, name: string, period: Duration): cloudwatch.MathExpression {
  const usingMetrics = Object.fromEntries(
    THROTTLE_OPERATIONS.map((operation) => [
      `${name.toLowerCase()}${operation.toLowerCase()}`,
      table.metric('ThrottledRequests', { dimensionsMap: { TableName: table.tableName, Operation: operation }, period, statistic: 'Sum' }),
    ]),
  );
  return new cloudwatch.MathExpression({ expression: Object.keys(usingMetrics).join(' + '), usingMetrics, period, label: name });
}

/** Where alarms go: email addresses subscribed to the stack's topic, or an existing topic (then no topic is made). */
export interface AlarmRecipients {
  readonly emails: readonly string[];
  readonly topicArn?: string;
}

export interface MonitoringProps {
  readonly config: EnvironmentConfig;
  /** Prefix of alarm and dashboard names: the stack name, so two copies of a stage never collide. */
  readonly namePrefix: string;
  /** The `stage` dimension the functions' metrics carry (their STAGE). */
  readonly metricsStage: string;
  readonly recipients: AlarmRecipients;
  /** Every function, by a short display name (Worker, Reconciler, ...). */
  readonly functions: Readonly<Record<string, lambda.Function>>;
  readonly api: apigw.RestApi;
  readonly paymentsQueue: sqs.IQueue;
  readonly deadLetterQueues: Readonly<Record<string, sqs.IQueue>>;
  /** The function reading the Payments stream (its IteratorAge is the stream's lag). */
  readonly streamConsumer: lambda.IFunction;
  /** Every table, by a short display name. */
  readonly tables: Readonly<Record<string, dynamodb.ITable>>;
  /** The schedule that starts the reconciler. */
  readonly reconcilerSchedule: events.IRule;
}

/**
 * Missing data, said per alarm. A count of bad events (errors, throttles, refunds) publishes nothing
 * while nothing bad happens: missing is fine. A heartbeat (a run that completed) publishes nothing when
 * the job stops: missing is the failure itself.
 */
type Missing = 'fine' | 'is-failure';

export class Monitoring extends Construct {
  readonly topic: sns.ITopic;
  readonly dashboard: cloudwatch.Dashboard;
  readonly alarms: cloudwatch.Alarm[] = [];
  private readonly stage: string;
  private readonly namePrefix: string;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const { config } = props;
    const t = config.alarms;
    this.stage = props.metricsStage;
    this.namePrefix = props.namePrefix;
    if (props.recipients.topicArn) {
      this.topic = sns.Topic.fromTopicArn(this, 'AlarmTopic', props.recipients.topicArn);
    } else {
      // Publishing only over TLS (cdk-nag SNS3); CloudWatch alarms publish with TLS.
      const topic = new sns.Topic(this, 'AlarmTopic', { displayName: `Idempotent payments alarms (${props.namePrefix})`, enforceSSL: true });
      for (const email of props.recipients.emails) topic.addSubscription(new subscriptions.EmailSubscription(email));
      this.topic = topic;
    }

    const fiveMinutes = Duration.minutes(5);
    const oneMinute = Duration.minutes(1);

    // ---- Platform health -------------------------------------------------------------------------
    for (const [name, fn] of Object.entries(props.functions)) {
      this.alarm(`${name}Errors`, fn.metricErrors({ period: fiveMinutes, statistic: 'Sum' }), {
        threshold: 1,
        missing: 'fine',
        description: `${name} function invocations failed (Lambda Errors)`,
      });
      this.alarm(`${name}Throttles`, fn.metricThrottles({ period: fiveMinutes, statistic: 'Sum' }), {
        threshold: 1,
        missing: 'fine',
        description: `${name} function invocations were throttled`,
      });
      const timeoutMs = (fn.timeout ?? Duration.seconds(3)).toMilliseconds();
      const near = Math.round(timeoutMs * t.durationShareOfTimeout);
      this.alarm(`${name}DurationNearTimeout`, fn.metricDuration({ period: fiveMinutes, statistic: 'Maximum' }), {
        threshold: near,
        missing: 'fine',
        description: `${name} ran ${near} ms or longer (${Math.round(t.durationShareOfTimeout * 100)}% of its ${timeoutMs} ms timeout): close to being cut off`,
      });
    }

    for (const [name, table] of Object.entries(props.tables)) {
      // Every request DynamoDB throttled, on the table or because of one of its indexes.
      const throttled = throttledRequests(table, name, fiveMinutes);
      this.alarm(`${name}TableThrottles`, throttled, {
        threshold: t.dynamoThrottledRequests,
        missing: 'fine',
        description: `DynamoDB throttled requests to the ${name} table (a hot partition or a capacity limit)`,
      });
    }

    const api5xx = props.api.metricServerError({ period: fiveMinutes, statistic: 'Sum' });
    const apiCount = props.api.metricCount({ period: fiveMinutes, statistic: 'Sum' });
    const api5xxRate = new cloudwatch.MathExpression({
      expression: 'IF(requests > 0, 100 * errors / requests, 0)',
      usingMetrics: { errors: api5xx, requests: apiCount },
      period: fiveMinutes,
      label: 'API 5xx rate (%)',
    });
    this.alarm('Api5xxRate', api5xxRate, { threshold: t.api5xxRatePercent, missing: 'fine', description: `API 5xx responses above ${t.api5xxRatePercent}% of requests` });
    const apiP99 = props.api.metricLatency({ period: fiveMinutes, statistic: 'p99' });
    this.alarm('ApiLatencyP99', apiP99, {
      threshold: t.apiP99LatencyMs,
      evaluationPeriods: 2,
      missing: 'fine',
      description: `API p99 latency above ${t.apiP99LatencyMs} ms for 10 minutes`,
    });

    // The age of the oldest payment waiting in the queue (SQS stops publishing for a queue idle for hours).
    const queueAge = props.paymentsQueue.metricApproximateAgeOfOldestMessage({ period: oneMinute, statistic: 'Maximum' });
    this.alarm('PaymentsQueueOldestMessageAge', queueAge, {
      threshold: t.queueAgeSeconds,
      evaluationPeriods: 5,
      missing: 'fine',
      description: `The payments queue's oldest message is older than ${t.queueAgeSeconds} s: the worker is not keeping up or is failing`,
    });
    for (const [name, dlq] of Object.entries(props.deadLetterQueues)) {
      this.alarm(`${name}NotEmpty`, dlq.metricApproximateNumberOfMessagesVisible({ period: oneMinute, statistic: 'Maximum' }), {
        threshold: 1,
        missing: 'fine',
        description: `${name} holds messages that need an operator`,
      });
    }
    const iteratorAge = props.streamConsumer.metric('IteratorAge', { period: oneMinute, statistic: 'Maximum' });
    this.alarm('StreamIteratorAge', iteratorAge, {
      threshold: t.streamIteratorAgeSeconds * 1000,
      evaluationPeriods: 5,
      missing: 'fine',
      description: `The audit trail lags the Payments stream by more than ${t.streamIteratorAgeSeconds} s`,
    });
    const failedInvocations = new cloudwatch.Metric({
      namespace: 'AWS/Events',
      metricName: 'FailedInvocations',
      dimensionsMap: { RuleName: props.reconcilerSchedule.ruleName },
      period: fiveMinutes,
      statistic: 'Sum',
    });
    this.alarm('ReconcilerScheduleFailedInvocations', failedInvocations, {
      threshold: 1,
      missing: 'fine',
      description: 'EventBridge could not start the reconciler (permissions, throttling after its retries)',
    });

    // ---- Money stops or leaks ----------------------------------------------------------------------
    this.alarm('ProviderAuthFailures', this.business('ProviderAuthFailures', { period: fiveMinutes }), {
      threshold: 1,
      missing: 'fine',
      description: 'The provider refuses our API key or account (401/403): every payment is held, none is charged',
    });
    this.alarm('SuccessWithoutCapture', this.business('SuccessWithoutCapture', { period: fiveMinutes }), {
      threshold: 1,
      missing: 'fine',
      description: 'A payment we report as successful has no capture at the provider',
    });
    const silentPeriods = Math.max(1, Math.round(t.reconcilerSilentMinutes / 5));
    this.alarm('ReconcilerNotRunning', this.business('ReconcilerRunsCompleted', { period: fiveMinutes }), {
      threshold: 1,
      comparison: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: silentPeriods,
      missing: 'is-failure',
      description: `No reconciliation run completed for ${silentPeriods * 5} minutes: stuck payments are not being finished`,
    });
    this.alarm('ReconcilerFailures', this.business('ReconcilerFailures', { period: fiveMinutes }), {
      threshold: 1,
      missing: 'fine',
      description: 'A reconciliation run failed: stuck payments are not being finished',
    });
    this.alarm('UnknownOutcomeBacklog', this.business('UnknownOutcomeBacklog', { period: fiveMinutes, statistic: 'Maximum' }), {
      threshold: t.unknownOutcomeBacklog,
      evaluationPeriods: 3,
      missing: 'fine',
      description: `Payments whose provider outcome stays unresolved for 15 minutes (at least ${t.unknownOutcomeBacklog} per run)`,
    });
    this.alarm('RefundsIssued', this.business('RefundsIssued', { period: fiveMinutes }), {
      threshold: 1,
      missing: 'fine',
      description: 'The reconciler refunded a capture no payment accounts for: find out how the money moved',
    });
    this.alarm('RefundsFailed', this.business('RefundsFailed', { period: fiveMinutes }), {
      threshold: 1,
      missing: 'fine',
      description: 'The provider ended a refund the service owes failed: the money is still captured and must be returned another way',
    });
    this.alarm('AuditChainFailures', this.business('AuditChainFailures', { period: fiveMinutes }), {
      threshold: t.auditChainFailures,
      missing: 'fine',
      description: 'Audit entries conflict with stored ones or wait for a missing previous version',
    });

    this.dashboard = this.buildDashboard(props, { api5xxRate, apiP99, queueAge, iteratorAge });
  }

  /** A metric the functions emit, with the dimensions every one of them carries. */
  business(name: MetricName, opts: { period: Duration; statistic?: string; dimensions?: Record<string, string> }): cloudwatch.Metric {
    return new cloudwatch.Metric({
      namespace: METRICS_NAMESPACE,
      metricName: name,
      dimensionsMap: { service: METRICS_SERVICE, stage: this.stage, ...opts.dimensions },
      period: opts.period,
      statistic: opts.statistic ?? 'Sum',
      ...(opts.dimensions ? { label: `${name} ${Object.values(opts.dimensions).join(' ')}` } : {}),
    });
  }

  private alarm(
    id: string,
    metric: cloudwatch.IMetric,
    o: { threshold: number; description: string; missing: Missing; evaluationPeriods?: number; comparison?: cloudwatch.ComparisonOperator },
  ): cloudwatch.Alarm {
    const alarm = new cloudwatch.Alarm(this, id, {
      alarmName: `${this.namePrefix}-${id}`,
      alarmDescription: `${o.description}. Runbook: README.md, Operations, ${id}.`,
      metric,
      threshold: o.threshold,
      comparisonOperator: o.comparison ?? cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: o.evaluationPeriods ?? 1,
      treatMissingData: o.missing === 'is-failure' ? cloudwatch.TreatMissingData.BREACHING : cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    const notify = new actions.SnsAction(this.topic);
    alarm.addAlarmAction(notify);
    alarm.addOkAction(notify);
    this.alarms.push(alarm);
    return alarm;
  }

  private buildDashboard(
    props: MonitoringProps,
    m: { api5xxRate: cloudwatch.IMetric; apiP99: cloudwatch.IMetric; queueAge: cloudwatch.IMetric; iteratorAge: cloudwatch.IMetric },
  ): cloudwatch.Dashboard {
    const p = Duration.minutes(5);
    const b = (name: MetricName, dimensions?: Record<string, string>) => this.business(name, { period: p, ...(dimensions ? { dimensions } : {}) });
    const graph = (title: string, left: cloudwatch.IMetric[], width = 8) => new cloudwatch.GraphWidget({ title, left, width, height: 6 });
    const dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: props.namePrefix,
      defaultInterval: Duration.hours(3),
    });
    const fns = Object.entries(props.functions);
    dashboard.addWidgets(
      new cloudwatch.TextWidget({
        markdown: `# Idempotent payments (${props.namePrefix})\nBusiness metrics (EMF, namespace ${METRICS_NAMESPACE}) on top, platform health below. Runbook: README, Operations.`,
        width: 24,
        height: 2,
      }),
    );
    dashboard.addWidgets(
      graph('Payments: created, replayed, key mismatches', [b('PaymentsCreated'), b('PaymentsReplayed'), b('IdempotencyKeyMismatches')]),
      graph(
        'Attempts by outcome',
        ['succeeded', 'declined', 'unknown', 'provider_error', 'outage'].map((outcome) => b('PaymentAttempts', { outcome })),
      ),
      graph('Retries, unknown outcomes resolved, breaker', [
        b('RetriesScheduled'),
        ...['succeeded', 'declined', 'canceled', 'not_charged'].map((outcome) => b('UnknownOutcomesResolved', { outcome })),
        ...['open', 'half_open', 'closed'].map((state) => b('BreakerStateChanges', { state })),
      ]),
    );
    dashboard.addWidgets(
      graph('Reconciler', [b('ReconcilerRunsCompleted'), b('ReconcilerItemsRead'), b('ReconcilerResolved'), b('ReconcilerExpired'), b('ReconcilerDiscrepancies'), b('ReconcilerFailures')]),
      graph('Unknown-outcome backlog, refunds', [this.business('UnknownOutcomeBacklog', { period: p, statistic: 'Maximum' }), b('RefundsIssued'), b('RefundsCreated'), b('RefundsSucceeded'), b('RefundsFailed'), b('ForeignCaptures')]),
      graph('Audit trail', [b('AuditEntriesWritten'), b('AuditChainFailures')]),
    );
    dashboard.addWidgets(
      graph('Money stops or leaks: provider refusing our key, success without capture', [b('ProviderAuthFailures'), b('SuccessWithoutCapture')], 12),
      graph(
        'DynamoDB throttled requests',
        Object.entries(props.tables).map(([name, table]) => throttledRequests(table, name, p)),
        12,
      ),
    );
    dashboard.addWidgets(
      graph('API requests and 5xx rate', [props.api.metricCount({ period: p }), m.api5xxRate]),
      graph('API latency p99 (ms)', [m.apiP99]),
      graph('Payments queue oldest message (s), audit stream lag (ms)', [m.queueAge, m.iteratorAge]),
    );
    dashboard.addWidgets(
      graph('Lambda errors', fns.map(([name, fn]) => fn.metricErrors({ period: p, label: name }))),
      graph('Lambda throttles', fns.map(([name, fn]) => fn.metricThrottles({ period: p, label: name }))),
      graph(
        'Dead-letter queues',
        Object.entries(props.deadLetterQueues).map(([name, q]) => q.metricApproximateNumberOfMessagesVisible({ period: p, label: name })),
      ),
    );
    dashboard.addWidgets(new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 24, height: 6 }));
    return dashboard;
  }
}
