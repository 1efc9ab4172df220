/**
 * The webhook delivery queue's consumer: one attempt per message (core/webhooks/delivery.ts). Every
 * outcome the core returns ends the message: a retry is a new, delayed message, and a given-up delivery
 * was sent to the dead-letter queue by the core. Only an error the core could not turn into an outcome
 * (its store or queue failing) fails the record, so SQS shows it again after the visibility timeout,
 * and after the queue's maxReceiveCount it lands in the same dead-letter queue (alarmed).
 */
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { noMetrics, type Logger, type Metrics } from '../core/ports';
import { deliverOnce, type DeliveryDeps, type DeliveryMessage } from '../core/webhooks/delivery';
import { instrumented } from '../shared/instrument';
import { serviceLogger } from '../shared/logger';
import { serviceMetrics } from '../shared/metrics';
import { wiring } from '../wiring';

function parseMessage(body: string): DeliveryMessage | undefined {
  try {
    const m = JSON.parse(body) as Partial<DeliveryMessage>;
    const ok = [m.deliveryId, m.eventId, m.tenantId, m.endpointId].every((v) => typeof v === 'string' && v !== '') && Number.isSafeInteger(m.attempt);
    return ok ? (m as DeliveryMessage) : undefined;
  } catch {
    return undefined;
  }
}

export function createDeliveryHandler(deps: { delivery: () => DeliveryDeps; logger: Logger; metrics?: Metrics }) {
  const metrics = deps.metrics ?? noMetrics;
  const handleRecord = async (record: SQSRecord): Promise<void> => {
    const m = parseMessage(record.body);
    if (!m) {
      // Nothing to retry: a message the service never writes. Logged (ids only), then dropped.
      deps.logger.error('malformed webhook delivery message dropped', { messageId: record.messageId });
      return;
    }
    const outcome = await deliverOnce(deps.delivery(), m);
    metrics.count('WebhookDeliveries', 1, { outcome: outcome.kind });
    const attrs = { deliveryId: m.deliveryId, eventId: m.eventId, endpointId: m.endpointId, attempt: m.attempt, outcome: outcome.kind };
    if (outcome.kind === 'given_up') deps.logger.warn('webhook delivery given up to the dead-letter queue', { ...attrs, reason: outcome.reason });
    else if (outcome.kind === 'retry_scheduled') deps.logger.info('webhook attempt failed; retry scheduled', { ...attrs, reason: outcome.reason, notBefore: outcome.notBefore });
    else deps.logger.debug('webhook delivery step', attrs);
  };
  return async (event: SQSEvent, context?: Context): Promise<SQSBatchResponse> =>
    (await processPartialResponse(event, handleRecord, new BatchProcessor(EventType.SQS), {
      ...(context ? { context } : {}),
      throwOnFullBatchFailure: false,
    })) as SQSBatchResponse;
}

let built: ReturnType<typeof createDeliveryHandler> | undefined;
export const handler = instrumented(async (event: SQSEvent, context?: Context) => {
  built ??= createDeliveryHandler({ delivery: () => wiring().webhookDelivery(), logger: serviceLogger, metrics: serviceMetrics });
  return built(event, context);
});
