/**
 * Payments and idempotency keys in DynamoDB. A key's first payment carries its key and is created by one
 * conditional put (insertFirst); a later generation, after the key expired, is written with a key record
 * in one transaction (insertWithKey). Every later change is a conditional update on (version, status). Failed conditions
 * return the stored item (ReturnValuesOnConditionCheckFailure), so no second read is needed.
 */
import { createHash, randomUUID } from 'node:crypto';
import {
  ConditionalCheckFailedException,
  IdempotentParameterMismatchException,
  TransactionCanceledException,
  TransactionConflictException,
  TransactionInProgressException,
} from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import {
  GetCommand,
  PutCommand,
  QueryCommand,
  TransactWriteCommand,
  UpdateCommand,
  type DynamoDBDocumentClient,
  type UpdateCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { ConcurrentUpdateError, InvalidCursorError, ServiceUnavailableError } from '../../core/errors';
import { isOpen, type Payment, type PaymentStatus } from '../../core/payment';
import type {
  IdempotencyRecord,
  FirstInsertResult,
  InsertResult,
  OpenDuePage,
  PaymentListPage,
  PaymentListQuery,
  PaymentLister,
  PaymentStore,
  TouchRequest,
  TransitionRequest,
} from '../../core/ports';
import { assertTransition } from '../../core/state-machine';
import { batchGetByIds } from './batch-get';

export type { IdempotencyRecord, InsertResult, TransitionRequest } from '../../core/ports';

/** Open payments are spread over this many index partitions so no single partition gets hot. */
export const OPEN_SHARDS = 16;

export function openShardFor(paymentId: string): string {
  const n = createHash('sha256').update(paymentId).digest().readUInt16BE(0) % OPEN_SHARDS;
  return `open#${String(n).padStart(2, '0')}`;
}

/**
 * Every versioned write appends the new version's updatedAt (epoch ms) to `versionAt`, which the audit
 * log's keys are made of (Payment.versionAt). `if_not_exists` keeps a payment written before the list
 * existed writable; its list then starts at its first version written since, is read from its end
 * (entryKeyOf), and its older entries are not keyed.
 */
export const APPEND_VERSION_TIME = 'versionAt = list_append(if_not_exists(versionAt, :noVersionTimes), :versionTime)';

export const versionTimeValues = (at: Date | string): { ':noVersionTimes': number[]; ':versionTime': number[] } => ({
  ':noVersionTimes': [],
  ':versionTime': [typeof at === 'string' ? Date.parse(at) : at.getTime()],
});

/** The IdempotencyKeys table's partition key: keys are scoped to their tenant. */
export const keyPk = (tenantId: string, key: string): string => `${tenantId}#${key}`;

/**
 * Each tenant's payments are spread over this many partitions of the by-tenant index, picked by a hash
 * of the payment id. Every payment version rewrites its index entry (projection ALL), about four per
 * payment: one tenant at the whole 10x peak (~1,160 creates/s) is ~4,600 WCU/s, ~580 per partition.
 */
export const TENANT_SHARDS = 8;

export function tenantShardFor(tenantId: string, paymentId: string): string {
  const n = createHash('sha256').update(paymentId).digest().readUInt16BE(2) % TENANT_SHARDS;
  return `${tenantId}#${n}`;
}

/** Sort key of the by-tenant index: creation time, then id, so no two payments tie. */
export const createdSortFor = (p: Pick<Payment, 'createdAt' | 'id'>): string => `${p.createdAt}#${p.id}`;

export const openPartitions = (): string[] => Array.from({ length: OPEN_SHARDS }, (_, n) => `open#${String(n).padStart(2, '0')}`);

export interface PaymentTables {
  readonly payments: string;
  readonly idempotency: string;
  readonly openPaymentsIndex: string;
  /** Needed only by functions that list payments. */
  readonly byTenantIndex?: string;
}

/** A listing reads at most this many rounds of shard queries per request, so its cost is bounded. */
const LIST_ROUNDS = 4;
const ALL_SHARDS_DONE = 2 ** TENANT_SHARDS - 1;
const MAX_LIST_CURSOR_CHARS = 1024;

/** Where a listing stopped: everything sorted at or after `before` was returned; `done` shards are exhausted. */
interface ListPosition {
  readonly before?: string;
  readonly done: number;
}

/** The cursor names the tenant by a hash (so it does not expose it) and the filter it was minted for. */
const tenantTag = (tenantId: string) => createHash('sha256').update(`list-cursor\u0000${tenantId}`).digest('base64url').slice(0, 22);

export function encodeListCursor(tenantId: string, status: PaymentStatus | undefined, pos: ListPosition): string {
  return Buffer.from(JSON.stringify({ v: 1, t: tenantTag(tenantId), s: status ?? null, b: pos.before ?? null, d: pos.done })).toString('base64url');
}

/** Decodes a listing cursor; a malformed one, or one minted for another tenant or status filter, is INVALID_CURSOR. */
export function decodeListCursor(cursor: string, tenantId: string, status: PaymentStatus | undefined): ListPosition {
  if (cursor.length > MAX_LIST_CURSOR_CHARS || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw new InvalidCursorError();
  let c: unknown;
  try {
    c = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new InvalidCursorError();
  }
  if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new InvalidCursorError();
  const o = c as Record<string, unknown>;
  const shapeOk =
    Object.keys(o).length === 5 &&
    o.v === 1 &&
    (o.b === null || (typeof o.b === 'string' && o.b.length > 0)) &&
    Number.isInteger(o.d) &&
    (o.d as number) >= 0 &&
    (o.d as number) <= ALL_SHARDS_DONE;
  if (!shapeOk) throw new InvalidCursorError();
  if (o.t !== tenantTag(tenantId)) throw new InvalidCursorError('The cursor belongs to another API key');
  if (o.s !== (status ?? null)) throw new InvalidCursorError('The cursor was made for another status filter');
  return { ...(o.b !== null ? { before: o.b as string } : {}), done: o.d as number };
}

const TRANSACTION_RETRIES = 8;

/**
 * The TransactWriteItems ClientRequestToken of one create call: derived from the request (tenant, key,
 * generation, request hash) and the call's writeId. A resend of that very write (the SDK's retry after
 * a lost response, or our retry of a transaction conflict) carries the same token, so DynamoDB (for 10
 * minutes) answers it with success instead of failing its conditions as if it were a replay; the
 * payment is then queued. Another call, even an identical request in the same millisecond, has its own
 * writeId and is evaluated normally (a replay, answered from the failed conditions).
 */
export function createRequestToken(key: Pick<IdempotencyRecord, 'tenantId' | 'idempotencyKey' | 'generation' | 'requestHash'>, writeId: string): string {
  return createHash('sha256')
    .update([key.tenantId, key.idempotencyKey, String(key.generation), key.requestHash, writeId].join('\u0000'))
    .digest('base64url')
    .slice(0, 36);
}

export class PaymentRepository implements PaymentStore, PaymentLister {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly tables: PaymentTables,
  ) {}

  async get(id: string): Promise<Payment | undefined> {
    const { Item } = await this.doc.send(new GetCommand({ TableName: this.tables.payments, Key: { id }, ConsistentRead: true }));
    return Item as Payment | undefined;
  }

  /** Up to 100 ids per BatchGetItem, read consistently; unprocessed keys are asked again until none are left. */
  async getMany(ids: readonly string[]): Promise<Map<string, Payment>> {
    const items = await batchGetByIds(this.doc, this.tables.payments, ids, { consistent: true });
    return new Map(items.map((item) => [String(item.id), item as unknown as Payment]));
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
   * Creates the first payment of a key in one conditional PutItem: the item is the key's record too
   * (keyExpiresAt, requestHash), so key and payment cannot exist one without the other. When the id is
   * taken, the stored item comes back with the failed condition (one round trip). The item keeps this
   * call's writeId: a put whose answer was lost and which the SDK sent again finds its own item, which
   * is this call's create, not a replay of it. A transaction in flight on the item (another writer's)
   * is waited out like the transaction's conflicts.
   */
  async insertFirst(newPayment: Payment, writeId: string): Promise<FirstInsertResult> {
    const item = { ...this.storedForm(newPayment), writeId };
    for (let attempt = 0; ; attempt++) {
      try {
        await this.doc.send(
          new PutCommand({
            TableName: this.tables.payments,
            Item: item,
            ConditionExpression: 'attribute_not_exists(id)',
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        );
        return { kind: 'created' };
      } catch (err) {
        if (err instanceof ConditionalCheckFailedException) {
          const stored = (err.Item ? unmarshall(err.Item) : await this.get(newPayment.id)) as (Payment & { writeId?: string }) | undefined;
          if (!stored) throw new ServiceUnavailableError();
          if (stored.writeId === writeId) return { kind: 'created' };
          return { kind: 'exists', payment: stored };
        }
        if (!(err instanceof TransactionConflictException)) throw err;
        if (attempt >= TRANSACTION_RETRIES) throw new ServiceUnavailableError();
        await conflictPause(attempt);
      }
    }
  }

  /** The payment as stored: with the attributes its indexes are keyed on. */
  private storedForm(p: Payment): Payment & Record<string, unknown> {
    return { ...p, openShard: openShardFor(p.id), tenantShard: tenantShardFor(p.tenantId, p.id), createdSort: createdSortFor(p) };
  }

  /**
   * Writes the key record and the new payment atomically. The key may be taken only if absent or
   * expired; the payment id must be unused. Transaction conflicts with concurrent identical requests
   * are retried with jitter; the loser then sees the winner's records.
   */
  async insertWithKey(newPayment: Payment, key: IdempotencyRecord, nowEpochSeconds: number, writeId: string = randomUUID()): Promise<InsertResult> {
    const keyItem = { ...key, pk: keyPk(key.tenantId, key.idempotencyKey) };
    const payment = this.storedForm(newPayment);
    const token = createRequestToken(key, writeId);
    for (let attempt = 0; ; attempt++) {
      try {
        await this.doc.send(
          new TransactWriteCommand({
            ClientRequestToken: token,
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
        if (err instanceof IdempotentParameterMismatchException) {
          // This token was used with other values (a caller reusing a writeId): whatever that write
          // stored is read back and treated like a failed condition.
          const [storedKey, stored] = await Promise.all([this.getKey(key.tenantId, key.idempotencyKey), this.get(newPayment.id)]);
          const live = storedKey && storedKey.expiresAt > nowEpochSeconds ? storedKey : undefined;
          if (live || stored) return { kind: 'conflict', key: live, payment: stored };
          throw new ServiceUnavailableError();
        }
        if (err instanceof TransactionInProgressException) {
          // The first send of this very write is still being applied: wait for it, then resend.
          if (attempt >= TRANSACTION_RETRIES) throw new ServiceUnavailableError();
          await sleep(Math.min(500, 20 * 2 ** attempt));
          continue;
        }
        if (!(err instanceof TransactionCanceledException)) throw err;
        const reasons = err.CancellationReasons ?? [];
        const codes = reasons.map((r) => r.Code ?? 'None');
        // A failed condition is an answer only when the key item was judged too: with the key held by
        // a concurrent transaction (TransactionConflict), the payment's failed condition alone would read
        // as "key free, payment exists" and make the caller create the next generation (a second payment
        // for one key). Such a cancellation is retried like any other conflict.
        if (codes.includes('ConditionalCheckFailed') && codes[0] !== 'TransactionConflict') {
          const item = (i: number) => (reasons[i]?.Code === 'ConditionalCheckFailed' && reasons[i]?.Item ? unmarshall(reasons[i]!.Item!) : undefined);
          return { kind: 'conflict', key: item(0) as IdempotencyRecord | undefined, payment: item(1) as Payment | undefined };
        }
        const transient = codes.some((c) => c === 'TransactionConflict' || c === 'ThrottlingError' || c === 'ProvisionedThroughputExceeded');
        if (!transient || attempt >= TRANSACTION_RETRIES) {
          if (transient) throw new ServiceUnavailableError();
          throw err;
        }
        await conflictPause(attempt);
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
      ...versionTimeValues(req.now),
    };
    const sets = ['#status = :to', '#version = :next', 'updatedAt = :now', 'lastChange = :change', APPEND_VERSION_TIME];
    const removes: string[] = [];
    let i = setAttributes(req.set, names, values, sets);
    for (const k of req.remove ?? []) {
      names[`#a${i}`] = k;
      removes.push(`#a${i}`);
      i++;
    }
    if (isOpen(req.to)) {
      // Only what changes is written: the open-payments index is keyed on these, and an update that
      // leaves them out cannot touch the index whatever DynamoDB does with an unchanged value. The
      // version condition makes `current` the stored item except for dueAt, which postpone() moves at
      // the same version and only ever later: when the read dueAt equals the wanted one and is left
      // out, the stored dueAt is that or later, so the payment is looked at no sooner than the
      // reconciler last decided, never skipped.
      const due = req.dueAt ?? Date.parse(req.now.toISOString());
      if (current.openShard === undefined) {
        values[':shard'] = openShardFor(current.id);
        sets.push('openShard = :shard');
      }
      if (current.dueAt !== due) {
        values[':due'] = due;
        sets.push('dueAt = :due');
      }
    } else {
      removes.push('openShard', 'dueAt', 'leaseUntil');
    }
    let condition = '#version = :v AND #status = :from';
    if (req.set?.intentId !== undefined) {
      // recordIntent stores an intent id without a new version, so the version read does not prove the
      // stored item holds no other intent: a transition may store one only where none, or this one, is.
      values[':keepIntent'] = req.set.intentId;
      condition += ' AND (attribute_not_exists(intentId) OR intentId = :keepIntent)';
    }
    return this.conditionalUpdate(current.id, {
      UpdateExpression: `SET ${sets.join(', ')}${removes.length ? ` REMOVE ${removes.join(', ')}` : ''}`,
      ConditionExpression: condition,
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
      ...versionTimeValues(req.now),
    };
    const sets = ['#version = :next', 'updatedAt = :now', 'lastChange = :change', APPEND_VERSION_TIME];
    let condition = '#version = :v AND #status = :s';
    if (req.dueAt !== undefined) {
      values[':due'] = req.dueAt;
      sets.push('dueAt = :due');
      condition += ' AND attribute_exists(openShard)';
    }
    setAttributes(req.set, names, values, sets);
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

  async recordIntent(current: Payment, intentId: string): Promise<Payment> {
    // Same version: bookkeeping of the attempt that holds the payment, not a new state; the audit stream
    // skips a record whose version did not change, and the next version carries the id.
    return this.conditionalUpdate(current.id, {
      UpdateExpression: 'SET intentId = :i',
      ConditionExpression: '#version = :v AND #status = :s AND (attribute_not_exists(intentId) OR intentId = :i)',
      ExpressionAttributeNames: { '#version': 'version', '#status': 'status' },
      ExpressionAttributeValues: { ':v': current.version, ':s': current.status, ':i': intentId },
    });
  }

  /**
   * A tenant's payments, newest first, merged from its index shards. Each round queries every shard not
   * yet exhausted for the items sorted before the cursor's position; an item is returned only when no
   * shard can still hold a newer one (it sorts at or after every shard's read frontier), so the merge is
   * exact whatever the status filter discards. The next position is one sort key for all shards.
   */
  async listByTenant(q: PaymentListQuery): Promise<PaymentListPage> {
    const index = this.tables.byTenantIndex;
    if (!index) throw new Error('PaymentRepository: byTenantIndex is not configured');
    let { before, done } = q.cursor ? decodeListCursor(q.cursor, q.tenantId, q.status) : { before: undefined, done: 0 };
    const items: Payment[] = [];
    for (let round = 0; round < LIST_ROUNDS && items.length < q.limit && done !== ALL_SHARDS_DONE; round++) {
      const want = q.limit - items.length;
      const shards = Array.from({ length: TENANT_SHARDS }, (_, n) => n).filter((n) => (done & (1 << n)) === 0);
      const pages = await Promise.all(shards.map((n) => this.queryShard(index, `${q.tenantId}#${n}`, before, q.status, want)));
      // The newest frontier among shards with more to read: nothing older than it is known to be complete.
      let cut: string | undefined;
      for (const page of pages) if (page.frontier !== undefined && (cut === undefined || page.frontier > cut)) cut = page.frontier;
      const eligible = pages
        .flatMap((p) => p.items)
        .filter((p) => cut === undefined || sortOf(p) >= cut)
        .sort((a, b) => (sortOf(a) < sortOf(b) ? 1 : -1));
      const taken = eligible.slice(0, want);
      items.push(...taken);
      before = taken.length === want ? sortOf(taken[taken.length - 1]!) : cut;
      // A shard is done once its query ran out and every item it returned is in a page.
      pages.forEach((page, i) => {
        if (page.frontier === undefined && page.items.every((p) => before === undefined || sortOf(p) >= before)) done |= 1 << shards[i]!;
      });
      if (before === undefined) done = ALL_SHARDS_DONE;
    }
    return { items, nextCursor: done === ALL_SHARDS_DONE ? null : encodeListCursor(q.tenantId, q.status, { before, done }) };
  }

  private async queryShard(index: string, shard: string, before: string | undefined, status: PaymentStatus | undefined, limit: number) {
    const values: Record<string, unknown> = { ':p': shard };
    if (before !== undefined) values[':b'] = before;
    const res = await this.doc.send(
      new QueryCommand({
        TableName: this.tables.payments,
        IndexName: index,
        KeyConditionExpression: before !== undefined ? 'tenantShard = :p AND createdSort < :b' : 'tenantShard = :p',
        ExpressionAttributeValues: values,
        ScanIndexForward: false,
        Limit: limit,
      }),
    );
    // The index holds keys only: the payments are read by id (consistently, so a listing never shows a
    // status older than a read of the payment would), then filtered by status as the query's filter was.
    const found = await this.getMany((res.Items ?? []).map((k) => String(k.id)));
    const items = [...found.values()].filter((p) => status === undefined || p.status === status) as Array<Payment & { createdSort: string }>;
    // Everything in this shard sorted at or after the frontier has been read; undefined: nothing is left.
    return { items, frontier: res.LastEvaluatedKey ? String(res.LastEvaluatedKey.createdSort) : undefined };
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
    // The index holds keys only: the payments are read whole, as they are now. One that
    // has closed, or whose due time moved past the bound, since the index was read is not due any more.
    const current = await this.getMany((res.Items ?? []).map((k) => String(k.id)));
    const items = [...current.values()].filter((p) => p.openShard === shard && p.dueAt !== undefined && p.dueAt <= dueBefore);
    return { items, ...(res.LastEvaluatedKey ? { next: res.LastEvaluatedKey } : {}), scanned: res.ScannedCount ?? 0 };
  }
}

/** Adds `#aN = :aN` for each defined attribute; returns the next free N. */
function setAttributes(set: object | undefined, names: Record<string, string>, values: Record<string, unknown>, sets: string[]): number {
  let i = 0;
  for (const [k, v] of Object.entries(set ?? {})) {
    if (v === undefined) continue;
    names[`#a${i}`] = k;
    values[`:a${i}`] = v;
    sets.push(`#a${i} = :a${i}`);
    i++;
  }
  return i;
}

const sortOf = (p: Payment): string => (p as Payment & { createdSort?: string }).createdSort ?? createdSortFor(p);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A jittered pause, growing to 200 ms, before a write that met another writer's transaction tries again. */
const conflictPause = (attempt: number) => sleep(Math.random() * Math.min(200, 10 * 2 ** attempt));
