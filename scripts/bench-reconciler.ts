/**
 * Reconciler at scale: a Payments table with many payments of which some are stuck, and a provider
 * whose comparison window holds many captured intents (one per successful payment, up to --intents).
 * Runs the reconciler the way the schedule does: each run has a time budget (--budget-seconds, the
 * Lambda's remaining time) and hands its cursor to the next run, until a run finishes. Prints items
 * and intents read and the time of every run: the open-payments phase reads only the open, due items
 * (sparse index), the comparison reads payments in BatchGetItem pages of 100.
 *
 *   npx tsx scripts/bench-reconciler.ts [--total 100000] [--stuck 1000] [--intents 0] [--budget-seconds 0 (no limit)]
 */
import { randomUUID } from 'node:crypto';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { BatchWriteCommand, DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { openShardFor, PaymentRepository } from '../functions/adapters/dynamo/payment-repository';
import { RefundRepository } from '../functions/adapters/dynamo/refund-repository';
import { SqsPaymentQueue } from '../functions/adapters/sqs/payment-queue';
import type { Payment } from '../functions/core/payment';
import { silentLogger } from '../functions/core/ports';
import type { IntentPage, ProviderIntent } from '../functions/core/ports/payment-provider';
import { Reconciler, type ReconcilerCursor } from '../functions/core/reconciler';
import { createLocalResources, functionEnvironment, loadSynthesizedStack, startDynamoDbLocal, startSqsEmulator } from '@idempotent-payments/local-stack';
import { cliOrExit } from './cli-args';

const args = cliOrExit('bench:reconciler', {
  total: { type: 'number', default: 100_000, min: 1, integer: true, doc: 'payments in the table' },
  stuck: { type: 'number', default: 1_000, min: 1, integer: true, doc: 'of them stuck pending (at most --total)' },
  intents: { type: 'number', default: 0, min: 0, integer: true, doc: 'captured provider intents in the comparison window' },
  'budget-seconds': { type: 'number', default: 0, min: 0, doc: 'time budget of one run (0: none); runs resume from the saved cursor' },
});
if (args.stuck > args.total) {
  process.stderr.write(`error: --stuck (${args.stuck}) must not exceed --total (${args.total})\n`);
  process.exit(2);
}
const TOTAL = args.total;
const STUCK = args.stuck;
const INTENTS = args.intents;
const BUDGET_MS = args['budget-seconds'] * 1000;
/** Human lines: stdout, or stderr when --json owns stdout. */
const say = (line: string) => (args.json ? process.stderr : process.stdout).write(`${line}\n`);

/** The provider's listing of a window: captured intents in creation order, paged by the last id. */
function providerOf(intents: ProviderIntent[]) {
  let listCalls = 0;
  return {
    calls: () => listCalls,
    async listIntents(q: { from: Date; to: Date; startingAfter?: string; limit?: number }): Promise<IntentPage> {
      listCalls++;
      const limit = q.limit ?? 100;
      let i = q.startingAfter ? intents.findIndex((x) => x.id === q.startingAfter) + 1 : 0;
      const out: ProviderIntent[] = [];
      for (; i < intents.length && out.length < limit; i++) {
        const c = intents[i]!.created * 1000;
        if (c >= q.from.getTime() && c <= q.to.getTime()) out.push(intents[i]!);
      }
      return { intents: out, ...(i < intents.length && out.length === limit ? { nextCursor: out[out.length - 1]!.id } : {}) };
    },
    async refund(): Promise<never> {
      throw new Error('no capture in this bench is unaccounted for');
    },
    async retrieveRefund(): Promise<never> {
      throw new Error('no refund in this bench');
    },
    async listRefunds(): Promise<never> {
      throw new Error('no refund in this bench');
    },
  };
}
/** The tag this bench's intents carry and its reconciler owns. */
const TAG = { service: 'idempotent-payments', stage: 'bench' };
const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
const RUN = randomUUID().slice(0, 8);

function payment(i: number, stuck: boolean, now: number): Payment {
  const id = `pay_bench_${RUN}_${i}`;
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
          const items = Array.from({ length: Math.min(25, TOTAL - start) }, (_, j) => payment(start + j, (start + j) % stuckEvery === 0, now));
          let req: Record<string, any> | undefined = { [env.PAYMENTS_TABLE!]: items.map((Item) => ({ PutRequest: { Item } })) };
          while (req && Object.keys(req).length) {
            const res: { UnprocessedItems?: Record<string, any> } = await doc.send(new BatchWriteCommand({ RequestItems: req }));
            req = res.UnprocessedItems;
          }
        }
      }),
    );
    say(`loaded ${TOTAL} payments (${STUCK} stuck pending) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    // The provider's view: one captured intent per successful payment, the first --intents of them.
    const intents: ProviderIntent[] = [];
    for (let i = 0; i < TOTAL && intents.length < INTENTS; i++) {
      if (i % stuckEvery === 0) continue;
      intents.push({
        id: `pi_${String(i).padStart(8, '0')}`,
        paymentId: `pay_bench_${RUN}_${i}`,
        status: 'succeeded',
        amountMinor: 1000 + i,
        currency: 'USD',
        amountReceived: 1000 + i,
        created: Math.floor((now - 30 * 60_000) / 1000),
        ...TAG,
      });
    }

    const repo = new PaymentRepository(doc, { payments: env.PAYMENTS_TABLE!, idempotency: env.IDEMPOTENCY_TABLE!, openPaymentsIndex: env.OPEN_PAYMENTS_INDEX! });
    const provider = providerOf(intents);
    let runStarted = 0;
    const reconciler = new Reconciler({
      store: repo,
      ...(INTENTS > 0 ? { provider, refunds: new RefundRepository(doc, { refunds: env.REFUNDS_TABLE!, openRefundsIndex: env.OPEN_REFUNDS_INDEX! }) } : {}),
      hasTime: () => BUDGET_MS <= 0 || performance.now() - runStarted < BUDGET_MS,
      queue: new SqsPaymentQueue(sqs, env.PAYMENTS_QUEUE_URL!),
      processor: {
        process: async () => ({ kind: 'ignored', reason: 'leased' }),
        expire: async () => ({ kind: 'ignored', reason: 'leased' }),
      },
      logger: silentLogger,
      // A first run compares the last hour; every later run starts from the mark the previous one saved.
      config: { stuckAfterSeconds: 120, openDeadlineSeconds: 86_400, tag: TAG, providerWindowMinutes: 60 },
    });
    const heapBefore = process.memoryUsage().heapUsed;
    let cursor: ReconcilerCursor = { openPartition: 0 };
    const totals = { itemsRead: 0, intentsRead: 0, seconds: 0, counts: {} as Record<string, number> };
    for (let run = 1; run <= 100; run++) {
      runStarted = performance.now();
      const result = await reconciler.run(cursor);
      const seconds = (performance.now() - runStarted) / 1000;
      totals.itemsRead += result.itemsRead;
      totals.intentsRead += result.intentsRead;
      totals.seconds += seconds;
      for (const [k, v] of Object.entries(result.counts)) totals.counts[k] = (totals.counts[k] ?? 0) + v;
      say(
        `run ${run}: ${seconds.toFixed(2)} s, open-index items read ${result.itemsRead}, provider intents read ${result.intentsRead}, ` +
          `${result.truncated ? `stopped for time, resumes at partition ${result.cursor.openPartition}${result.cursor.captures ? ' + provider window' : ''}` : 'finished'} ${JSON.stringify(result.counts)}`,
      );
      cursor = result.cursor;
      // Done when a run finishes, or once every stuck payment was handled and the whole provider
      // window compared once (later runs compare only what is newer than the saved mark).
      if (!result.truncated) break;
      if ((totals.counts.requeued_pending ?? 0) >= STUCK && totals.intentsRead >= intents.length) break;
    }
    const { Attributes } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: env.PAYMENTS_QUEUE_URL!, AttributeNames: ['ApproximateNumberOfMessages'] }));
    say(`all runs: ${JSON.stringify(totals.counts)}`);
    say(
      `items read ${totals.itemsRead} of ${TOTAL} in the table (${((totals.itemsRead / TOTAL) * 100).toFixed(2)}%), intents read ${totals.intentsRead} ` +
        `(${provider.calls()} list pages), ${totals.seconds.toFixed(2)} s in all, ${(STUCK / totals.seconds).toFixed(0)} stuck payments resolved/s`,
    );
    const heapGrowthMb = (process.memoryUsage().heapUsed - heapBefore) / 1e6;
    say(`messages re-queued: ${Attributes?.ApproximateNumberOfMessages}; heap growth ${heapGrowthMb.toFixed(1)} MB`);
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ total: TOTAL, stuck: STUCK, intents: INTENTS, ...totals, requeued: Number(Attributes?.ApproximateNumberOfMessages), heapGrowthMb })}\n`);
    }
    dynamodb.destroy();
    sqs.destroy();
  } finally {
    await Promise.all([ddb.stop(), sqsEmu.stop()]);
  }
}

await main();
