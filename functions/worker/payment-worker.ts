/**
 * SQS worker: one payment attempt per message, with partial batch responses (the event source has
 * ReportBatchItemFailures), so one bad record does not redeliver the whole batch. A message naming a
 * refund (`refundId`) moves that refund on instead (RefundProcessor): the same queue carries both.
 *
 * A record is reported as failed, and so redelivered after the visibility timeout and moved to the DLQ
 * after maxReceiveCount receives, when:
 *   - its body is not a payment message (not JSON, no paymentId): a poison message, logged as such;
 *   - processing threw: DynamoDB or SQS unavailable, the provider could not say whether an earlier
 *     intent stands (OutcomeUnresolvedError), or the injected crash-after-charge fault.
 * Everything the processor decided (settled, dropped as duplicate/stale, rescheduled, deferred) is a
 * success: the message has done its job.
 */
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import type { Logger, RefundMessage } from '../core/ports';
import type { ProcessResult, WorkerMessage } from '../core/processing/context';
import type { RefundStepResult } from '../core/refund-processor';
import { instrumented } from '../shared/instrument';
import { wiring } from '../wiring';

export interface MessageProcessor {
  process(message: WorkerMessage): Promise<ProcessResult>;
}

export interface RefundMover {
  process(refundId: string): Promise<RefundStepResult>;
}

export interface WorkerDeps {
  readonly processor: MessageProcessor;
  /** Moves refund messages on; without it a refund message is a poison message. */
  readonly refunds?: RefundMover;
  readonly logger: Logger;
}

export type WorkerHandler = (event: SQSEvent, context?: Context) => Promise<SQSBatchResponse>;

/** A body that can never be processed: retried until maxReceiveCount, then kept in the DLQ. */
export class PoisonMessageError extends Error {
  override readonly name = 'PoisonMessageError';
}

/** Parses and checks a message body; throws PoisonMessageError when it is neither a payment nor a refund message. */
export function parseWorkerMessage(body: string): WorkerMessage | RefundMessage {
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    throw new PoisonMessageError('message body is not JSON');
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new PoisonMessageError('message body is not a JSON object');
  const o = v as Record<string, unknown>;
  if (o.refundId !== undefined && o.paymentId === undefined) {
    if (typeof o.refundId !== 'string' || o.refundId.trim() === '' || o.refundId.length > 256) throw new PoisonMessageError('message has no valid refundId');
    return { refundId: o.refundId, reason: typeof o.reason === 'string' ? o.reason : 'unknown' };
  }
  if (typeof o.paymentId !== 'string' || o.paymentId.trim() === '' || o.paymentId.length > 256) {
    throw new PoisonMessageError('message has no valid paymentId');
  }
  if (o.notBefore !== undefined && (typeof o.notBefore !== 'number' || !Number.isFinite(o.notBefore))) {
    throw new PoisonMessageError('message notBefore is not a number');
  }
  if (o.forAttempt !== undefined && (typeof o.forAttempt !== 'number' || !Number.isInteger(o.forAttempt) || o.forAttempt < 1)) {
    throw new PoisonMessageError('message forAttempt is not a positive integer');
  }
  if (o.resolveOnly !== undefined && typeof o.resolveOnly !== 'boolean') throw new PoisonMessageError('message resolveOnly is not a boolean');
  return {
    paymentId: o.paymentId,
    reason: typeof o.reason === 'string' ? o.reason : 'unknown',
    ...(o.notBefore !== undefined ? { notBefore: o.notBefore as number } : {}),
    ...(o.forAttempt !== undefined ? { forAttempt: o.forAttempt as number } : {}),
    ...(o.resolveOnly === true ? { resolveOnly: true } : {}),
  };
}

export function createWorkerHandler(deps: WorkerDeps): WorkerHandler {
  const log = deps.logger;

  const recordHandler = async (record: SQSRecord): Promise<ProcessResult | RefundStepResult> => {
    const receiveCount = Number(record.attributes?.ApproximateReceiveCount ?? '1');
    let message: WorkerMessage | RefundMessage;
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
    if ('refundId' in message) {
      if (!deps.refunds) throw new PoisonMessageError('refund message on a worker without refunds');
      const result = await deps.refunds.process(message.refundId);
      log.debug('refund message processed', { messageId: record.messageId, refundId: message.refundId, result: result.kind });
      return result;
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

/** The Lambda entry point, wired with the production adapters on first use. */
export const handler = instrumented(async (event: SQSEvent, context?: Context): Promise<SQSBatchResponse> => (await wiring().workerHandler())(event, context));
