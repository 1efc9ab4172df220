/**
 * The provider rate budget shared through DynamoDB Local by many limiter instances (as many Lambda
 * instances share it): the slots they are handed never exceed the budget in any second, nobody is
 * refused while the wait bound allows, a full schedule refuses, and a pause after a provider 429 holds
 * every instance back. Slots are read from the limiter (what it promises), not
 * from wall-clock starts, so the machine's load cannot make the test pass or fail.
 */
import { DynamoDBClient, CreateTableCommand } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { loadSynthesizedStack, resourcesOfType, startDynamoDbLocal, tableInput, type RunningEmulator } from '@idempotent-payments/local-stack';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoRateBudget } from '../../functions/adapters/dynamo/provider-rate-budget';
import { BudgetExhaustedError } from '../../functions/core/ports/rate-budget';
import { projectRoot } from '../helpers/project-root';

const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
let ddb: RunningEmulator;
let table: string;
const clients: DynamoDBClient[] = [];
const doc = () => {
  const c = new DynamoDBClient({ endpoint: ddb.endpoint, region: 'us-east-1', credentials });
  clients.push(c);
  return DynamoDBDocumentClient.from(c);
};

beforeAll(async () => {
  ddb = await startDynamoDbLocal({});
  // The table as the stack declares it.
  const { template } = loadSynthesizedStack(`${projectRoot}/cdk.out`);
  const [id, res] = resourcesOfType(template, 'AWS::DynamoDB::Table').find(([id]) => id.startsWith('ProviderBudgetTable'))!;
  table = `${id}-${Date.now()}`;
  const admin = new DynamoDBClient({ endpoint: ddb.endpoint, region: 'us-east-1', credentials });
  await admin.send(new CreateTableCommand({ ...tableInput(id, res.Properties ?? {}), TableName: table }));
  admin.destroy();
});

afterAll(async () => {
  for (const c of clients) c.destroy();
  await ddb?.stop();
});

/** The most slots inside any window of `ms`. */
function maxInWindow(sorted: number[], ms: number): number {
  let best = 0;
  for (let i = 0, j = 0; j < sorted.length; j++) {
    while (sorted[j]! - sorted[i]! >= ms) i++;
    best = Math.max(best, j - i + 1);
  }
  return best;
}

describe('provider rate budget on DynamoDB', () => {
  it('20 instances taking 300 slots at 100/s: each second gets at most the budget (plus the burst tolerance), nobody is refused', async () => {
    const slots: number[] = [];
    const name = `fleet-${Date.now()}`;
    const opsPerSecond = 100;
    const burstMs = 50;
    // Each instance records its slot and does not sleep, on a clock that stands still at a second's start:
    // what is handed out depends on the tickets alone, not on how fast this machine answers.
    const t0 = Math.floor(Date.now() / 1000) * 1000;
    const instances = Array.from(
      { length: 20 },
      () =>
        new DynamoRateBudget(doc(), { table, name, opsPerSecond, maxWaitMs: 10_000, burstMs, now: () => t0, onSlot: (s) => void slots.push(s), sleep: async () => {} }),
    );
    await Promise.all(instances.map(async (b) => { for (let i = 0; i < 15; i++) await b.take(); }));
    slots.sort((a, b) => a - b);
    expect(slots).toHaveLength(300);
    expect(new Set(slots).size).toBe(300);
    expect(maxInWindow(slots, 1000)).toBe(opsPerSecond);
    // Evenly spaced: no two slots closer than 1/budget, so no 100 ms holds more than a tenth.
    expect(maxInWindow(slots, 100)).toBeLessThanOrEqual(opsPerSecond / 10);
    expect(slots.at(-1)! - slots[0]!).toBe(((300 - 1) * 1000) / opsPerSecond);
  });

  it('a schedule full past the wait bound refuses and says when to come back; no slot beyond the bound is handed out', async () => {
    const name = `full-${Date.now()}`;
    // A clock that stands still at the start of a second: the refusal depends on the tickets alone.
    const t0 = Math.floor(Date.now() / 1000) * 1000;
    const slots: number[] = [];
    const b = new DynamoRateBudget(doc(), { table, name, opsPerSecond: 10, maxWaitMs: 250, sleep: async () => {}, now: () => t0, onSlot: (s) => void slots.push(s) });
    // 10/s with a 250 ms bound: slots at +0, +100, +200 fit, the next one (+300) is past the bound.
    let refusal: unknown;
    for (let i = 0; i < 10 && !refusal; i++) await b.take().catch((err) => (refusal = err));
    expect(slots).toEqual([t0, t0 + 100, t0 + 200]);
    expect(refusal).toBeInstanceOf(BudgetExhaustedError);
    expect((refusal as BudgetExhaustedError).retryAfterMs).toBeGreaterThan(0);
    await expect(b.take()).rejects.toBeInstanceOf(BudgetExhaustedError);
    expect(slots).toHaveLength(3);
  });

  it("a provider 429's pause holds back every instance until its end", async () => {
    const name = `pause-${Date.now()}`;
    const slots: number[] = [];
    const make = () => new DynamoRateBudget(doc(), { table, name, opsPerSecond: 50, maxWaitMs: 10_000, onSlot: (s) => void slots.push(s), sleep: async () => {} });
    const [a, b] = [make(), make()];
    await a.take();
    const until = Date.now() + 3000;
    await a.pauseUntil(until);
    await b.take();
    await a.take();
    expect(slots.slice(1).every((s) => s >= until)).toBe(true);
  });
});
