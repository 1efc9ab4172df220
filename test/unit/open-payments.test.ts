import type { BatchGetCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { describe, expect, it } from 'vitest';
import { countOpenByStatus, openShards } from '../../functions/adapters/dynamo/open-payments';

const STATUSES = ['pending', 'processing', 'retrying'];

/**
 * A document client over a keys-only open index of `perShardOpen` payments in every shard, and the table
 * behind it (payment `<shard>/<n>` has status STATUSES[n % 3]). It counts what it returns, and leaves
 * keys unprocessed or answers with a closed payment when told to.
 */
function fakeTable(perShardOpen: number, opts: { unprocessedFirst?: number; closed?: ReadonlySet<string> } = {}) {
  const stats = { queries: 0, itemsReturned: 0, batchGets: 0, keysAsked: 0, maxKeys: 0, consistent: new Set<unknown>(), projections: new Set<unknown>() };
  let unprocessed = opts.unprocessedFirst ?? 0;
  const send = async (cmd: QueryCommand | BatchGetCommand) => {
    if ('RequestItems' in cmd.input) {
      const [table, req] = Object.entries(cmd.input.RequestItems!)[0]!;
      const keys = req.Keys!.map((k) => String(k.id));
      stats.batchGets++;
      stats.keysAsked += keys.length;
      stats.maxKeys = Math.max(stats.maxKeys, keys.length);
      stats.consistent.add(req.ConsistentRead);
      stats.projections.add(`${req.ProjectionExpression} ${JSON.stringify(req.ExpressionAttributeNames)}`);
      const left = keys.splice(keys.length - Math.min(unprocessed, keys.length - 1));
      unprocessed -= left.length;
      return {
        Responses: { [table]: keys.map((id) => ({ status: opts.closed?.has(id) ? 'success' : STATUSES[Number(id.split('/')[1]) % 3] })) },
        ...(left.length ? { UnprocessedKeys: { [table]: { Keys: left.map((id) => ({ id })) } } } : {}),
      };
    }
    const limit = cmd.input.Limit ?? Infinity;
    const shard = String(cmd.input.ExpressionAttributeValues?.[':s']);
    stats.queries++;
    const n = Math.min(limit, perShardOpen);
    stats.itemsReturned += n;
    return {
      Items: Array.from({ length: n }, (_, i) => ({ id: `${shard}/${i}`, openShard: shard, dueAt: i })),
      ...(perShardOpen > n ? { LastEvaluatedKey: { id: `${shard}/${n - 1}`, openShard: shard, dueAt: n - 1 } } : {}),
    };
  };
  return { doc: { send } as never, stats };
}

describe('recovery status: open counts from a bounded read', () => {
  it('counts exactly while the open set is small, reading the statuses from the table (eventually consistent, status only)', async () => {
    const { doc, stats } = fakeTable(3);
    await expect(countOpenByStatus(doc, 'Payments', 'open')).resolves.toEqual({ pending: 16, processing: 16, retrying: 16, total: 48, complete: true });
    expect(stats.keysAsked).toBe(48);
    expect([...stats.consistent]).toEqual([false]);
    expect([...stats.projections]).toEqual(['#p0 {"#p0":"status"}']);
  });

  it('at 1M open payments reads one bounded page per shard, its statuses in batches of 100, and says the counts are lower bounds', async () => {
    const { doc, stats } = fakeTable(1_000_000 / 16);
    const counts = await countOpenByStatus(doc, 'Payments', 'open', 250);
    expect(stats.queries).toBe(openShards().length);
    expect(stats.itemsReturned).toBe(16 * 250);
    expect(stats.maxKeys).toBe(100);
    expect(stats.batchGets).toBe(16 * 3);
    expect(counts).toMatchObject({ total: 4000, complete: false });
  });

  it('asks again for the keys DynamoDB left unprocessed, and does not count a payment that closed after the index was read', async () => {
    const { doc, stats } = fakeTable(3, { unprocessedFirst: 20, closed: new Set(['open#00/0', 'open#05/1']) });
    const counts = await countOpenByStatus(doc, 'Payments', 'open');
    expect(stats.keysAsked).toBe(48 + 20);
    expect(counts).toEqual({ pending: 15, processing: 15, retrying: 16, total: 46, complete: true });
  });
});
