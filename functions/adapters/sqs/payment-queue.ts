import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';

/** SQS caps DelaySeconds at 15 minutes; longer waits are chained with notBefore. */
export const MAX_SQS_DELAY_SECONDS = 900;

export interface PaymentMessage {
  readonly paymentId: string;
  /** Why the message was sent: created, retry, requeue, operator_retry, deferred. */
  readonly reason: string;
  /** Epoch ms before which the worker must not attempt the payment (re-sent with more delay). */
  readonly notBefore?: number;
}

export interface PaymentQueue {
  send(message: PaymentMessage, delaySeconds?: number): Promise<void>;
}

export class SqsPaymentQueue implements PaymentQueue {
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async send(message: PaymentMessage, delaySeconds = 0): Promise<void> {
    await this.sqs.send(
      new SendMessageCommand({
        QueueUrl: this.queueUrl,
        MessageBody: JSON.stringify(message),
        DelaySeconds: Math.max(0, Math.min(MAX_SQS_DELAY_SECONDS, Math.ceil(delaySeconds))),
      }),
    );
  }
}
