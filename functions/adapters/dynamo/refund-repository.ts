/**
 * The refunds the service owes, in the Refunds table (pk `id`).
 *
 * Tenant refunds (issue 18) are made by one transaction with their key record and the payment's refunded
 * amount (insertTenantRefund), listed by the sparse refunds-by-payment index (`byPayment`, set only on
 * tenant refunds), and a tenant refund that ends failed gives its amount back to the payment in the same
 * transaction that marks it failed: the refund moves pending → failed once (its version condition), so
 * the amount comes back exactly once.
 *
 * Audit: each of a tenant refund's status changes (made pending, succeeded, failed) is also a new version
 * of its payment, written in the same transaction as the refund change: `version` + 1 and `lastChange`
 * (refund_requested / refund_succeeded / refund_failed, naming the refund). The Payments stream then
 * audits it in the payment's hash chain like any payment version, so a refund can never change without
 * its entry. These bumps condition on nothing but the payment's existence: a success payment is final,
 * so nothing else writes it on a version it read. A refund's send bookkeeping (sends, provider ids while
 * pending) stays on the refund record alone. A refund is written once, before anything
 * is sent (a conditional put: the same id finds the same record), and every later change is conditional
 * on its version. While pending it carries `openShard` and `dueAt`, the keys of the sparse open-refunds
 * index the reconciler reads, so its cost grows with the refunds in flight, not with all refunds ever made.
 */
import { createHash } from 'node:crypto';
import { ConditionalCheckFailedException, TransactionCanceledException, TransactionInProgressException } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { GetCommand, PutCommand, QueryCommand, TransactWriteCommand, UpdateCommand, type DynamoDBDocumentClient, type UpdateCommandInput } from '@aws-sdk/lib-dynamodb';
import { ConcurrentUpdateError, InvalidCursorError, ServiceUnavailableError } from '../../core/errors';
import type { ChangeInfo, Payment } from '../../core/payment';
import type { OpenRefundsPage, RefundInsertResult, RefundKeyRecord, RefundPage, RefundStore, TenantRefundStore } from '../../core/ports';
import type { Refund, RefundChange } from '../../core/refund';
import { APPEND_VERSION_TIME, keyPk, openPartitions, openShardFor, versionTimeValues } from './payment-repository';

export interface RefundTables {
  readonly refunds: string;
  readonly openRefundsIndex: string;
  /** Needed where tenant refunds are made or can end failed (their amount goes back to the payment). */
  readonly payments?: string;
  readonly idempotency?: string;
  readonly byPaymentIndex?: string;
}

/**
 * A refund key's partition key in the IdempotencyKeys table: the tenant's prefix, then a part no payment
 * key can have (keys are printable ASCII; U+001F is not), so a refund key never meets a payment key.
 */
export const refundKeyPk = (tenantId: string, paymentId: string, key: string): string => keyPk(tenantId, `\u001frefund\u001f${paymentId}\u001f${key}`);

/** Who moves a refund to its final status (the worker's or the reconciler's refund step). */
const REFUND_ACTOR = 'refund-processor';

/** The payment's new version that tells a refund change (see the header): its values are paymentVersionValues'. */
const NEW_PAYMENT_VERSION = `#version = #version + :one, lastChange = :change, updatedAt = :changedAt, ${APPEND_VERSION_TIME}`;

const paymentVersionValues = (change: ChangeInfo, at: string) => ({ ':one': 1, ':change': change, ':changedAt': at, ...versionTimeValues(at) });

/** Why the payment has a new version: the refund, its amount and (for a tenant's request) its reason. */
function refundChangeInfo(r: Refund, action: string, actor: string, outcome?: string): ChangeInfo {
  const what = `refund ${r.id} of ${r.amountMinor} ${r.currency} minor units`;
  const reason = outcome ? `${what} ${outcome}` : r.reason ? `${what}: ${r.reason}` : what;
  return { action, actor, reason };
}

/** Transaction conflicts (other refunds of the same payment) are retried this often, with jitter. */
const TRANSACTION_RETRIES = 25;

export class RefundRepository implements RefundStore, TenantRefundStore {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly tables: RefundTables,
  ) {}

  private need(name: 'payments' | 'idempotency' | 'byPaymentIndex'): string {
    const t = this.tables[name];
    if (!t) throw new Error(`RefundRepository: ${name} is not configured`);
    return t;
  }

  async getRefundKey(tenantId: string, paymentId: string, key: string): Promise<RefundKeyRecord | undefined> {
    const { Item } = await this.doc.send(
      new GetCommand({ TableName: this.need('idempotency'), Key: { pk: refundKeyPk(tenantId, paymentId, key) }, ConsistentRead: true }),
    );
    return Item as RefundKeyRecord | undefined;
  }

  async insertTenantRefund(refund: Refund & { readonly dueAt: number }, key: RefundKeyRecord, capturedMinor: number, nowEpochSeconds: number): Promise<RefundInsertResult> {
    const item = { ...refund, openShard: openShardFor(refund.id), byPayment: refund.paymentId };
    const token = createHash('sha256').update(`refund\u0000${refund.id}`).digest('base64url').slice(0, 36);
    for (let attempt = 0; ; attempt++) {
      try {
        await this.doc.send(
          new TransactWriteCommand({
            ClientRequestToken: token,
            TransactItems: [
              {
                Put: {
                  TableName: this.need('idempotency'),
                  Item: { ...key, pk: refundKeyPk(key.tenantId, key.paymentId, key.idempotencyKey) },
                  ConditionExpression: 'attribute_not_exists(pk) OR expiresAt <= :now',
                  ExpressionAttributeValues: { ':now': nowEpochSeconds },
                  ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
                },
              },
              {
                // The bound: refunded + this refund ≤ captured. amountMinor never changes, so the limit is
                // computed here and the condition compares one attribute.
                Update: {
                  TableName: this.need('payments'),
                  Key: { id: refund.paymentId },
                  UpdateExpression: `SET amountRefundedMinor = if_not_exists(amountRefundedMinor, :zero) + :amt, ${NEW_PAYMENT_VERSION}`,
                  ConditionExpression:
                    '#status = :success AND tenantId = :t AND amountMinor = :captured AND (attribute_not_exists(amountRefundedMinor) OR amountRefundedMinor <= :limit)',
                  ExpressionAttributeNames: { '#status': 'status', '#version': 'version' },
                  ExpressionAttributeValues: {
                    ...paymentVersionValues(refundChangeInfo(refund, 'refund_requested', `api:${key.tenantId}`), refund.createdAt),
                    ':zero': 0,
                    ':amt': refund.amountMinor,
                    ':success': 'success',
                    ':t': key.tenantId,
                    ':captured': capturedMinor,
                    ':limit': capturedMinor - refund.amountMinor,
                  },
                  ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
                },
              },
              { Put: { TableName: this.tables.refunds, Item: item, ConditionExpression: 'attribute_not_exists(id)' } },
            ],
          }),
        );
        return { kind: 'created' };
      } catch (err) {
        if (err instanceof TransactionInProgressException) {
          if (attempt >= TRANSACTION_RETRIES) throw new ServiceUnavailableError();
          await sleep(Math.min(500, 20 * 2 ** attempt));
          continue;
        }
        if (!(err instanceof TransactionCanceledException)) throw err;
        const reasons = err.CancellationReasons ?? [];
        const codes = reasons.map((r) => r.Code ?? 'None');
        const item = (i: number) => (reasons[i]?.Code === 'ConditionalCheckFailed' && reasons[i]?.Item ? unmarshall(reasons[i]!.Item!) : undefined);
        // The key is judged first: with it held by a concurrent transaction the payment's verdict alone says
        // nothing about this request (it may be that request's replay), so that is retried.
        if (codes[0] === 'ConditionalCheckFailed') return { kind: 'key_taken', key: item(0) as RefundKeyRecord };
        if (codes[0] !== 'TransactionConflict' && codes[1] === 'ConditionalCheckFailed') return { kind: 'payment_refused', payment: item(1) as Payment | undefined };
        const transient = codes.some((c) => c === 'TransactionConflict' || c === 'ThrottlingError' || c === 'ProvisionedThroughputExceeded');
        if (!transient) throw err;
        if (attempt >= TRANSACTION_RETRIES) throw new ServiceUnavailableError('The payment is busy with other refunds; retry with the same Idempotency-Key');
        await sleep(Math.random() * Math.min(250, 10 * 2 ** attempt));
      }
    }
  }

  /** A payment's tenant refunds, oldest first; the cursor is the last key read (bound to the payment). */
  async listForPayment(paymentId: string, limit: number, cursor?: string): Promise<RefundPage> {
    let startKey: Record<string, unknown> | undefined;
    if (cursor !== undefined) {
      try {
        startKey = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as Record<string, unknown>;
      } catch {
        throw new InvalidCursorError();
      }
      const ok = startKey && typeof startKey === 'object' && startKey.byPayment === paymentId && typeof startKey.id === 'string' && typeof startKey.createdAt === 'string' && Object.keys(startKey).length === 3;
      if (!ok) throw new InvalidCursorError();
    }
    const res = await this.doc.send(
      new QueryCommand({
        TableName: this.tables.refunds,
        IndexName: this.need('byPaymentIndex'),
        KeyConditionExpression: 'byPayment = :p',
        ExpressionAttributeValues: { ':p': paymentId },
        ExclusiveStartKey: startKey,
        Limit: limit,
      }),
    );
    const next = res.LastEvaluatedKey ? Buffer.from(JSON.stringify(res.LastEvaluatedKey)).toString('base64url') : null;
    return { items: (res.Items ?? []) as Refund[], nextCursor: next };
  }

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
    const update = {
      TableName: this.tables.refunds,
      Key: { id: current.id },
      UpdateExpression: `SET ${sets.join(', ')}${removes.length ? ` REMOVE ${removes.join(', ')}` : ''}`,
      ConditionExpression: '#version = :v',
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    } satisfies UpdateCommandInput;
    if (current.kind === 'tenant' && current.status === 'pending' && (change.status === 'failed' || change.status === 'succeeded')) {
      return this.settleTenantRefund(current, { ...current, ...change }, update);
    }
    try {
      const { Attributes } = await this.doc.send(new UpdateCommand({ ...update, ReturnValues: 'ALL_NEW', ReturnValuesOnConditionCheckFailure: 'ALL_OLD' }));
      return Attributes as Refund;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) throw new ConcurrentUpdateError(err.Item ? unmarshall(err.Item) : undefined);
      throw err;
    }
  }

  /**
   * A tenant refund's final status and its payment's new version (audited), in one transaction. Failed also
   * gives the amount back to the payment's refundable remainder: the refund's version condition lets this
   * happen once, so the amount comes back exactly once.
   */
  private async settleTenantRefund(current: Refund, next: Refund, update: UpdateCommandInput & { ExpressionAttributeValues: Record<string, unknown> }): Promise<Refund> {
    const failed = next.status === 'failed';
    const why = failed ? `failed at the provider: ${next.failureReason ?? 'unknown'}` : 'succeeded at the provider';
    const change = refundChangeInfo(current, failed ? 'refund_failed' : 'refund_succeeded', REFUND_ACTOR, why);
    try {
      await this.doc.send(
        new TransactWriteCommand({
          TransactItems: [
            { Update: { ...update, ReturnValuesOnConditionCheckFailure: 'ALL_OLD' } as never },
            {
              Update: {
                TableName: this.need('payments'),
                Key: { id: current.paymentId },
                UpdateExpression: failed ? `SET amountRefundedMinor = amountRefundedMinor - :amt, ${NEW_PAYMENT_VERSION}` : `SET ${NEW_PAYMENT_VERSION}`,
                ConditionExpression: failed ? 'amountRefundedMinor >= :amt' : 'attribute_exists(id)',
                ExpressionAttributeNames: { '#version': 'version' },
                ExpressionAttributeValues: { ...paymentVersionValues(change, next.updatedAt), ...(failed ? { ':amt': current.amountMinor } : {}) },
              },
            },
          ],
        }),
      );
    } catch (err) {
      if (err instanceof TransactionCanceledException) {
        const first = err.CancellationReasons?.[0];
        if (first?.Code === 'ConditionalCheckFailed') throw new ConcurrentUpdateError(first.Item ? unmarshall(first.Item) : undefined);
        if (err.CancellationReasons?.some((r) => r.Code === 'TransactionConflict')) throw new ConcurrentUpdateError(undefined);
      }
      throw err;
    }
    const after = await this.get(current.id);
    if (!after) throw new ConcurrentUpdateError(undefined);
    return after;
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
