/**
 * Capacity per payment, measured: DynamoDB Local with every request asking for
 * ReturnConsumedCapacity=INDEXES, the real repositories, the real processor (provider faked), and the
 * audit stream handler fed the payment's versions as the stream would deliver them.
 *
 * docs/capacity.md holds the figures in one machine-readable line; this test fails when a measured
 * figure differs from it, so a change that costs more (or less) per payment updates the document too.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { marshall } from '@aws-sdk/util-dynamodb';
import type { DynamoDBRecord } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSynthesizedStack, resourcesOfType, type RunningEmulator, startDynamoDbLocal, tableInput } from '@idempotent-payments/local-stack';
import { AuditRepository } from '../../functions/adapters/dynamo/audit-repository';
import { PaymentRepository } from '../../functions/adapters/dynamo/payment-repository';
import { createAuditStreamHandler } from '../../functions/audit/audit-stream';
import { CircuitBreaker } from '../../functions/core/circuit-breaker';
import type { Payment } from '../../functions/core/payment';
import { PaymentsService } from '../../functions/core/payments-service';
import { silentLogger } from '../../functions/core/ports';
import { PaymentProcessor } from '../../functions/core/processing/payment-processor';
import { OPEN_PAYMENTS_INDEX } from '../../functions/shared/config-contract';
import { FakeIntentProvider } from '../helpers/fake-intent-provider';
import { FakeQueue } from '../helpers/fakes';
import { projectRoot } from '../helpers/project-root';

const region = 'us-east-1';
const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };

/** Capacity units by table or index name, split into reads and writes. */
class Meter {
  readonly read = new Map<string, number>();
  readonly write = new Map<string, number>();
  add(kind: 'read' | 'write', name: string, units: number | undefined): void {
    if (!units) return;
    const m = this[kind];
    m.set(name, (m.get(name) ?? 0) + units);
  }
  total(kind: 'read' | 'write'): number {
    return [...this[kind].values()].reduce((a, b) => a + b, 0);
  }
  reset(): void {
    this.read.clear();
    this.write.clear();
  }
}

const READS = new Set(['GetItemCommand', 'BatchGetItemCommand', 'QueryCommand', 'ScanCommand', 'TransactGetItemsCommand']);

/** A client whose every request reports its consumed capacity (table and each index) to the meter. */
function meteredClient(endpoint: string, meter: Meter, names: Map<string, string>): DynamoDBClient {
  const client = new DynamoDBClient({ endpoint, region, credentials });
  client.middlewareStack.add(
    (next, context) => async (args) => {
      (args.input as Record<string, unknown>).ReturnConsumedCapacity = 'INDEXES';
      const result = await next(args);
      const kind = READS.has(String(context.commandName)) ? 'read' : 'write';
      const consumed = (result.output as { ConsumedCapacity?: unknown }).ConsumedCapacity;
      for (const c of [consumed].flat() as Array<Record<string, any>>) {
        if (!c) continue;
        const table = names.get(c.TableName) ?? c.TableName;
        if (c.Table || c.GlobalSecondaryIndexes) {
          meter.add(kind, table, c.Table?.CapacityUnits);
          for (const [index, u] of Object.entries<Record<string, number>>(c.GlobalSecondaryIndexes ?? {})) meter.add(kind, `${table}/${index}`, u.CapacityUnits);
        } else meter.add(kind, table, c.CapacityUnits);
      }
      return result;
    },
    { step: 'initialize', name: 'consumedCapacityMeter' },
  );
  return client;
}

let emulator: RunningEmulator | undefined;
let client: DynamoDBClient | undefined;
const meter = new Meter();
let tables: { payments: string; idempotency: string; audit: string };

beforeAll(async () => {
  const { template } = loadSynthesizedStack();
  const endpoint = process.env.AWS_ENDPOINT_URL_DYNAMODB ?? (emulator = await startDynamoDbLocal()).endpoint;
  const suffix = randomUUID().slice(0, 8);
  const declared = resourcesOfType(template, 'AWS::DynamoDB::Table');
  const names = new Map<string, string>();
  const admin = new DynamoDBClient({ endpoint, region, credentials });
  try {
    const create = async (prefix: string, label: string) => {
      const [id, res] = declared.find(([id]) => id.startsWith(prefix))!;
      const input = { ...tableInput(id, res.Properties ?? {}), TableName: `${id}-${suffix}` };
      await admin.send(new CreateTableCommand(input));
      names.set(input.TableName!, label);
      return input.TableName!;
    };
    tables = {
      payments: await create('PaymentsTable', 'Payments'),
      idempotency: await create('IdempotencyKeysTable', 'IdempotencyKeys'),
      audit: await create('AuditLogTable', 'AuditLog'),
    };
  } finally {
    admin.destroy();
  }
  client = meteredClient(endpoint, meter, names);
}, 60_000);

afterAll(async () => {
  client?.destroy();
  await emulator?.stop();
});

/** Runs one payment end to end; `failures` provider errors before it succeeds. Returns the meter's figures. */
async function onePayment(failures: number) {
  const doc = DynamoDBDocumentClient.from(client!, { marshallOptions: { removeUndefinedValues: true } });
  const repo = new PaymentRepository(doc, { payments: tables.payments, idempotency: tables.idempotency, openPaymentsIndex: OPEN_PAYMENTS_INDEX });
  // Every stored version, as the stream's NewImage would carry it.
  const versions: Payment[] = [];
  const store: typeof repo = Object.create(repo);
  store.insertFirst = async (p, w) => {
    const r = await repo.insertFirst(p, w);
    if (r.kind === 'created') versions.push(p);
    return r;
  };
  store.insertWithKey = async (p, k, n) => {
    const r = await repo.insertWithKey(p, k, n);
    if (r.kind === 'created') versions.push(p);
    return r;
  };
  store.transition = async (p, req) => {
    const next = await repo.transition(p, req);
    versions.push(next);
    return next;
  };
  const queue = new FakeQueue();
  const provider = new FakeIntentProvider();
  provider.confirmBehaviour = (_req, n) => (n < failures ? 'error' : 'succeed'); // n counts from 0
  const stuckAfterSeconds = 240; // the contract's default: the create's due time, which a prompt claim keeps
  const service = new PaymentsService({ store, queue, idempotencyTtlSeconds: 86_400, maxRetries: 3, stuckAfterSeconds });
  const processor = new PaymentProcessor({
    store,
    provider,
    queue,
    breaker: new CircuitBreaker('p', { failureRateThreshold: 0 }),
    config: { retryBaseSeconds: 1, retryCapSeconds: 60, leaseSeconds: 30, providerTimeoutMs: 5000, stuckAfterSeconds },
    logger: silentLogger,
    random: () => 0,
  });
  const audit = createAuditStreamHandler({ repository: new AuditRepository(doc, { audit: tables.audit }), logger: silentLogger });

  meter.reset();
  const { payment } = await service.create('tenant-1', {
    idempotencyKey: `cap-${randomUUID()}`,
    amountMinor: 4999,
    currency: 'USD',
    paymentMethod: { type: 'card', token: 'tok_success' },
    metadata: { orderId: 'o-1001' },
  });
  let messages = 0;
  while (queue.sent.length > 0 && messages < 10) {
    const { message } = queue.sent.shift()!;
    messages++;
    const r = await processor.process({ ...message, notBefore: undefined } as typeof message);
    if (process.env.CAPACITY_PRINT) console.log(message.reason, JSON.stringify(r));
  }
  const stored = await repo.get(payment.id);
  expect(stored?.status).toBe('success');
  const records: DynamoDBRecord[] = versions.map((v, i) => ({
    eventName: i === 0 ? 'INSERT' : 'MODIFY',
    dynamodb: {
      NewImage: marshall(v, { removeUndefinedValues: true }) as never,
      ...(i > 0 ? { OldImage: marshall(versions[i - 1]!, { removeUndefinedValues: true }) as never } : {}),
      SequenceNumber: String(i + 1),
    },
  }));
  expect((await audit({ Records: records })).batchItemFailures).toEqual([]);
  const round = (n: number) => Math.round(n * 10) / 10;
  return {
    versions: versions.length,
    messages,
    wcu: round(meter.total('write')),
    rcu: round(meter.total('read')),
    byTable: Object.fromEntries([...meter.write].map(([k, v]) => [k, round(v)]).sort()),
  };
}

function documented(): Record<string, number> {
  const doc = readFileSync(path.join(projectRoot, 'docs/capacity.md'), 'utf8');
  const line = /<!-- capacity-figures: (\{.*\}) -->/.exec(doc);
  if (!line) throw new Error('docs/capacity.md has no capacity-figures line');
  return JSON.parse(line[1]!) as Record<string, number>;
}

describe('capacity per payment (DynamoDB Local, ReturnConsumedCapacity=INDEXES)', () => {
  it('happy path and one retry cost what docs/capacity.md says', async () => {
    const happy = await onePayment(0);
    const retry = await onePayment(1);
    const measured = {
      happyWCU: happy.wcu,
      happyRCU: happy.rcu,
      happyVersions: happy.versions,
      happyMessages: happy.messages,
      retryWCU: retry.wcu,
      retryRCU: retry.rcu,
      retryVersions: retry.versions,
      retryMessages: retry.messages,
    };
    if (process.env.CAPACITY_PRINT) console.log(JSON.stringify({ measured, happyByTable: happy.byTable, retryByTable: retry.byTable }));
    expect(measured).toEqual(documented());
  }, 60_000);
});
