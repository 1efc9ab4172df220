/**
 * `npm run bench:provider-budget`: how well three ways of sharing one provider rate limit across a fleet
 * of workers keep to it, against DynamoDB Local. Each worker is its own limiter instance with its own
 * DynamoDB client (as each Lambda instance is), and loops: take a slot, "call the provider" (a sleep of
 * a random latency), repeat, for --seconds. Printed per strategy: achieved calls/s against the budget,
 * the most calls started in any 1 s and any 100 ms window (the provider counts per second), the wait for
 * a slot (p50/p99), refusals, and DynamoDB writes per call.
 *
 *   tickets      the service's budget: numbered tickets per second, each an evenly spaced slot
 *                (functions/adapters/dynamo/provider-rate-budget.ts)
 *   window       a counter per wall-clock second, conditional ADD below the budget; a refused worker
 *                sleeps to the next second
 *   concurrency  no shared state: each worker waits out (workers / budget) seconds per call, the rate a
 *                fleet of that size would have if every call took exactly the expected latency
 */
import { randomUUID } from 'node:crypto';
import { ConditionalCheckFailedException, CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { startDynamoDbLocal } from '@idempotent-payments/local-stack';
import { DynamoRateBudget } from '../functions/adapters/dynamo/provider-rate-budget';
import { BudgetExhaustedError } from '../functions/core/ports/rate-budget';
import { cliOrExit, reporter } from './cli-args';

const args = cliOrExit('bench:provider-budget', {
  budget: { type: 'number', default: 100, min: 1, doc: 'provider operations a second, the whole fleet' },
  workers: { type: 'number', default: 50, min: 1, max: 2000, integer: true, doc: 'concurrent workers (each its own limiter and client)' },
  seconds: { type: 'number', default: 10, min: 1, max: 300, doc: 'how long each strategy runs' },
  'latency-min-ms': { type: 'number', default: 50, min: 0, doc: 'shortest simulated provider call' },
  'latency-max-ms': { type: 'number', default: 400, min: 0, doc: 'longest simulated provider call' },
  'max-wait-ms': { type: 'number', default: 5000, min: 0, doc: 'longest wait for a slot (tickets)' },
  strategies: { type: 'string', default: 'tickets,window,concurrency', doc: 'comma-separated: tickets, window, concurrency' },
});
const out = reporter(args.json);
const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));
const latency = () => args['latency-min-ms'] + Math.random() * (args['latency-max-ms'] - args['latency-min-ms']);

interface Result {
  strategy: string;
  workers: number;
  budget: number;
  calls: number;
  achievedPerSecond: number;
  maxIn1s: number;
  maxIn100ms: number;
  /** tickets: the most slots handed out for any 1 s (starts add the host's timer jitter on top). */
  slotsMaxIn1s?: number;
  waitP50Ms: number;
  waitP99Ms: number;
  refused: number;
  writesPerCall: number;
  /** DynamoDB round trip of one conditional write. */
  writeP50Ms: number;
  writeP99Ms: number;
}

const quantile = (sorted: number[], q: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : 0);
/** The most call starts inside any window of `ms` (two pointers over the sorted starts). */
function maxInWindow(starts: number[], ms: number): number {
  let best = 0;
  for (let i = 0, j = 0; j < starts.length; j++) {
    while (starts[j]! - starts[i]! >= ms) i++;
    best = Math.max(best, j - i + 1);
  }
  return best;
}

async function main() {
  const ddb = await startDynamoDbLocal({});
  const table = `budget-bench-${randomUUID().slice(0, 8)}`;
  try {
    const admin = new DynamoDBClient({ endpoint: ddb.endpoint, region: 'us-east-1', credentials });
    await admin.send(
      new CreateTableCommand({ TableName: table, BillingMode: 'PAY_PER_REQUEST', KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }], AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }] }),
    );
    admin.destroy();
    const results: Result[] = [];
    for (const strategy of args.strategies.split(',').map((s) => s.trim())) {
      if (!['tickets', 'window', 'concurrency'].includes(strategy)) throw new Error(`unknown strategy ${strategy}`);
      out.progress(`${strategy}: ${args.workers} workers, budget ${args.budget}/s, ${args.seconds} s`);
      results.push(await run(strategy, ddb.endpoint, table));
    }
    out.line('');
    out.line(`budget ${args.budget} ops/s, ${args.workers} workers, calls of ${args['latency-min-ms']}-${args['latency-max-ms']} ms, ${args.seconds} s each`);
    out.line('| strategy | calls/s achieved | of budget | most started in any 1 s (slots granted) | most in any 100 ms | wait p50 | wait p99 | refused | DynamoDB writes per call | write p50 / p99 |');
    out.line('|---|---|---|---|---|---|---|---|---|---|');
    for (const r of results) {
      out.line(
        `| ${r.strategy} | ${r.achievedPerSecond.toFixed(1)} | ${((100 * r.achievedPerSecond) / r.budget).toFixed(0)}% | ${r.maxIn1s}${r.slotsMaxIn1s !== undefined ? ` (${r.slotsMaxIn1s})` : ''} | ${r.maxIn100ms} | ` +
          `${r.waitP50Ms.toFixed(0)} ms | ${r.waitP99Ms.toFixed(0)} ms | ${r.refused} | ${r.writesPerCall.toFixed(2)} | ${r.writeP50Ms.toFixed(0)} / ${r.writeP99Ms.toFixed(0)} ms |`,
      );
    }
    out.report({ budget: args.budget, workers: args.workers, seconds: args.seconds, results });
  } finally {
    await ddb.stop();
  }
}

async function run(strategy: string, endpoint: string, table: string): Promise<Result> {
  const starts: number[] = [];
  const waits: number[] = [];
  let refused = 0;
  let writes = 0;
  const roundTrips: number[] = [];
  /** Slot times the limiter handed out (tickets): what it promises, before the host's timer jitter. */
  const slots: number[] = [];
  const name = `${strategy}-${randomUUID().slice(0, 8)}`;
  const t0 = Date.now();
  const end = t0 + args.seconds * 1000;
  const worker = async () => {
    const raw = new DynamoDBClient({ endpoint, region: 'us-east-1', credentials, maxAttempts: 1 });
    raw.middlewareStack.add(
      (next) => async (a) => {
        writes += 1;
        const t = performance.now();
        try {
          return await next(a);
        } finally {
          roundTrips.push(performance.now() - t);
        }
      },
      { step: 'initialize' },
    );
    const db = DynamoDBDocumentClient.from(raw);
    const tickets = new DynamoRateBudget(db, { table, name, opsPerSecond: args.budget, maxWaitMs: args['max-wait-ms'], onSlot: (slot) => void slots.push(slot) });
    // Stagger the start, as instances of a fleet do.
    await sleep(Math.random() * 200);
    while (Date.now() < end) {
      const asked = Date.now();
      try {
        if (strategy === 'tickets') await tickets.take();
        else if (strategy === 'window') await takeWindow(db, table, name);
        else await sleep((args.workers / args.budget) * 1000 - (args['latency-min-ms'] + args['latency-max-ms']) / 2);
      } catch (err) {
        if (!(err instanceof BudgetExhaustedError)) throw err;
        refused++;
        await sleep(err.retryAfterMs);
        continue;
      }
      const started = Date.now();
      if (started >= end) break;
      waits.push(started - asked);
      starts.push(started);
      await sleep(latency());
    }
    raw.destroy();
  };
  await Promise.all(Array.from({ length: args.workers }, worker));
  starts.sort((a, b) => a - b);
  waits.sort((a, b) => a - b);
  roundTrips.sort((a, b) => a - b);
  slots.sort((a, b) => a - b);
  const seconds = (end - t0) / 1000;
  return {
    strategy,
    workers: args.workers,
    budget: args.budget,
    calls: starts.length,
    achievedPerSecond: starts.length / seconds,
    maxIn1s: maxInWindow(starts, 1000),
    maxIn100ms: maxInWindow(starts, 100),
    slotsMaxIn1s: strategy === 'tickets' ? maxInWindow(slots, 1000) : undefined,
    waitP50Ms: quantile(waits, 0.5),
    waitP99Ms: quantile(waits, 0.99),
    refused,
    writesPerCall: strategy === 'concurrency' ? 0 : writes / Math.max(1, starts.length),
    writeP50Ms: quantile(roundTrips, 0.5),
    writeP99Ms: quantile(roundTrips, 0.99),
  };
}

/** Fixed one-second windows: a counter per second, raised only below the budget; full → the next second. */
async function takeWindow(db: DynamoDBDocumentClient, table: string, name: string): Promise<void> {
  for (;;) {
    const second = Math.floor(Date.now() / 1000);
    try {
      await db.send(
        new UpdateCommand({
          TableName: table,
          Key: { pk: `${name}#${second}` },
          UpdateExpression: 'ADD n :one',
          ConditionExpression: 'attribute_not_exists(n) OR n < :budget',
          ExpressionAttributeValues: { ':one': 1, ':budget': args.budget },
        }),
      );
      return;
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
      await sleep((second + 1) * 1000 - Date.now() + Math.random() * 50);
    }
  }
}

await main();
