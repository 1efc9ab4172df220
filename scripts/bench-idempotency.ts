/**
 * Idempotency path benchmark, one run, one emulator (always a fresh one: started by this run, in
 * memory), seven contenders:
 *   ours        PaymentsService.create as deployed ('read-put'): one consistent GetItem of the key's
 *               first payment (which carries the key) answers a replay; a new key is one conditional
 *               PutItem of that payment, then SendMessage
 *   ours (put)  no read: the conditional PutItem creates, or fails and returns the stored payment
 *   ours (read, then tx)  the path before: the read, then one TransactWriteItems (key record + payment)
 *   ours (tx)   every call is the transaction (its replay is the transaction's failed conditions)
 *   powertools  makeIdempotent around an equivalent create (PutItem payment + SendMessage) into a table
 *               with no index (the baseline issue 20 was measured against)
 *   powertools, same table  the same, writing the payment as ours stores it (index attributes included)
 *               into a table declared like our Payments table (its two indexes): the same write work
 *   bare put    a single conditional PutItem of a small item into a table with no index (the floor for
 *               any durable create)
 * Prints p50/p99 latency of creates and replays, throughput under concurrency, and DynamoDB calls
 * per operation. Absolute numbers on a shared machine are noisy; compare the ratios.
 *
 *   npm run bench -- [--n 300] [--concurrency 16] [--throughput-n 1000]
 */
import { randomUUID } from 'node:crypto';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { IdempotencyConfig, makeIdempotent } from '@aws-lambda-powertools/idempotency';
import { DynamoDBPersistenceLayer } from '@aws-lambda-powertools/idempotency/dynamodb';
import { createdSortFor, openShardFor, PaymentRepository, tenantShardFor } from '../functions/adapters/dynamo/payment-repository';
import { SqsPaymentQueue } from '../functions/adapters/sqs/payment-queue';
import type { CreatePaymentRequest } from '../functions/core/create-request';
import { PaymentsService, type CreatePath } from '../functions/core/payments-service';
import { createLocalResources, functionEnvironment, loadSynthesizedStack, resourcesOfType, startDynamoDbLocal, startSqsEmulator, tableInput } from '@idempotent-payments/local-stack';
import { cliOrExit, reporter } from './cli-args';

const args = cliOrExit('bench', {
  n: { type: 'number', default: 300, min: 10, integer: true, doc: 'sequential creates (and replays) per contender' },
  concurrency: { type: 'number', default: 16, min: 1, max: 256, integer: true, doc: 'requests in flight in the throughput phase' },
  'throughput-n': { type: 'number', default: 1000, min: 1, integer: true, doc: 'creates per contender in the throughput phase' },
});
const N = args.n;
const CONCURRENCY = args.concurrency;
const THROUGHPUT_N = args['throughput-n'];
const out = reporter(args.json);
const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
const region = 'us-east-1';

function counted(endpoint: string) {
  const client = new DynamoDBClient({ endpoint, region, credentials });
  const calls = { n: 0 };
  client.middlewareStack.add(
    (next) => async (args) => {
      calls.n++;
      return next(args);
    },
    { step: 'initialize', name: 'countCalls' },
  );
  return { client, doc: DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } }), calls };
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

interface Contender {
  name: string;
  calls: { n: number };
  create(key: string): Promise<unknown>;
}

function requestFor(key: string): CreatePaymentRequest {
  return { idempotencyKey: key, amountMinor: 2550, currency: 'USD', paymentMethod: { type: 'card', token: 'tok_success' }, metadata: { orderId: key } };
}

async function timeEach(c: Contender, keys: string[]) {
  const before = c.calls.n;
  const times: number[] = [];
  for (const key of keys) {
    const t0 = performance.now();
    await c.create(key);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { p50: pct(times, 50), p99: pct(times, 99), callsPerOp: (c.calls.n - before) / keys.length };
}

async function throughput(c: Contender, keys: string[]) {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < keys.length) await c.create(keys[next++]!);
    }),
  );
  return keys.length / ((performance.now() - t0) / 1000);
}

async function main() {
  const [ddb, sqsEmu] = await Promise.all([startDynamoDbLocal(), startSqsEmulator()]);
  try {
    const admin = new DynamoDBClient({ endpoint: ddb.endpoint, region, credentials });
    const sqs = new SQSClient({ endpoint: sqsEmu.endpoint, region, credentials, useQueueUrlAsEndpoint: false });
    const { template } = loadSynthesizedStack();
    const local = await createLocalResources(template, { dynamodb: admin, sqs });
    const fnId = Object.keys(template.Resources).find((k) => k.startsWith('CreatePaymentFunction') && template.Resources[k]!.Type === 'AWS::Lambda::Function')!;
    const env = functionEnvironment(template, fnId, local);
    for (const name of ['bench-powertools-idempotency', 'bench-powertools-idempotency-2', 'bench-powertools-payments', 'bench-bare-payments']) {
      await admin.send(
        new CreateTableCommand({
          TableName: name,
          BillingMode: 'PAY_PER_REQUEST',
          KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
          AttributeDefinitions: [{ AttributeName: 'id', AttributeType: 'S' }],
        }),
      );
    }

    const oursContender = (name: string, createPath: CreatePath): Contender => {
      const db = counted(ddb.endpoint);
      const service = new PaymentsService({
        store: new PaymentRepository(db.doc, { payments: env.PAYMENTS_TABLE!, idempotency: env.IDEMPOTENCY_TABLE!, openPaymentsIndex: env.OPEN_PAYMENTS_INDEX! }),
        queue: new SqsPaymentQueue(sqs, env.PAYMENTS_QUEUE_URL!),
        idempotencyTtlSeconds: 86_400,
        maxRetries: 3,
        stuckAfterSeconds: 120,
        createPath,
      });
      return { name, calls: db.calls, create: (key) => service.create('bench', requestFor(key)) };
    };
    const ours = oursContender('ours (read, then put)', 'read-put');
    const oursPut = oursContender('ours (put only)', 'put');
    const oursRead = oursContender('ours (read, then tx)', 'read-tx');
    const oursTx = oursContender('ours (tx only)', 'transaction');

    // A table declared like our Payments table (key and both indexes), for the same-shape contender.
    const [paymentsId, paymentsRes] = resourcesOfType(template, 'AWS::DynamoDB::Table').find(([id]) => id.startsWith('PaymentsTable'))!;
    await admin.send(new CreateTableCommand({ ...tableInput(paymentsId, paymentsRes.Properties ?? {}), TableName: 'bench-powertools-payments-shaped' }));

    /** makeIdempotent around an equivalent create, writing `shape(payment)` into `table`. */
    const powertoolsContender = (name: string, table: string, idempotencyTable: string, shape: (p: Record<string, unknown>) => Record<string, unknown>): Contender => {
      const db = counted(ddb.endpoint);
      const config = new IdempotencyConfig({ eventKeyJmesPath: '[tenantId, idempotencyKey]', payloadValidationJmesPath: 'request', expiresAfterSeconds: 86_400 });
      const create = makeIdempotent(
        async (req: { tenantId: string; idempotencyKey: string; request: CreatePaymentRequest }) => {
          const now = new Date();
          const payment = shape({ id: randomUUID(), tenantId: req.tenantId, ...req.request, status: 'pending', version: 1, createdAt: now.toISOString(), updatedAt: now.toISOString() });
          await db.doc.send(new PutCommand({ TableName: table, Item: payment, ConditionExpression: 'attribute_not_exists(id)' }));
          await sqs.send(new SendMessageCommand({ QueueUrl: env.PAYMENTS_QUEUE_URL!, MessageBody: JSON.stringify({ paymentId: payment.id }) }));
          return payment;
        },
        { persistenceStore: new DynamoDBPersistenceLayer({ tableName: idempotencyTable, awsSdkV3Client: db.client }), config },
      );
      // Outside Lambda, Powertools needs a context to size its in-progress lease.
      config.registerLambdaContext({ getRemainingTimeInMillis: () => 30_000 } as never);
      return { name, calls: db.calls, create: (key) => create({ tenantId: 'bench', idempotencyKey: key, request: requestFor(key) }) };
    };
    const powertools = powertoolsContender('powertools makeIdempotent', 'bench-powertools-payments', 'bench-powertools-idempotency', (p) => p);
    const powertoolsShaped = powertoolsContender('powertools, same table', 'bench-powertools-payments-shaped', 'bench-powertools-idempotency-2', (p) => {
      const id = String(p.id);
      const createdAt = String(p.createdAt);
      return {
        ...p,
        versionAt: [Date.parse(createdAt)],
        dueAt: Date.parse(createdAt) + 120_000,
        openShard: openShardFor(id),
        tenantShard: tenantShardFor(String(p.tenantId), id),
        createdSort: createdSortFor({ id, createdAt }),
      };
    });

    const bareDb = counted(ddb.endpoint);
    const bare: Contender = {
      name: 'bare conditional PutItem',
      calls: bareDb.calls,
      create: (key) =>
        bareDb.doc
          .send(new PutCommand({ TableName: 'bench-bare-payments', Item: { id: key, ...requestFor(key) }, ConditionExpression: 'attribute_not_exists(id)' }))
          .catch((e: Error) => {
            if (e.name !== 'ConditionalCheckFailedException') throw e;
          }),
    };

    const contenders = [ours, oursPut, oursRead, oursTx, powertools, powertoolsShaped, bare];
    // Warm up JITs, connections and the emulator.
    for (const c of contenders) await timeEach(c, Array.from({ length: 50 }, () => `warm-${randomUUID()}`));

    const results = new Map<string, Record<string, number>>();
    const keys = new Map(contenders.map((c) => [c.name, Array.from({ length: N }, () => `k-${randomUUID()}`)]));
    // Alternate contenders in slices so machine noise hits all of them alike.
    const slices = 5;
    const acc = new Map(contenders.map((c) => [c.name, { create: [] as number[], replay: [] as number[], createCalls: 0, replayCalls: 0 }]));
    for (let s = 0; s < slices; s++) {
      out.progress(`latency slice ${s + 1} of ${slices}`);
      for (const c of contenders) {
        const slice = keys.get(c.name)!.slice((s * N) / slices, ((s + 1) * N) / slices);
        const a = acc.get(c.name)!;
        let before = c.calls.n;
        for (const k of slice) {
          const t0 = performance.now();
          await c.create(k);
          a.create.push(performance.now() - t0);
        }
        a.createCalls += c.calls.n - before;
        before = c.calls.n;
        for (const k of slice) {
          const t0 = performance.now();
          await c.create(k);
          a.replay.push(performance.now() - t0);
        }
        a.replayCalls += c.calls.n - before;
      }
    }
    for (const c of contenders) {
      const a = acc.get(c.name)!;
      a.create.sort((x, y) => x - y);
      a.replay.sort((x, y) => x - y);
      out.progress(`throughput: ${c.name}`);
      const tput = await throughput(c, Array.from({ length: THROUGHPUT_N }, () => `t-${randomUUID()}`));
      results.set(c.name, {
        createP50: pct(a.create, 50),
        createP99: pct(a.create, 99),
        replayP50: pct(a.replay, 50),
        replayP99: pct(a.replay, 99),
        createsPerSec: tput,
        callsPerCreate: a.createCalls / N,
        callsPerReplay: a.replayCalls / N,
      });
    }

    const f = (n: number) => n.toFixed(2).padStart(9);
    out.line(`\nIdempotency path on DynamoDB Local + fauxqs (n=${N} sequential, ${THROUGHPUT_N} at concurrency ${CONCURRENCY}; emulator fresh: started in memory by this run)\n`);
    out.line(`${'contender'.padEnd(28)}${'create p50'.padStart(11)}${'p99'.padStart(9)}${'replay p50'.padStart(11)}${'p99'.padStart(9)}${'creates/s'.padStart(11)}${'DDB/create'.padStart(11)}${'DDB/replay'.padStart(11)}`);
    for (const [name, r] of results) {
      out.line(
        `${name.padEnd(28)}${f(r.createP50!)}ms${f(r.createP99!).slice(2)}ms${f(r.replayP50!)}ms${f(r.replayP99!).slice(2)}ms${r.createsPerSec!.toFixed(0).padStart(11)}${r.callsPerCreate!.toFixed(2).padStart(11)}${r.callsPerReplay!.toFixed(2).padStart(11)}`,
      );
    }
    const o = results.get(ours.name)!;
    const p = results.get(powertools.name)!;
    const b = results.get(bare.name)!;
    const ratios = {
      replayP50VsBarePut: o.replayP50! / b.replayP50!,
      replayP50VsPowertools: o.replayP50! / p.replayP50!,
      createP50VsPowertools: o.createP50! / p.createP50!,
      createP50VsPowertoolsSameTable: o.createP50! / results.get(powertoolsShaped.name)!.createP50!,
      txOnlyReplayP50VsBarePut: results.get(oursTx.name)!.replayP50! / b.replayP50!,
      putOnlyReplayP50VsBarePut: results.get(oursPut.name)!.replayP50! / b.replayP50!,
      readTxReplayP50VsBarePut: results.get(oursRead.name)!.replayP50! / b.replayP50!,
      readTxCreateP50VsPowertools: results.get(oursRead.name)!.createP50! / p.createP50!,
    };
    out.report({ n: N, concurrency: CONCURRENCY, throughputN: THROUGHPUT_N, emulatorFresh: true, contenders: Object.fromEntries(results), ratios });
    out.line(
      `\nreplay p50: ours ${ratios.replayP50VsBarePut.toFixed(2)}x the bare conditional PutItem (put only: ${ratios.putOnlyReplayP50VsBarePut.toFixed(2)}x, read then tx: ${ratios.readTxReplayP50VsBarePut.toFixed(2)}x, tx only: ${ratios.txOnlyReplayP50VsBarePut.toFixed(2)}x)`,
    );
    out.line(
      `ours / powertools: create p50 ${(o.createP50! / p.createP50!).toFixed(2)}x, replay p50 ${(o.replayP50! / p.replayP50!).toFixed(2)}x, ` +
        `throughput ${(o.createsPerSec! / p.createsPerSec!).toFixed(2)}x, DynamoDB calls per create ${o.callsPerCreate} vs ${p.callsPerCreate}`,
    );
    out.line(`ours / powertools writing to a table shaped like ours: create p50 ${ratios.createP50VsPowertoolsSameTable.toFixed(2)}x`);
    out.line(`the path before (read, then tx) / powertools: create p50 ${ratios.readTxCreateP50VsPowertools.toFixed(2)}x`);
    admin.destroy();
    sqs.destroy();
  } finally {
    await Promise.all([ddb.stop(), sqsEmu.stop()]);
  }
}

await main();
