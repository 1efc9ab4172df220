/** Wires the production adapters from the environment, once per function instance. */
import { documentClient, sqsClient } from '../adapters/aws-clients';
import { PaymentRepository } from '../adapters/dynamo/payment-repository';
import { SqsPaymentQueue } from '../adapters/sqs/payment-queue';
import { PaymentsService } from '../core/payments-service';
import { loadConfig, type PaymentsConfig } from './env';

let cached: { config: PaymentsConfig; repository: PaymentRepository; queue: SqsPaymentQueue; payments: PaymentsService } | undefined;

export function container() {
  if (cached) return cached;
  const config = loadConfig();
  const repository = new PaymentRepository(documentClient(), {
    payments: config.paymentsTable,
    idempotency: config.idempotencyTable,
    openPaymentsIndex: config.openPaymentsIndex,
  });
  const queue = new SqsPaymentQueue(sqsClient(), config.queueUrl);
  const payments = new PaymentsService({
    store: repository,
    queue,
    idempotencyTtlSeconds: config.idempotencyTtlSeconds,
    maxRetries: config.maxRetries,
    stuckAfterSeconds: config.stuckAfterSeconds,
  });
  cached = { config, repository, queue, payments };
  return cached;
}
