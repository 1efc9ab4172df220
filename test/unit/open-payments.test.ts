import type { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { describe, expect, it } from 'vitest';
import { countOpenByStatus, openShards } from '../../functions/adapters/dynamo/open-payments';

/** A document client over an open index of `perShardOpen` payments in every shard; it counts items returned. */
function fakeIndex(perShardOpen: number) {
  const stats = { queries: 0, itemsReturned: 0 };
  const send = async (cmd: QueryCommand) => {
    const limit = cmd.input.Limit ?? Infinity;
    stats.queries++;
    const n = Math.min(limit, perShardOpen);
    stats.itemsReturned += n;
    const statuses = ['pending', 'processing', 'retrying'];
    return {
      Items: Array.from({ length: n }, (_, i) => ({ status: statuses[i % 3] })),
      ...(perShardOpen > n ? { LastEvaluatedKey: { openShard: cmd.input.ExpressionAttributeValues?.[':s'], dueAt: n } } : {}),
    };
  };
  return { doc: { send } as never, stats };
}

describe('recovery status: open counts from a bounded read', () => {
  it('counts exactly while the open set is small', async () => {
    const { doc } = fakeIndex(3);
    await expect(countOpenByStatus(doc, 'Payments', 'open')).resolves.toEqual({ pending: 16, processing: 16, retrying: 16, total: 48, complete: true });
  });

  it('at 1M open payments reads one bounded page per shard and says the counts are lower bounds', async () => {
    const { doc, stats } = fakeIndex(1_000_000 / 16);
    const counts = await countOpenByStatus(doc, 'Payments', 'open', 250);
    expect(stats.queries).toBe(openShards().length);
    expect(stats.itemsReturned).toBe(16 * 250);
    expect(counts).toMatchObject({ total: 4000, complete: false });
  });
});
