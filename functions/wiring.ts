/**
 * The one place that builds handlers' dependencies from configuration, once per function instance.
 * Everything is built on first use, so a function builds (and reads the settings of) only what it uses.
 * Core code never reaches for these: it is handed them.
 */
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { documentClient, sqsClient } from './adapters/aws-clients';
import { AuditRepository } from './adapters/dynamo/audit-repository';
import { countOpenByStatus } from './adapters/dynamo/open-payments';
import { PaymentRepository } from './adapters/dynamo/payment-repository';
import { RecoveryRunsRepository, runLeaseMs } from './adapters/dynamo/recovery-runs';
import { crashAfterChargeRule, withCrashAfterCharge } from './adapters/provider/fault-injection';
import { providerApiKey } from './adapters/provider/provider-secret';
import { createStripeProvider } from './adapters/provider/stripe-provider';
import { SqsPaymentQueue } from './adapters/sqs/payment-queue';
import { CircuitBreaker, logStateChange } from './core/circuit-breaker';
import { PaymentsService } from './core/payments-service';
import type { PaymentProvider } from './core/ports/payment-provider';
import { PaymentProcessor } from './core/processing/payment-processor';
import { Reconciler } from './core/reconciler';
import { createReconcilerHandler } from './recovery/reconciler';
import { loadConfig, type PaymentsConfig } from './shared/env';
import { serviceLogger as logger } from './shared/logger';
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
      }),
  );
  const queue = once(() => new SqsPaymentQueue(sqsClient(), config().queueUrl));
  const payments = once(
    () =>
      new PaymentsService({
        store: store(),
        queue: queue(),
        logger,
        idempotencyTtlSeconds: config().idempotencyTtlSeconds,
        maxRetries: config().maxRetries,
        stuckAfterSeconds: config().stuckAfterSeconds,
      }),
  );
  const audit = once(() => new AuditRepository(documentClient(), { audit: config().auditTable, byTenantIndex: config().auditByTenantIndex }));
  const runs = once(() => new RecoveryRunsRepository(documentClient(), config().recoveryTable));

  // One breaker per function instance, shared by every invocation the instance serves.
  const breaker = once(
    () =>
      new CircuitBreaker('provider', {
        minFailingPayments: config().breakerMinFailingPayments,
        failureRateThreshold: config().breakerFailureRate,
        windowMs: config().breakerWindowSeconds * 1000,
        openMs: config().breakerOpenSeconds * 1000,
        onStateChange: logStateChange(logger),
      }),
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
    });
    const crash = crashAfterChargeRule(c.faultCrashAfterCharge);
    return crash ? withCrashAfterCharge(real, crash) : real;
  });

  const processor = once(
    async () =>
      new PaymentProcessor({
        store: store(),
        provider: await provider(),
        queue: queue(),
        breaker: breaker(),
        logger,
        // Deferred messages come back spread over half an open period after the breaker reopens.
        config: { ...config(), deferJitterMs: config().breakerOpenSeconds * 500 },
      }),
  );

  const workerHandler = once(async () => createWorkerHandler({ processor: await processor(), logger }));

  const reconcilerHandler = once(async () => {
    const c = config();
    const [proc, prov] = [await processor(), await provider()];
    return createReconcilerHandler({
      runs: runs(),
      runLeaseMs: runLeaseMs(c),
      logger,
      reconciler: (hasTime) =>
        new Reconciler({
          store: store(),
          queue: queue(),
          processor: proc,
          provider: prov,
          logger,
          hasTime,
          config: { stuckAfterSeconds: c.stuckAfterSeconds, openDeadlineSeconds: c.openDeadlineSeconds, settleGraceMs: c.leaseSeconds * 2000 },
        }),
    });
  });

  const lambda = once(() => new LambdaClient({}));
  const recoveryApi = once(() => ({
    runs: runs(),
    runLeaseMs: runLeaseMs(config()),
    logger,
    startReconciler: async (run: { runId: string; startedAt: string; trigger: string }) => {
      await lambda().send(
        new InvokeCommand({
          FunctionName: config().reconcilerFunctionName,
          InvocationType: 'Event',
          Payload: Buffer.from(JSON.stringify({ source: 'recovery-api', runId: run.runId, startedAt: run.startedAt, trigger: run.trigger })),
        }),
      );
    },
    openCounts: () => countOpenByStatus(documentClient(), config().paymentsTable, config().openPaymentsIndex),
  }));

  return { config, logger, store, queue, payments, audit, runs, breaker, provider, processor, workerHandler, reconcilerHandler, recoveryApi };
}

export type Wiring = ReturnType<typeof build>;

let built: Wiring | undefined;

/** This function instance's dependencies. */
export function wiring(): Wiring {
  built ??= build();
  return built;
}
