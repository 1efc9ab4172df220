import { QueryCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { isOpen, type PaymentStatus } from '../../core/payment';
import { batchGetByIds } from './batch-get';
import { openPartitions } from './payment-repository';

export const openShards = openPartitions;

/** Items read per open-index shard for a status call: 16 shards × 250 = at most 4,000 payments. */
export const STATUS_SAMPLE_PER_SHARD = 250;

export interface OpenCounts {
  readonly pending: number;
  readonly processing: number;
  readonly retrying: number;
  readonly total: number;
  /** False when some shard held more than the sample: the counts are then lower bounds. */
  readonly complete: boolean;
  readonly [status: string]: number | boolean;
}

/**
 * Open payments by status, from one bounded page of each shard of the sparse open index, never the whole
 * index: a status call costs the same at 1k or 1M open payments. The index holds keys only (a claim that
 * keeps its due time then writes nothing to it), so the statuses of the sampled ids are read from the
 * table: BatchGetItem of `status` alone, eventually consistent. A payment that closed between the index
 * query and that read is not counted; the counts are a moment's picture either way.
 *
 * Cost, at most: the 16 queries read 4,000 index entries of well under 100 bytes (about 50 RCU), and the
 * reads of 4,000 payments cost by item size, 0.5 RCU each up to 4 KB (about 2,000 RCU, $0.00025): the
 * projection trims the response, not the price. Past `perShard` open payments in a shard the counts are
 * lower bounds and `complete` is false; the full figures are in the reconciler's run records.
 */
export async function countOpenByStatus(doc: Pick<DynamoDBDocumentClient, 'send'>, table: string, index: string, perShard = STATUS_SAMPLE_PER_SHARD): Promise<OpenCounts> {
  const counts: Record<string, number> = { pending: 0, processing: 0, retrying: 0, total: 0 };
  let complete = true;
  await Promise.all(
    openShards().map(async (shard) => {
      const res = await doc.send(
        new QueryCommand({
          TableName: table,
          IndexName: index,
          KeyConditionExpression: 'openShard = :s',
          ExpressionAttributeValues: { ':s': shard },
          Limit: perShard,
        }),
      );
      if (res.LastEvaluatedKey) complete = false;
      const ids = (res.Items ?? []).map((k) => String(k.id));
      for (const item of await batchGetByIds(doc, table, ids, { consistent: false, projection: ['status'] })) {
        const s = item.status as PaymentStatus;
        if (!isOpen(s)) continue;
        counts[s] = (counts[s] ?? 0) + 1;
        counts.total!++;
      }
    }),
  );
  return { ...counts, complete } as OpenCounts;
}
