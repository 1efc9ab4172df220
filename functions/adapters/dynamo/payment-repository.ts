/**
 * Payments and idempotency keys in DynamoDB. Creation writes the key record and the payment in one
 * transaction; every later change is a conditional update on (version, status). Failed conditions
 * return the stored item (ReturnValuesOnConditionCheckFailure), so no second read is needed.
 */
import { createHash } from 'node:crypto';
import { ConditionalCheckFailedException, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import {
  GetCommand,
  QueryCommand,
  TransactWriteCommand,
  UpdateCommand,
  type DynamoDBDocumentClient,
  type UpdateCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { ConcurrentUpdateError, ServiceUnavailableError } from '../../core/errors';
import { isOpen, type ChangeInfo, type Payment, type PaymentStatus } from '../../core/payment';
import { assertTransition } from '../../core/state-machine';
import { SETTLED_INDEX } from '../../shared/config-contract';

/** Open payments are spread over this many index partitions so no single partition gets hot. */
export const OPEN_SHARDS = 16;

export function openShardFor(paymentId: string): string {
  const n = createHash('sha256').update(paymentId).digest().readUInt16BE(0) % OPEN_SHARDS;
  return `open#${String(n).padStart(2, '0')}`;
}

export interface IdempotencyRecord {
  readonly pk: string;
  readonly tenantId: string;
  readonly idempotencyKey: string;
  readonly paymentId: string;
  readonly generation: number;
  readonly requestHash: string;
  readonly createdAt: string;
  /** Epoch seconds; DynamoDB TTL attribute. Past it the key acts as absent even before TTL deletes it. */
  readonly expiresAt: number;
}

/** Successful payments carry a sparse (hour, shard) bucket so provider reconciliation can list a window. */
export function settledBucketFor(paymentId: string, at: Date): string {
  return `${at.toISOString().slice(0, 13)}#${openShardFor(paymentId).slice(5)}`;
}

export const keyPk = (tenantId: string, key: string): string => `${tenantId}#${key}`;

export type InsertResult =
  | { readonly kind: 'created' }
  /** `key` is the live record when it blocked the insert; `payment` is the stored item at the attempted id. */
  | { readonly kind: 'conflict'; readonly key?: IdempotencyRecord; readonly payment?: Payment };

export interface TransitionRequest {
  readonly to: PaymentStatus;
  readonly change: ChangeInfo;
  readonly now: Date;
  /** Attributes to set along with the status. */
  readonly set?: Partial<Omit<Payment, 'id' | 'status' | 'version' | 'lastChange' | 'openShard' | 'dueAt'>>;
  readonly remove?: ReadonlyArray<keyof Payment>;
  /** When the reconciler should look at the payment if nothing else moves it (open statuses only). */
  readonly dueAt?: number;
  readonly operator?: boolean;
}

export interface PaymentTables {
  readonly payments: string;
  readonly idempotency: string;
  readonly openPaymentsIndex: string;
}

const TRANSACTION_RETRIES = 8;

export class PaymentRepository {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly tables: PaymentTables,
  ) {}

  async get(id: string): Promise<Payment | undefined> {
    const { Item } = await this.doc.send(new GetCommand({ TableName: this.tables.payments, Key: { id }, ConsistentRead: true }));
    return Item as Payment | undefined;
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
  async insertWithKey(payment: Payment, key: IdempotencyRecord, nowEpochSeconds: number): Promise<InsertResult> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.doc.send(
          new TransactWriteCommand({
            TransactItems: [
              {
                Put: {
                  TableName: this.tables.idempotency,
                  Item: key,
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
   * A new version without a status change (the reconciler re-queued the payment): still conditional on
   * version and status, still audited, and it moves the payment's due time.
   */
  async touch(current: Payment, req: { change: ChangeInfo; now: Date; dueAt: number }): Promise<Payment> {
    return this.conditionalUpdate(current.id, {
      UpdateExpression: 'SET #version = :next, updatedAt = :now, lastChange = :change, dueAt = :due',
      ConditionExpression: '#version = :v AND #status = :s AND attribute_exists(openShard)',
      ExpressionAttributeNames: { '#version': 'version', '#status': 'status' },
      ExpressionAttributeValues: {
        ':v': current.version,
        ':next': current.version + 1,
        ':s': current.status,
        ':now': req.now.toISOString(),
        ':change': req.change,
        ':due': req.dueAt,
      },
    });
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
  async openDue(shard: string, dueBefore: number, startKey?: Record<string, unknown>, limit = 100) {
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
    return { items: (res.Items ?? []) as Payment[], next: res.LastEvaluatedKey, scanned: res.ScannedCount ?? 0 };
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
