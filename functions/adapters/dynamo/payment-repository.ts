/**
 * Payments and idempotency keys in DynamoDB. Creation writes the key record and the payment in one
 * transaction; every later change is a conditional update on (version, status). Failed conditions
 * return the stored item (ReturnValuesOnConditionCheckFailure), so no second read is needed.
 */
import { createHash } from 'node:crypto';
import { ConditionalCheckFailedException, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import {
  BatchGetCommand,
  GetCommand,
  QueryCommand,
  TransactWriteCommand,
  UpdateCommand,
  type BatchGetCommandOutput,
  type DynamoDBDocumentClient,
  type UpdateCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { ConcurrentUpdateError, ServiceUnavailableError } from '../../core/errors';
import { isOpen, type Payment } from '../../core/payment';
import type { IdempotencyRecord, InsertResult, OpenDuePage, PaymentStore, TouchRequest, TransitionRequest } from '../../core/ports';
import { assertTransition } from '../../core/state-machine';
import { SETTLED_INDEX } from '../../shared/config-contract';

export type { IdempotencyRecord, InsertResult, TransitionRequest } from '../../core/ports';
export { SETTLED_INDEX };

/** Open payments are spread over this many index partitions so no single partition gets hot. */
export const OPEN_SHARDS = 16;

export function openShardFor(paymentId: string): string {
  const n = createHash('sha256').update(paymentId).digest().readUInt16BE(0) % OPEN_SHARDS;
  return `open#${String(n).padStart(2, '0')}`;
}

/** Successful payments carry a sparse (hour, shard) bucket so provider reconciliation can list a window. */
export function settledBucketFor(paymentId: string, at: Date): string {
  return `${at.toISOString().slice(0, 13)}#${openShardFor(paymentId).slice(5)}`;
}

/** The IdempotencyKeys table's partition key: keys are scoped to their tenant. */
export const keyPk = (tenantId: string, key: string): string => `${tenantId}#${key}`;

export const openPartitions = (): string[] => Array.from({ length: OPEN_SHARDS }, (_, n) => `open#${String(n).padStart(2, '0')}`);

export interface PaymentTables {
  readonly payments: string;
  readonly idempotency: string;
  readonly openPaymentsIndex: string;
}

const TRANSACTION_RETRIES = 8;

export class PaymentRepository implements PaymentStore {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly tables: PaymentTables,
  ) {}

  async get(id: string): Promise<Payment | undefined> {
    const { Item } = await this.doc.send(new GetCommand({ TableName: this.tables.payments, Key: { id }, ConsistentRead: true }));
    return Item as Payment | undefined;
  }

  /** Up to 100 ids per BatchGetItem; unprocessed keys are asked again until none are left. */
  async getMany(ids: readonly string[]): Promise<Map<string, Payment>> {
    const out = new Map<string, Payment>();
    for (let i = 0; i < ids.length; i += 100) {
      let keys: Array<Record<string, unknown>> | undefined = ids.slice(i, i + 100).map((id) => ({ id }));
      for (let round = 0; keys && keys.length > 0; round++) {
        const res: BatchGetCommandOutput = await this.doc.send(new BatchGetCommand({ RequestItems: { [this.tables.payments]: { Keys: keys, ConsistentRead: true } } }));
        for (const item of res.Responses?.[this.tables.payments] ?? []) out.set(String(item.id), item as Payment);
        keys = res.UnprocessedKeys?.[this.tables.payments]?.Keys;
        if (keys?.length) await sleep(Math.min(1000, 20 * 2 ** round));
      }
    }
    return out;
  }

  openPartitions(): readonly string[] {
    return openPartitions();
  }

  async getKey(tenantId: string, key: string): Promise<IdempotencyRecord | undefined> {
    const { Item } = await this.doc.send(
      new GetCommand({ TableName: this.tables.idempotency, Key: { pk: keyPk(tenantId, key) }, ConsistentRead: true }),
    );
    return Item as IdempotencyRecord | undefined;
  }

  /**
   * Writes the key record and the new payment atomically. The key may be taken only if absent or
   * expired; the payment id must be unused. Transaction conflicts with concurrent identical requests
   * are retried with jitter; the loser then sees the winner's records.
   */
  async insertWithKey(newPayment: Payment, key: IdempotencyRecord, nowEpochSeconds: number): Promise<InsertResult> {
    const keyItem = { ...key, pk: keyPk(key.tenantId, key.idempotencyKey) };
    const payment = { ...newPayment, openShard: openShardFor(newPayment.id) };
    for (let attempt = 0; ; attempt++) {
      try {
        await this.doc.send(
          new TransactWriteCommand({
            TransactItems: [
              {
                Put: {
                  TableName: this.tables.idempotency,
                  Item: keyItem,
                  ConditionExpression: 'attribute_not_exists(pk) OR expiresAt <= :now',
                  ExpressionAttributeValues: { ':now': nowEpochSeconds },
                  ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
                },
              },
              {
                Put: {
                  TableName: this.tables.payments,
                  Item: payment,
                  ConditionExpression: 'attribute_not_exists(id)',
                  ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
                },
              },
            ],
          }),
        );
        return { kind: 'created' };
      } catch (err) {
        if (!(err instanceof TransactionCanceledException)) throw err;
        const reasons = err.CancellationReasons ?? [];
        const codes = reasons.map((r) => r.Code ?? 'None');
        if (codes.includes('ConditionalCheckFailed')) {
          const item = (i: number) => (reasons[i]?.Code === 'ConditionalCheckFailed' && reasons[i]?.Item ? unmarshall(reasons[i]!.Item!) : undefined);
          return { kind: 'conflict', key: item(0) as IdempotencyRecord | undefined, payment: item(1) as Payment | undefined };
        }
        const transient = codes.some((c) => c === 'TransactionConflict' || c === 'ThrottlingError' || c === 'ProvisionedThroughputExceeded');
        if (!transient || attempt >= TRANSACTION_RETRIES) {
          if (transient) throw new ServiceUnavailableError();
          throw err;
        }
        await sleep(Math.random() * Math.min(200, 10 * 2 ** attempt));
      }
    }
  }

  /**
   * Applies one state-machine transition as a conditional update on the version and status the caller
   * read. Open statuses keep the sparse open-payments index attributes; final statuses drop them.
   */
  async transition(current: Payment, req: TransitionRequest): Promise<Payment> {
    assertTransition(current, req.to, { operator: req.operator });
    const names: Record<string, string> = { '#status': 'status', '#version': 'version' };
    const values: Record<string, unknown> = {
      ':to': req.to,
      ':from': current.status,
      ':v': current.version,
      ':next': current.version + 1,
      ':now': req.now.toISOString(),
      ':change': req.change,
    };
    const sets = ['#status = :to', '#version = :next', 'updatedAt = :now', 'lastChange = :change'];
    const removes: string[] = [];
    let i = 0;
    for (const [k, v] of Object.entries(req.set ?? {})) {
      if (v === undefined) continue;
      names[`#a${i}`] = k;
      values[`:a${i}`] = v;
      sets.push(`#a${i} = :a${i}`);
      i++;
    }
    for (const k of req.remove ?? []) {
      names[`#a${i}`] = k;
      removes.push(`#a${i}`);
      i++;
    }
    if (isOpen(req.to)) {
      values[':shard'] = current.openShard ?? openShardFor(current.id);
      values[':due'] = req.dueAt ?? Date.parse(req.now.toISOString());
      sets.push('openShard = :shard', 'dueAt = :due');
    } else {
      removes.push('openShard', 'dueAt', 'leaseUntil');
    }
    if (req.to === 'success') {
      values[':bucket'] = settledBucketFor(current.id, req.now);
      values[':settledAt'] = req.now.getTime();
      sets.push('settledBucket = :bucket', 'settledAt = :settledAt');
    }
    return this.conditionalUpdate(current.id, {
      UpdateExpression: `SET ${sets.join(', ')}${removes.length ? ` REMOVE ${removes.join(', ')}` : ''}`,
      ConditionExpression: '#version = :v AND #status = :from',
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    });
  }

  /** A versioned update whose failed condition becomes ConcurrentUpdateError carrying the stored payment. */
  private async conditionalUpdate(
    id: string,
    update: Pick<UpdateCommandInput, 'UpdateExpression' | 'ConditionExpression' | 'ExpressionAttributeNames' | 'ExpressionAttributeValues'>,
  ): Promise<Payment> {
    try {
      const { Attributes } = await this.doc.send(
        new UpdateCommand({
          TableName: this.tables.payments,
          Key: { id },
          ...update,
          ReturnValues: 'ALL_NEW',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return Attributes as Payment;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) {
        throw new ConcurrentUpdateError(err.Item ? unmarshall(err.Item) : undefined);
      }
      throw err;
    }
  }

  /**
   * A new version without a status change (a re-queue, a recorded refund): still conditional on version
   * and status, still audited. With `dueAt` it moves an open payment's due time.
   */
  async touch(current: Payment, req: TouchRequest): Promise<Payment> {
    const names: Record<string, string> = { '#version': 'version', '#status': 'status' };
    const values: Record<string, unknown> = {
      ':v': current.version,
      ':next': current.version + 1,
      ':s': current.status,
      ':now': req.now.toISOString(),
      ':change': req.change,
    };
    const sets = ['#version = :next', 'updatedAt = :now', 'lastChange = :change'];
    let condition = '#version = :v AND #status = :s';
    if (req.dueAt !== undefined) {
      values[':due'] = req.dueAt;
      sets.push('dueAt = :due');
      condition += ' AND attribute_exists(openShard)';
    }
    let i = 0;
    for (const [k, v] of Object.entries(req.set ?? {})) {
      if (v === undefined) continue;
      names[`#a${i}`] = k;
      values[`:a${i}`] = v;
      sets.push(`#a${i} = :a${i}`);
      i++;
    }
    return this.conditionalUpdate(current.id, {
      UpdateExpression: `SET ${sets.join(', ')}`,
      ConditionExpression: condition,
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    });
  }

  async postpone(current: Payment, dueAt: number): Promise<boolean> {
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.tables.payments,
          Key: { id: current.id },
          UpdateExpression: 'SET dueAt = :due',
          // Same version and status as read, still open, and only ever later: a racing writer wins.
          ConditionExpression: '#version = :v AND #status = :s AND attribute_exists(openShard) AND dueAt < :due',
          ExpressionAttributeNames: { '#version': 'version', '#status': 'status' },
          ExpressionAttributeValues: { ':v': current.version, ':s': current.status, ':due': dueAt },
        }),
      );
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw err;
    }
  }

  /** Successful payments settled in one (hour, shard) bucket. */
  async settledIn(bucket: string, startKey?: Record<string, unknown>) {
    const res = await this.doc.send(
      new QueryCommand({
        TableName: this.tables.payments,
        IndexName: SETTLED_INDEX,
        KeyConditionExpression: 'settledBucket = :b',
        ExpressionAttributeValues: { ':b': bucket },
        ExclusiveStartKey: startKey,
      }),
    );
    return { items: (res.Items ?? []) as Array<Pick<Payment, 'id' | 'status' | 'providerChargeId' | 'amountMinor' | 'currency'>>, next: res.LastEvaluatedKey };
  }

  /** One page of open payments in one index shard whose due time has passed. */
  async openDue(shard: string, dueBefore: number, startKey?: Record<string, unknown>, limit = 100): Promise<OpenDuePage> {
    const res = await this.doc.send(
      new QueryCommand({
        TableName: this.tables.payments,
        IndexName: this.tables.openPaymentsIndex,
        KeyConditionExpression: 'openShard = :s AND dueAt <= :d',
        ExpressionAttributeValues: { ':s': shard, ':d': dueBefore },
        ExclusiveStartKey: startKey,
        Limit: limit,
      }),
    );
    return { items: (res.Items ?? []) as Payment[], ...(res.LastEvaluatedKey ? { next: res.LastEvaluatedKey } : {}), scanned: res.ScannedCount ?? 0 };
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
