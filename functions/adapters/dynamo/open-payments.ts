import { QueryCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { openPartitions } from './payment-repository';

export const openShards = openPartitions;

/** Items read per open-index shard for a status call: 16 shards × 250 = at most 4,000 small items. */
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
 * Open payments by status, from one bounded page of each shard of the sparse open index (projecting just
 * the status), never the whole index: a status call costs the same at 1k or 1M open payments. Past
 * `perShard` open payments in a shard the counts are lower bounds and `complete` is false; the full
 * figures are in the reconciler's run records.
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
          ProjectionExpression: '#st',
          ExpressionAttributeNames: { '#st': 'status' },
          Limit: perShard,
        }),
      );
      for (const item of res.Items ?? []) {
        const s = String(item.status);
        counts[s] = (counts[s] ?? 0) + 1;
        counts.total!++;
      }
      if (res.LastEvaluatedKey) complete = false;
    }),
  );
  return { ...counts, complete } as OpenCounts;
}
