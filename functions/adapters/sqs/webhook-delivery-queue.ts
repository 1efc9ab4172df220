import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { DeliveryMessage } from '../../core/webhooks/delivery';
import type { DeliveryQueue } from '../../core/webhooks/ports';
import { MAX_SQS_DELAY_SECONDS } from './payment-queue';

/**
 * The webhook delivery queue and its dead-letter queue. A given-up delivery is sent to the DLQ by the
 * delivery function itself (with the reason), not by maxReceiveCount: failed attempts are re-sends, so
 * the same message is never received twice on purpose.
 */
export class SqsDeliveryQueue implements DeliveryQueue {
  constructor(
    private readonly sqs: SQSClient,
    private readonly urls: { readonly queue: string; readonly deadLetter: string },
  ) {}

  async send(message: DeliveryMessage, delaySeconds = 0): Promise<void> {
    await this.sqs.send(
      new SendMessageCommand({
        QueueUrl: this.urls.queue,
        MessageBody: JSON.stringify(message),
        DelaySeconds: Math.max(0, Math.min(MAX_SQS_DELAY_SECONDS, Math.ceil(delaySeconds))),
      }),
    );
  }

  async deadLetter(message: DeliveryMessage, reason: string): Promise<void> {
    await this.sqs.send(new SendMessageCommand({ QueueUrl: this.urls.deadLetter, MessageBody: JSON.stringify({ ...message, reason }) }));
  }
}
