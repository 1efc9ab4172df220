/**
 * Reconciler at scale: a Payments table with many payments of which a few are stuck, one run.
 * Shows that the run reads only the open, due items (sparse index), not the table.
 *
 *   npx tsx scripts/bench-reconciler.ts [--total 100000] [--stuck 1000]
 */
import { randomUUID } from 'node:crypto';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { BatchWriteCommand, DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { openShardFor, PaymentRepository } from '../functions/adapters/dynamo/payment-repository';
import { SqsPaymentQueue } from '../functions/adapters/sqs/payment-queue';
import type { Payment } from '../functions/core/payment';
import { silentLogger } from '../functions/core/ports';
import { Reconciler } from '../functions/core/reconciler';
import { createLocalResources, functionEnvironment, loadSynthesizedStack, startDynamoDbLocal, startSqsEmulator } from '@idempotent-payments/local-stack';
import { cliOrExit, reporter } from './cli-args';

const args = cliOrExit('bench:reconciler', {
  total: { type: 'number', default: 100_000, min: 1, integer: true, doc: 'payments in the table' },
  stuck: { type: 'number', default: 1_000, min: 1, integer: true, doc: 'of them stuck pending (at most --total)' },
});
if (args.stuck > args.total) {
  process.stderr.write(`error: --stuck (${args.stuck}) must not exceed --total (${args.total})\n`);
  process.exit(2);
}
const TOTAL = args.total;
const STUCK = args.stuck;
const out = reporter(args.json);
const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };

function payment(i: number, stuck: boolean, now: number): Payment {
  const id = `pay_bench_${i}_${randomUUID().slice(0, 8)}`;
  const created = new Date(now - 30 * 60_000).toISOString();
  return {
    id,
    tenantId: 'bench',
    idempotencyKey: `bench-${i}`,
    generation: 0,
    requestHash: 'x'.repeat(64),
    amountMinor: 1000 + i,
    currency: 'USD',
    paymentMethod: { type: 'card', token: 'tok_success' },
    metadata: { orderId: String(i) },
    status: stuck ? 'pending' : 'success',
    version: stuck ? 1 : 3,
    attempt: stuck ? 0 : 1,
    retryCount: 0,
    maxRetries: 3,
    createdAt: created,
    updatedAt: created,
    lastChange: { action: stuck ? 'created' : 'succeeded', actor: 'bench' },
    ...(stuck ? { openShard: openShardFor(id), dueAt: now - 20 * 60_000 } : { processedAt: created, providerChargeId: `ch_${i}` }),
  };
}

async function main() {
  const [ddb, sqsEmu] = await Promise.all([startDynamoDbLocal({ heapMb: 2048 }), startSqsEmulator()]);
  try {
    const dynamodb = new DynamoDBClient({ endpoint: ddb.endpoint, region: 'us-east-1', credentials });
    const doc = DynamoDBDocumentClient.from(dynamodb);
    const sqs = new SQSClient({ endpoint: sqsEmu.endpoint, region: 'us-east-1', credentials, useQueueUrlAsEndpoint: false });
    const { template } = loadSynthesizedStack();
    const local = await createLocalResources(template, { dynamodb, sqs });
    const fnId = Object.keys(template.Resources).find((k) => k.startsWith('ReconcilerFunction') && template.Resources[k]!.Type === 'AWS::Lambda::Function')!;
    const env = functionEnvironment(template, fnId, local);

    const now = Date.now();
    const stuckEvery = Math.floor(TOTAL / STUCK);
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < TOTAL) {
          const start = next;
          next += 25;
          if (start > 0 && start % 10_000 === 0) out.progress(`loaded ${start} of ${TOTAL} payments`);
          const items = Array.from({ length: Math.min(25, TOTAL - start) }, (_, j) => payment(start + j, (start + j) % stuckEvery === 0, now));
          let req: Record<string, any> | undefined = { [env.PAYMENTS_TABLE!]: items.map((Item) => ({ PutRequest: { Item } })) };
          while (req && Object.keys(req).length) {
            const res: { UnprocessedItems?: Record<string, any> } = await doc.send(new BatchWriteCommand({ RequestItems: req }));
            req = res.UnprocessedItems;
          }
        }
      }),
    );
    out.progress(`loaded ${TOTAL} payments (${STUCK} stuck pending) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    const repo = new PaymentRepository(doc, { payments: env.PAYMENTS_TABLE!, idempotency: env.IDEMPOTENCY_TABLE!, openPaymentsIndex: env.OPEN_PAYMENTS_INDEX! });
    const reconciler = new Reconciler({
      store: repo,
      queue: new SqsPaymentQueue(sqs, env.PAYMENTS_QUEUE_URL!),
      processor: {
        process: async () => ({ kind: 'ignored', reason: 'leased' }),
        expire: async () => ({ kind: 'ignored', reason: 'leased' }),
      },
      logger: silentLogger,
      config: { stuckAfterSeconds: 120, openDeadlineSeconds: 86_400 },
    });
    const heapBefore = process.memoryUsage().heapUsed;
    const r0 = performance.now();
    out.progress('reconciler run started');
    const result = await reconciler.run();
    const seconds = (performance.now() - r0) / 1000;
    const { Attributes } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: env.PAYMENTS_QUEUE_URL!, AttributeNames: ['ApproximateNumberOfMessages'] }));
    const heapGrowthMb = (process.memoryUsage().heapUsed - heapBefore) / 1e6;
    out.report({ total: TOTAL, stuck: STUCK, counts: result.counts, itemsRead: result.itemsRead, runSeconds: seconds, requeued: Number(Attributes?.ApproximateNumberOfMessages), heapGrowthMb });
    out.line(`reconciler run: ${JSON.stringify(result.counts)}`);
    out.line(`items read ${result.itemsRead} of ${TOTAL} in the table (${((result.itemsRead / TOTAL) * 100).toFixed(2)}%), ${seconds.toFixed(2)} s, ${(STUCK / seconds).toFixed(0)} payments resolved/s`);
    out.line(`messages re-queued: ${Attributes?.ApproximateNumberOfMessages}; heap growth during the run ${heapGrowthMb.toFixed(1)} MB`);
    dynamodb.destroy();
    sqs.destroy();
  } finally {
    await Promise.all([ddb.stop(), sqsEmu.stop()]);
  }
}

await main();
