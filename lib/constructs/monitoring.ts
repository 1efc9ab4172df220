/**
 * What tells an operator the service is unwell, and where to look: one SNS topic per stage (email
 * subscriptions from the stage config), alarms that all notify it (on ALARM and on OK), and one
 * CloudWatch dashboard with the business metrics the functions emit (EMF, namespace METRICS_NAMESPACE)
 * beside the platform's health metrics. README "Operations" is the runbook for each alarm.
 */
import { Duration } from 'aws-cdk-lib';
import type * as apigw from 'aws-cdk-lib/aws-apigateway';
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

export interface MonitoringProps {
  readonly config: EnvironmentConfig;
  /** Every function, by a short display name (Worker, Reconciler, ...). */
  readonly functions: Readonly<Record<string, lambda.IFunction>>;
  readonly api: apigw.RestApi;
  readonly paymentsQueue: sqs.IQueue;
  readonly deadLetterQueues: Readonly<Record<string, sqs.IQueue>>;
  /** The function reading the Payments stream (its IteratorAge is the stream's lag). */
  readonly streamConsumer: lambda.IFunction;
}

export class Monitoring extends Construct {
  readonly topic: sns.Topic;
  readonly dashboard: cloudwatch.Dashboard;
  readonly alarms: cloudwatch.Alarm[] = [];
  private readonly stage: string;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const { config } = props;
    const t = config.alarms;
    this.stage = config.stage;
    // Publishing only over TLS (cdk-nag SNS3); CloudWatch alarms publish with TLS.
    this.topic = new sns.Topic(this, 'AlarmTopic', { displayName: `Idempotent payments alarms (${config.stage})`, enforceSSL: true });
    for (const email of config.alarmEmails) this.topic.addSubscription(new subscriptions.EmailSubscription(email));

    const fiveMinutes = Duration.minutes(5);
    const oneMinute = Duration.minutes(1);

    // ---- Platform health -------------------------------------------------------------------------
    for (const [name, fn] of Object.entries(props.functions)) {
      this.alarm(`${name}Errors`, fn.metricErrors({ period: fiveMinutes, statistic: 'Sum' }), {
        threshold: 1,
        description: `${name} function invocations failed (Lambda Errors)`,
      });
      this.alarm(`${name}Throttles`, fn.metricThrottles({ period: fiveMinutes, statistic: 'Sum' }), {
        threshold: 1,
        description: `${name} function invocations were throttled`,
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
    this.alarm('Api5xxRate', api5xxRate, { threshold: t.api5xxRatePercent, description: `API 5xx responses above ${t.api5xxRatePercent}% of requests` });
    const apiP99 = props.api.metricLatency({ period: fiveMinutes, statistic: 'p99' });
    this.alarm('ApiLatencyP99', apiP99, {
      threshold: t.apiP99LatencyMs,
      evaluationPeriods: 2,
      description: `API p99 latency above ${t.apiP99LatencyMs} ms for 10 minutes`,
    });

    const queueAge = props.paymentsQueue.metricApproximateAgeOfOldestMessage({ period: oneMinute, statistic: 'Maximum' });
    this.alarm('PaymentsQueueOldestMessageAge', queueAge, {
      threshold: t.queueAgeSeconds,
      evaluationPeriods: 5,
      description: `The payments queue's oldest message is older than ${t.queueAgeSeconds} s: the worker is not keeping up or is failing`,
    });
    for (const [name, dlq] of Object.entries(props.deadLetterQueues)) {
      this.alarm(`${name}NotEmpty`, dlq.metricApproximateNumberOfMessagesVisible({ period: oneMinute, statistic: 'Maximum' }), {
        threshold: 1,
        description: `${name} holds messages that need an operator`,
      });
    }
    const iteratorAge = props.streamConsumer.metric('IteratorAge', { period: oneMinute, statistic: 'Maximum' });
    this.alarm('StreamIteratorAge', iteratorAge, {
      threshold: t.streamIteratorAgeSeconds * 1000,
      evaluationPeriods: 5,
      description: `The audit trail lags the Payments stream by more than ${t.streamIteratorAgeSeconds} s`,
    });

    // ---- Business ----------------------------------------------------------------------------------
    this.alarm('ReconcilerFailures', this.business('ReconcilerFailures', { period: fiveMinutes }), {
      threshold: 1,
      description: 'A reconciliation run failed: stuck payments are not being finished',
    });
    this.alarm('UnknownOutcomeBacklog', this.business('UnknownOutcomeBacklog', { period: fiveMinutes, statistic: 'Maximum' }), {
      threshold: t.unknownOutcomeBacklog,
      evaluationPeriods: 3,
      description: `Payments whose provider outcome stays unresolved for 15 minutes (at least ${t.unknownOutcomeBacklog} per run)`,
    });
    this.alarm('RefundsIssued', this.business('RefundsIssued', { period: fiveMinutes }), {
      threshold: 1,
      description: 'The reconciler refunded a capture no payment accounts for: find out how the money moved',
    });
    this.alarm('RefundsFailed', this.business('RefundsFailed', { period: fiveMinutes }), {
      threshold: 1,
      description: 'The provider ended a refund the service owes failed: the money is still captured and must be returned another way',
    });
    this.alarm('AuditChainFailures', this.business('AuditChainFailures', { period: fiveMinutes }), {
      threshold: t.auditChainFailures,
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

  private alarm(id: string, metric: cloudwatch.IMetric, o: { threshold: number; description: string; evaluationPeriods?: number }): cloudwatch.Alarm {
    const alarm = new cloudwatch.Alarm(this, id, {
      alarmName: `idempotent-payments-${this.stage}-${id}`,
      alarmDescription: `${o.description}. Runbook: README.md, Operations, ${id}.`,
      metric,
      threshold: o.threshold,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: o.evaluationPeriods ?? 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
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
      dashboardName: `idempotent-payments-${props.config.stage}`,
      defaultInterval: Duration.hours(3),
    });
    const fns = Object.entries(props.functions);
    dashboard.addWidgets(
      new cloudwatch.TextWidget({
        markdown: `# Idempotent payments (${props.config.stage})\nBusiness metrics (EMF, namespace ${METRICS_NAMESPACE}) on top, platform health below. Runbook: README, Operations.`,
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
      graph('Reconciler', [b('ReconcilerItemsRead'), b('ReconcilerResolved'), b('ReconcilerExpired'), b('ReconcilerDiscrepancies'), b('ReconcilerFailures')]),
      graph('Unknown-outcome backlog, refunds', [this.business('UnknownOutcomeBacklog', { period: p, statistic: 'Maximum' }), b('RefundsIssued'), b('RefundsFailed'), b('ForeignCaptures')]),
      graph('Audit trail', [b('AuditEntriesWritten'), b('AuditChainFailures')]),
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
