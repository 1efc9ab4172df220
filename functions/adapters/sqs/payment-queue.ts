import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { PaymentMessage, PaymentQueue, RefundMessage } from '../../core/ports';

/** SQS caps DelaySeconds at 15 minutes; longer waits are chained with notBefore. */
export const MAX_SQS_DELAY_SECONDS = 900;

export type { PaymentMessage, PaymentQueue } from '../../core/ports';

export class SqsPaymentQueue implements PaymentQueue {
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async send(message: PaymentMessage | RefundMessage, delaySeconds = 0): Promise<void> {
    await this.sqs.send(
      new SendMessageCommand({
        QueueUrl: this.queueUrl,
        MessageBody: JSON.stringify(message),
        DelaySeconds: Math.max(0, Math.min(MAX_SQS_DELAY_SECONDS, Math.ceil(delaySeconds))),
      }),
    );
  }
}
