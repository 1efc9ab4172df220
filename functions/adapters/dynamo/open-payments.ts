import { QueryCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { openPartitions } from './payment-repository';

export const openShards = openPartitions;

/**
 * Open payments by status, read from the sparse index only (its size is the open set, not the table),
 * projecting just the status.
 */
export async function countOpenByStatus(doc: DynamoDBDocumentClient, table: string, index: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = { pending: 0, processing: 0, retrying: 0, total: 0 };
  await Promise.all(
    openShards().map(async (shard) => {
      let start: Record<string, unknown> | undefined;
      do {
        const res = await doc.send(
          new QueryCommand({
            TableName: table,
            IndexName: index,
            KeyConditionExpression: 'openShard = :s',
            ExpressionAttributeValues: { ':s': shard },
            ProjectionExpression: '#st',
            ExpressionAttributeNames: { '#st': 'status' },
            ExclusiveStartKey: start,
          }),
        );
        for (const item of res.Items ?? []) {
          const s = String(item.status);
          counts[s] = (counts[s] ?? 0) + 1;
          counts.total!++;
        }
        start = res.LastEvaluatedKey;
      } while (start);
    }),
  );
  return counts;
}
