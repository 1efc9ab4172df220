/**
 * The refunds the service owes, in the Refunds table (pk `id`). A refund is written once, before anything
 * is sent (a conditional put: the same id finds the same record), and every later change is conditional
 * on its version. While pending it carries `openShard` and `dueAt`, the keys of the sparse open-refunds
 * index the reconciler reads, so its cost grows with the refunds in flight, not with all refunds ever made.
 */
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { GetCommand, PutCommand, QueryCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { ConcurrentUpdateError } from '../../core/errors';
import type { OpenRefundsPage, RefundStore } from '../../core/ports';
import type { Refund, RefundChange } from '../../core/refund';
import { openPartitions, openShardFor } from './payment-repository';

export class RefundRepository implements RefundStore {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly tables: { readonly refunds: string; readonly openRefundsIndex: string },
  ) {}

  async get(id: string): Promise<Refund | undefined> {
    const { Item } = await this.doc.send(new GetCommand({ TableName: this.tables.refunds, Key: { id }, ConsistentRead: true }));
    return Item as Refund | undefined;
  }

  async create(refund: Refund & { readonly dueAt: number }): Promise<{ created: boolean; record: Refund }> {
    const item = { ...refund, openShard: openShardFor(refund.id) };
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.tables.refunds,
          Item: item,
          ConditionExpression: 'attribute_not_exists(id)',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return { created: true, record: item };
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException && err.Item) return { created: false, record: unmarshall(err.Item) as Refund };
      throw err;
    }
  }

  async update(current: Refund, change: RefundChange & { readonly updatedAt: string }, dueAt?: number): Promise<Refund> {
    const names: Record<string, string> = { '#version': 'version' };
    const values: Record<string, unknown> = { ':v': current.version, ':next': current.version + 1 };
    const sets = ['#version = :next'];
    const removes: string[] = [];
    let i = 0;
    for (const [k, v] of Object.entries(change)) {
      if (v === undefined) continue;
      names[`#a${i}`] = k;
      values[`:a${i}`] = v;
      sets.push(`#a${i} = :a${i}`);
      i++;
    }
    const pending = (change.status ?? current.status) === 'pending';
    if (pending && dueAt !== undefined) {
      values[':due'] = dueAt;
      values[':shard'] = current.openShard ?? openShardFor(current.id);
      sets.push('dueAt = :due', 'openShard = :shard');
    } else if (!pending) {
      removes.push('dueAt', 'openShard');
    }
    try {
      const { Attributes } = await this.doc.send(
        new UpdateCommand({
          TableName: this.tables.refunds,
          Key: { id: current.id },
          UpdateExpression: `SET ${sets.join(', ')}${removes.length ? ` REMOVE ${removes.join(', ')}` : ''}`,
          ConditionExpression: '#version = :v',
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
          ReturnValues: 'ALL_NEW',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return Attributes as Refund;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) throw new ConcurrentUpdateError(err.Item ? unmarshall(err.Item) : undefined);
      throw err;
    }
  }

  openPartitions(): readonly string[] {
    return openPartitions();
  }

  async openDue(partition: string, dueBefore: number, startKey?: Record<string, unknown>, limit = 100): Promise<OpenRefundsPage> {
    const res = await this.doc.send(
      new QueryCommand({
        TableName: this.tables.refunds,
        IndexName: this.tables.openRefundsIndex,
        KeyConditionExpression: 'openShard = :s AND dueAt <= :d',
        ExpressionAttributeValues: { ':s': partition, ':d': dueBefore },
        ExclusiveStartKey: startKey,
        Limit: limit,
      }),
    );
    return { items: (res.Items ?? []) as Refund[], ...(res.LastEvaluatedKey ? { next: res.LastEvaluatedKey } : {}) };
  }
}
