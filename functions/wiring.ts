/**
 * The one place that builds handlers' dependencies from configuration, once per function instance.
 * Everything is built on first use, so a function builds (and reads the settings of) only what it uses.
 * Core code never reaches for these: it is handed them.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { InvokeCommand } from '@aws-sdk/client-lambda';
import { documentClient, lambdaClient, sqsClient } from './adapters/aws-clients';
import { operatorIdempotency as makeOperatorIdempotency, type IdempotentRunner } from './adapters/dynamo/operator-idempotency';
import { AuditRepository } from './adapters/dynamo/audit-repository';
import { countOpenByStatus } from './adapters/dynamo/open-payments';
import { PaymentRepository } from './adapters/dynamo/payment-repository';
import { CachedPrincipalDirectory, PrincipalsTable } from './adapters/dynamo/principals';
import { RecoveryRunsRepository, runLeaseMs } from './adapters/dynamo/recovery-runs';
import { RefundRepository } from './adapters/dynamo/refund-repository';
import { DynamoRateBudget } from './adapters/dynamo/provider-rate-budget';
import { crashAfterChargeRule, withCrashAfterCharge } from './adapters/provider/fault-injection';
import { providerApiKey } from './adapters/provider/provider-secret';
import { secretValue } from './adapters/secret-value';
import { stripeChargeRules } from './adapters/provider/stripe-amounts';
import { createStripeProvider } from './adapters/provider/stripe-provider';
import { withRateBudget } from './adapters/provider/rate-limited-provider';
import { withTracing } from './adapters/provider/traced-provider';
import { SqsPaymentQueue } from './adapters/sqs/payment-queue';
import { SqsDeliveryQueue } from './adapters/sqs/webhook-delivery-queue';
import { WebhookEndpointRepository } from './adapters/dynamo/webhook-endpoints';
import { WebhookEventRepository } from './adapters/dynamo/webhook-events';
import { dnsResolver } from './adapters/dns-resolver';
import { nodeWebhookPoster } from './adapters/webhook-poster';
import { DEFAULT_DELIVERY_POLICY, type DeliveryDeps } from './core/webhooks/delivery';
import { WebhookEndpoints } from './core/webhooks/endpoints';
import type { EventFeedDeps } from './core/webhooks/event-feed';
import { CircuitBreaker, logStateChange, type BreakerStateChange } from './core/circuit-breaker';
import { hmacCursorSeal } from './core/cursor-seal';
import { deployedCreatePath, PaymentsService } from './core/payments-service';
import { providerEventHandler } from './core/provider-events';
import type { PaymentProvider } from './core/ports/payment-provider';
import { unlimitedBudget, type RateBudget } from './core/ports/rate-budget';
import { PaymentProcessor } from './core/processing/payment-processor';
import { Reconciler } from './core/reconciler';
import { RefundProcessor } from './core/refund-processor';
import { RefundsService } from './core/refunds-service';
import { CancelService } from './core/cancel-service';
import { createAuditStreamHandler } from './audit/audit-stream';
import { createReconcilerHandler } from './recovery/reconciler';
import { loadConfig, type PaymentsConfig } from './shared/env';
import { serviceLogger as logger } from './shared/logger';
import { serviceMetrics as metrics } from './shared/metrics';
import { tracer } from './shared/tracer';
import { createWorkerHandler } from './worker/payment-worker';

const once = <T>(make: () => T): (() => T) => {
  let made = false;
  let value: T;
  return () => {
    if (!made) {
      value = make();
      made = true;
    }
    return value;
  };
};

function build() {
  const config = once((): PaymentsConfig => loadConfig());
  const store = once(
    () =>
      new PaymentRepository(documentClient(), {
        payments: config().paymentsTable,
        idempotency: config().idempotencyTable,
        openPaymentsIndex: config().openPaymentsIndex,
        byTenantIndex: config().paymentsByTenantIndex,
      }),
  );
  const queue = once(() => new SqsPaymentQueue(sqsClient(), config().queueUrl));
  const payments = once(
    () =>
      new PaymentsService({
        store: store(),
        queue: queue(),
        logger,
        metrics,
        idempotencyTtlSeconds: config().idempotencyTtlSeconds,
        maxRetries: config().maxRetries,
        stuckAfterSeconds: config().stuckAfterSeconds,
        // A key made by an earlier version's transaction and one made by the put are both read by this
        // version; the setting only chooses how a new key is written (README: upgrading).
        createPath: deployedCreatePath(config().createByTransaction),
      }),
  );
  // The payments table is optional per function: the refunds API, worker and reconciler have it (a tenant
  // refund that fails gives its amount back to the payment).
  const refunds = once(
    () =>
      new RefundRepository(documentClient(), {
        refunds: config().refundsTable,
        openRefundsIndex: config().openRefundsIndex,
        payments: config().paymentsTable,
        idempotency: config().idempotencyTable,
        byPaymentIndex: config().refundsByPaymentIndex,
      }),
  );
  const refundsService = once(
    () =>
      new RefundsService({
        payments: store(),
        refunds: refunds(),
        queue: queue(),
        logger,
        metrics,
        idempotencyTtlSeconds: config().idempotencyTtlSeconds,
        stuckAfterSeconds: config().stuckAfterSeconds,
      }),
  );
  const audit = once(() => new AuditRepository(documentClient(), { audit: config().auditTable }));
  const runs = once(() => new RecoveryRunsRepository(documentClient(), config().recoveryTable));
  // Listing cursors are signed with the stage's key, read once per instance (cursor-seal.ts).
  const cursors = once(() =>
    hmacCursorSeal(() => {
      if (!config().cursorSecretId) throw new Error('CURSOR_SECRET_ID is not set: listing cursors cannot be signed');
      return secretValue(config().cursorSecretId, 3600);
    }),
  );

  // One breaker per function instance, shared by every invocation the instance serves.
  const breaker = once(
    () =>
      new CircuitBreaker('provider', {
        minFailingPayments: config().breakerMinFailingPayments,
        failureRateThreshold: config().breakerFailureRate,
        windowMs: config().breakerWindowSeconds * 1000,
        openMs: config().breakerOpenSeconds * 1000,
        onStateChange: (change: BreakerStateChange) => {
          logStateChange(logger)(change);
          metrics.count('BreakerStateChanges', 1, { state: change.to });
        },
      }),
  );

  // One budget for the provider account, shared through DynamoDB by every instance that calls it.
  const rateBudget = once(
    (): RateBudget =>
      config().providerBudgetTable
        ? new DynamoRateBudget(documentClient(), {
            table: config().providerBudgetTable,
            name: 'provider',
            opsPerSecond: config().providerOpsPerSecond,
            maxWaitMs: config().providerBudgetMaxWaitMs,
          })
        : unlimitedBudget,
  );

  // The provider adapter needs its secret, read once (Secrets Manager in AWS, an override locally).
  const provider = once(async (): Promise<PaymentProvider> => {
    const c = config();
    // providerUrl is protocol://host:port, or the local stack's PROVIDER_URL override.
    const url = new URL(c.providerUrl);
    const real = createStripeProvider({
      apiKey: await providerApiKey(c),
      host: url.hostname,
      port: Number(url.port || (url.protocol === 'http:' ? 80 : 443)),
      protocol: url.protocol === 'http:' ? 'http' : 'https',
      timeoutMs: c.providerTimeoutMs,
      tag: c.tag,
    });
    const crash = crashAfterChargeRule(c.faultCrashAfterCharge);
    // Every provider call waits for its slot in the account's rate budget, then is an X-Ray subsegment
    // annotated with its outcome.
    return withRateBudget(withTracing(crash ? withCrashAfterCharge(real, crash) : real, tracer), rateBudget());
  });

  const processor = once(
    async () =>
      new PaymentProcessor({
        store: store(),
        provider: await provider(),
        queue: queue(),
        breaker: breaker(),
        logger,
        metrics,
        // Deferred messages come back spread over half an open period after the breaker reopens.
        config: { ...config(), deferJitterMs: config().breakerOpenSeconds * 500 },
      }),
  );
  const cancelService = once(async () => new CancelService({ store: store(), processor: await processor(), metrics }));
  const refundProcessor = once(async () => new RefundProcessor({ refunds: refunds(), provider: await provider(), logger, metrics }));

  // Provider webhooks: read the payment or refund an event names, queue a resolve (no provider call here).
  const providerEvents = once(() => providerEventHandler({ payments: store(), refunds: refunds(), queue: queue(), tag: config().tag, logger, metrics }));

  const workerHandler = once(async () => createWorkerHandler({ processor: await processor(), refunds: await refundProcessor(), logger }));
  const auditHandler = once(() => createAuditStreamHandler({ repository: audit(), logger, metrics }));

  const reconcilerHandler = once(async () => {
    const c = config();
    const [proc, prov] = [await processor(), await provider()];
    return createReconcilerHandler({
      runs: runs(),
      runLeaseMs: runLeaseMs(c),
      logger,
      metrics,
      reconciler: (hasTime) =>
        new Reconciler({
          store: store(),
          queue: queue(),
          processor: proc,
          provider: prov,
          refunds: refunds(),
          logger,
          metrics,
          hasTime,
          config: { stuckAfterSeconds: c.stuckAfterSeconds, openDeadlineSeconds: c.openDeadlineSeconds, settleGraceMs: c.leaseSeconds * 2000, tag: c.tag },
        }),
    });
  });

  const recoveryApi = once(() => ({
    runs: runs(),
    runLeaseMs: runLeaseMs(config()),
    logger,
    startReconciler: async (run: { runId: string; startedAt: string; trigger: string }) => {
      await lambdaClient().send(
        new InvokeCommand({
          FunctionName: config().reconcilerFunctionName,
          InvocationType: 'Event',
          Payload: Buffer.from(JSON.stringify({ source: 'recovery-api', runId: run.runId, startedAt: run.startedAt, trigger: run.trigger })),
        }),
      );
    },
    openCounts: () => countOpenByStatus(documentClient(), config().paymentsTable, config().openPaymentsIndex),
  }));

  // API key id → tenant or operator, from the principals table (cached briefly); none in handler tests.
  const principals = once(() => {
    const table = config().principalsTable;
    return table ? new CachedPrincipalDirectory(new PrincipalsTable(documentClient(), table), { cacheSeconds: config().principalCacheSeconds }) : undefined;
  });
  const operatorIdempotency = once((): IdempotentRunner | undefined =>
    config().operatorIdempotencyTable ? makeOperatorIdempotency(new DynamoDBClient({ maxAttempts: 3 }), config().operatorIdempotencyTable) : undefined,
  );

  // Tenant webhooks: endpoints, stored events, the delivery queue. Loopback http only where the local
  // stack sets WEBHOOK_ALLOW_LOOPBACK_HTTP (never deployed).
  const webhookEndpointStore = once(() => new WebhookEndpointRepository(documentClient(), config().webhookEndpointsTable));
  const webhookEventStore = once(
    () =>
      new WebhookEventRepository(documentClient(), {
        events: config().webhookEventsTable,
        byTenantIndex: config().webhookEventsByTenantIndex,
        retentionSeconds: config().webhookEventRetentionSeconds,
      }),
  );
  const deliveryQueue = once(() => new SqsDeliveryQueue(sqsClient(), { queue: config().webhookDeliveryQueueUrl, deadLetter: config().webhookDeadLetterQueueUrl }));
  const urlPolicy = () => ({ allowLoopbackHttp: config().webhookAllowLoopbackHttp });
  const webhookEndpoints = once(() => new WebhookEndpoints({ store: webhookEndpointStore(), resolve: dnsResolver, urlPolicy: urlPolicy(), now: () => new Date() }));
  const eventFeed = once((): EventFeedDeps => ({ events: webhookEventStore(), endpoints: webhookEndpointStore(), queue: deliveryQueue() }));
  const webhookDelivery = once(
    (): DeliveryDeps => ({
      events: webhookEventStore(),
      endpoints: webhookEndpointStore(),
      post: nodeWebhookPoster,
      resolve: dnsResolver,
      requeue: (m, delaySeconds) => deliveryQueue().send(m, delaySeconds),
      deadLetter: (m, reason) => deliveryQueue().deadLetter(m, reason),
      now: () => new Date(),
      policy: {
        ...DEFAULT_DELIVERY_POLICY,
        backoff: { baseSeconds: config().webhookRetryBaseSeconds, capSeconds: config().webhookRetryCapSeconds },
        maxAgeMs: config().webhookMaxAgeSeconds * 1000,
        url: urlPolicy(),
      },
    }),
  );

  return {
    config,
    webhookEndpoints,
    eventFeed,
    webhookDelivery,
    /** What the provider can take (Stripe's amount table and metadata limits), checked at create. */
    chargeRules: stripeChargeRules,
    logger,
    metrics,
    principals,
    operatorIdempotency,
    store,
    queue,
    payments,
    audit,
    refunds,
    refundsService,
    runs,
    cursors,
    breaker,
    rateBudget,
    provider,
    processor,
    providerEvents,
    cancelService,
    workerHandler,
    auditHandler,
    reconcilerHandler,
    recoveryApi,
  };
}

export type Wiring = ReturnType<typeof build>;

let built: Wiring | undefined;

/** This function instance's dependencies. */
export function wiring(): Wiring {
  built ??= build();
  return built;
}
