/**
 * SQS worker: one payment attempt per message, with partial batch responses (the event source has
 * ReportBatchItemFailures), so one bad record does not redeliver the whole batch.
 *
 * A record is reported as failed, and so redelivered after the visibility timeout and moved to the DLQ
 * after maxReceiveCount receives, when:
 *   - its body is not a payment message (not JSON, no paymentId): a poison message, logged as such;
 *   - processing threw: DynamoDB or SQS unavailable, the provider could not say whether an earlier
 *     attempt charged (OutcomeUnresolvedError), or the injected crash-after-charge fault.
 * Everything the processor decided (settled, dropped as duplicate/stale, rescheduled, deferred) is a
 * success: the message has done its job.
 */
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { createHttpProvider } from '../adapters/provider/http-provider';
import { CircuitBreakerRegistry, type BreakerSnapshot } from '../core/circuit-breaker';
import { PaymentProcessor, sharedLogger, type ProcessorLogger, type ProcessResult, type WorkerMessage } from '../core/payment-processor';
import { container } from '../shared/container';
import { loadConfig } from '../shared/env';
import type { Payment } from '../core/payment';

export interface MessageProcessor {
  process(message: WorkerMessage): Promise<ProcessResult>;
}

export interface WorkerDeps {
  readonly processor: MessageProcessor;
  readonly logger?: ProcessorLogger;
}

export type WorkerHandler = (event: SQSEvent, context?: Context) => Promise<SQSBatchResponse>;

/** A body that can never be processed: retried until maxReceiveCount, then kept in the DLQ. */
export class PoisonMessageError extends Error {
  override readonly name = 'PoisonMessageError';
}

/** Parses and checks a message body; throws PoisonMessageError when it is not a payment message. */
export function parseWorkerMessage(body: string): WorkerMessage {
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    throw new PoisonMessageError('message body is not JSON');
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new PoisonMessageError('message body is not a JSON object');
  const o = v as Record<string, unknown>;
  if (typeof o.paymentId !== 'string' || o.paymentId.trim() === '' || o.paymentId.length > 256) {
    throw new PoisonMessageError('message has no valid paymentId');
  }
  if (o.notBefore !== undefined && (typeof o.notBefore !== 'number' || !Number.isFinite(o.notBefore))) {
    throw new PoisonMessageError('message notBefore is not a number');
  }
  if (o.forAttempt !== undefined && (typeof o.forAttempt !== 'number' || !Number.isInteger(o.forAttempt) || o.forAttempt < 1)) {
    throw new PoisonMessageError('message forAttempt is not a positive integer');
  }
  return {
    paymentId: o.paymentId,
    reason: typeof o.reason === 'string' ? o.reason : 'unknown',
    ...(o.notBefore !== undefined ? { notBefore: o.notBefore as number } : {}),
    ...(o.forAttempt !== undefined ? { forAttempt: o.forAttempt as number } : {}),
  };
}

export function createWorkerHandler(deps: WorkerDeps): WorkerHandler {
  const log = deps.logger ?? sharedLogger;

  const recordHandler = async (record: SQSRecord): Promise<ProcessResult> => {
    const receiveCount = Number(record.attributes?.ApproximateReceiveCount ?? '1');
    let message: WorkerMessage;
    try {
      message = parseWorkerMessage(record.body);
    } catch (err) {
      log.error('poison message; it goes to the DLQ after maxReceiveCount receives', {
        messageId: record.messageId,
        receiveCount,
        error: (err as Error).message,
        bodyPreview: record.body.slice(0, 200),
      });
      throw err;
    }
    try {
      const result = await deps.processor.process(message);
      log.debug('message processed', { messageId: record.messageId, paymentId: message.paymentId, result });
      return result;
    } catch (err) {
      log.warn('message failed; it will be redelivered', {
        messageId: record.messageId,
        paymentId: message.paymentId,
        receiveCount,
        error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
      });
      throw err;
    }
  };

  return async (event, context) => {
    // A processor per invocation: its state is per batch, and tests may run invocations concurrently.
    const processor = new BatchProcessor(EventType.SQS);
    const response = await processPartialResponse(event, recordHandler, processor, {
      ...(context ? { context } : {}),
      // Report every failed record instead of throwing, so the response shape is the same for all batches.
      throwOnFullBatchFailure: false,
    });
    return response as SQSBatchResponse;
  };
}

/** One breaker per provider for the life of the function instance. */
// Provider breaker thresholds; the environment may tune them per stage (defaults suit production).
const settings = loadConfig();
const breakers = new CircuitBreakerRegistry({
  consecutiveFailures: settings.breakerConsecutiveFailures,
  failureRateThreshold: settings.breakerFailureRate,
  windowSize: 20,
  minimumCalls: 10,
  openMs: settings.breakerOpenSeconds * 1000,
});

/** State of this instance's provider breakers (state changes are also logged), for metrics and health. */
export const breakerSnapshots = (): BreakerSnapshot[] => breakers.snapshots();

let production: WorkerHandler | undefined;

/** The processor wired with the production adapters; the reconciler resolves lapsed leases with it too. */
export function createProductionProcessor(): PaymentProcessor {
  const { config, repository, queue } = container();
  return new PaymentProcessor({
    repository,
    provider: createHttpProvider({ baseUrl: config.providerUrl, timeoutMs: config.providerTimeoutMs }),
    queue,
    breaker: breakers.get(config.providerUrl),
    config,
    // Fault injection for recovery drills; never set in a deployed stage. '1' crashes after every
    // charge; 'token' only for the first attempt of payments made with the tok_crash_after_charge token.
    faults: { crashAfterCharge: crashAfterChargeFault(config.faultCrashAfterCharge) },
  });
}

export function crashAfterChargeFault(mode: string | undefined): boolean | ((p: Payment) => boolean) {
  if (mode === '1') return true;
  if (mode === 'token') return (p) => p.paymentMethod.token === 'tok_crash_after_charge' && p.attempt === 1;
  return false;
}

function productionHandler(): WorkerHandler {
  production ??= createWorkerHandler({ processor: createProductionProcessor() });
  return production;
}

/** The Lambda entry point, wired with the production adapters on first use. */
export const handler = (event: SQSEvent, context?: Context): Promise<SQSBatchResponse> => productionHandler()(event, context);
