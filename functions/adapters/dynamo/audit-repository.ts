/**
 * The AuditLog table, keyed (tenantShard, tenantSort): a tenant's entries in time order over
 * AUDIT_TENANT_SHARDS partitions (tenantShardKey), with no index. One entry's key is computed from its
 * payment (auditKeyOf / entryKeyOf in core/audit.ts): a payment's own entries are read by key from the
 * update times it keeps (`versionAt`), so neither listing searches.
 *
 * Append policy: an entry is written once, with `attribute_not_exists(tenantShard)` on its key, and is
 * never overwritten or deleted by this code.
 * - No entry yet → written.
 * - The same entry already there (stream redelivery, retried batch) → 'duplicate', a success.
 * - A DIFFERENT entry already there → 'conflict': the stored entry is kept (append-only; it is the one
 *   the next version already links to or will link to), the clash is logged at error level with both
 *   hashes (message "audit entry conflict", code AUDIT_ENTRY_CONFLICT, for a metric filter/alarm), and
 *   the caller gets the stored entry back. It is not an error for the caller: retrying cannot resolve
 *   it and failing would hold every later record of the shard. Causes are tampering with the stored
 *   entry or its predecessor, or entry building that changed between two deliveries; verification of
 *   the chain then tells which.
 *
 * Listing pages are opaque cursors: base64url of the JSON of the last returned item's position. Each
 * page reads one item more than it returns, so a cursor is given only when another item exists.
 */
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { GetCommand, PutCommand, QueryCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { entryKeyOf, tenantShardsOf, verifyChain, type AuditEntry, type AuditKey, type ChainVerification, type PaymentAuditRef } from '../../core/audit';
import { AppError, InvalidCursorError } from '../../core/errors';
import { canonicalJson } from '../../core/fingerprint';
import { logger } from '../../shared/logger';
import { BATCH_GET_MAX_KEYS as BATCH_KEYS, batchGetByKeys } from './batch-get';

export type SortOrder = 'asc' | 'desc';

export interface AuditPage {
  readonly entries: AuditEntry[];
  readonly nextCursor: string | null;
}

export interface PaymentListOptions {
  readonly limit?: number;
  readonly cursor?: string;
  readonly order?: SortOrder;
}

export interface TenantListOptions extends PaymentListOptions {
  /** ISO 8601 instant, inclusive. */
  readonly from?: string;
  /** ISO 8601 instant, inclusive. */
  readonly to?: string;
}

export type AppendResult =
  | { readonly status: 'written' }
  | { readonly status: 'duplicate' }
  | { readonly status: 'conflict'; readonly existing: AuditEntry };

/** What the stream handler needs. */
export interface AuditWriter {
  append(entry: AuditEntry): Promise<AppendResult>;
  get(key: AuditKey): Promise<AuditEntry | undefined>;
}

/** What the API and the verifier need. */
export interface AuditReader {
  get(key: AuditKey): Promise<AuditEntry | undefined>;
  listForPayment(payment: PaymentAuditRef, opts?: PaymentListOptions): Promise<AuditPage>;
  listForTenant(tenantId: string, opts?: TenantListOptions): Promise<AuditPage>;
}

export interface AuditTables {
  readonly audit: string;
}

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;
const MAX_CURSOR_CHARS = 2048;

export { InvalidCursorError };

type Key = Record<string, string | number>;

export function encodeCursor(key: Key): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
}

/**
 * Decodes a cursor and checks it is a key of the expected shape: exactly the listed attributes with
 * the listed types, and the partition values fixed by the query (so a cursor cannot reach another
 * payment or tenant).
 */
export function decodeCursor(
  cursor: string,
  shape: Record<string, 'string' | 'number'>,
  fixed: Record<string, string>,
): Key {
  if (cursor.length === 0 || cursor.length > MAX_CURSOR_CHARS || !/^[A-Za-z0-9_-]+$/.test(cursor)) {
    throw new InvalidCursorError();
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new InvalidCursorError();
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new InvalidCursorError();
  const obj = parsed as Record<string, unknown>;
  const keys = Object.keys(obj);
  if (keys.length !== Object.keys(shape).length) throw new InvalidCursorError();
  for (const [name, type] of Object.entries(shape)) {
    const v = obj[name];
    if (type === 'number' ? !(Number.isSafeInteger(v) && (v as number) >= 1) : typeof v !== 'string' || v.length === 0) {
      throw new InvalidCursorError();
    }
  }
  for (const [name, value] of Object.entries(fixed)) if (obj[name] !== value) throw new InvalidCursorError();
  return obj as Key;
}

function pageSize(limit: number | undefined): number {
  const n = limit ?? DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(n) || n < 1 || n > MAX_PAGE_SIZE) {
    throw new AppError('INVALID_QUERY_PARAMETER', `limit must be an integer from 1 to ${MAX_PAGE_SIZE}`, 400);
  }
  return n;
}

export class AuditRepository implements AuditReader, AuditWriter {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly tables: AuditTables,
  ) {}

  async append(entry: AuditEntry): Promise<AppendResult> {
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.tables.audit,
          Item: entry,
          ConditionExpression: 'attribute_not_exists(tenantShard)',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return { status: 'written' };
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
      const existing = err.Item ? (unmarshall(err.Item) as AuditEntry) : await this.get(entry);
      if (!existing) throw err; // the condition failed, so an item exists; never expected
      if (canonicalJson(existing) === canonicalJson(entry)) return { status: 'duplicate' };
      logger.error('audit entry conflict', {
        code: 'AUDIT_ENTRY_CONFLICT',
        paymentId: entry.paymentId,
        version: entry.version,
        storedHash: existing.hash,
        newHash: entry.hash,
        storedPrevHash: existing.prevHash,
        newPrevHash: entry.prevHash,
      });
      return { status: 'conflict', existing };
    }
  }

  async get(key: AuditKey): Promise<AuditEntry | undefined> {
    const { Item } = await this.doc.send(
      new GetCommand({ TableName: this.tables.audit, Key: { tenantShard: key.tenantShard, tenantSort: key.tenantSort }, ConsistentRead: true }),
    );
    return Item as AuditEntry | undefined;
  }

  /**
   * A payment's entries by version, read by key (consistent BatchGetItem) from the update times the
   * payment keeps. A version whose entry is not written yet (the stream trails the table) is skipped;
   * the page is then shorter, never wrong. The cursor is the last returned version.
   */
  async listForPayment(payment: PaymentAuditRef, opts: PaymentListOptions = {}): Promise<AuditPage> {
    const limit = pageSize(opts.limit);
    const asc = (opts.order ?? 'asc') === 'asc';
    const start = opts.cursor ? (decodeCursor(opts.cursor, { paymentId: 'string', version: 'number' }, { paymentId: payment.id }).version as number) : undefined;
    const versions: number[] = [];
    if (asc) for (let v = (start ?? 0) + 1; v <= payment.version; v++) versions.push(v);
    else for (let v = Math.min(start === undefined ? payment.version : start - 1, payment.version); v >= 1; v--) versions.push(v);
    const found: AuditEntry[] = [];
    // Each read asks only for the versions the page still needs (one more than the limit, to know if a
    // next page exists): a read costs per key, and entries are rarely missing.
    for (let i = 0; i < versions.length && found.length <= limit; ) {
      const chunk = versions.slice(i, i + Math.min(BATCH_KEYS, limit + 1 - found.length));
      i += chunk.length;
      const keys = chunk.map((v) => entryKeyOf(payment, v)).filter((k): k is AuditKey => k !== undefined);
      const got = await this.getMany(keys);
      for (const v of chunk) {
        const e = got.get(v);
        if (e) found.push(e);
      }
    }
    return this.page(found.slice(0, limit + 1), limit, (e) => ({ paymentId: e.paymentId, version: e.version }));
  }

  /** Entries by key, consistently, by version (all belong to one payment). */
  private async getMany(keys: readonly AuditKey[]): Promise<Map<number, AuditEntry>> {
    const items = await batchGetByKeys(
      this.doc,
      this.tables.audit,
      keys.map((k) => ({ tenantShard: k.tenantShard, tenantSort: k.tenantSort })),
      { consistent: true },
    );
    return new Map((items as unknown as AuditEntry[]).map((e) => [e.version, e]));
  }

  /**
   * A tenant's entries in a time range, newest first by default. The table partitions a tenant into
   * AUDIT_TENANT_SHARDS shards, so this is a scatter-gather: each shard is asked for up to limit + 1
   * entries past the cursor, and the merge by tenantSort (unique: time, payment, version) returns the
   * first `limit`. The cursor is the last returned entry's tenantSort, valid for every shard alike.
   */
  async listForTenant(tenantId: string, opts: TenantListOptions = {}): Promise<AuditPage> {
    const limit = pageSize(opts.limit);
    const asc = (opts.order ?? 'desc') === 'asc';
    const after = opts.cursor ? (decodeCursor(opts.cursor, { tenantId: 'string', tenantSort: 'string' }, { tenantId }).tenantSort as string) : undefined;
    // tenantSort starts with the ISO timestamp; '$' sorts after '#', so `${to}$` includes `to` itself.
    const lo = opts.from;
    const hi = opts.to !== undefined ? `${opts.to}$` : undefined;
    // A cursor from another range: reject it as a 400 rather than answer something odd.
    if (after !== undefined && ((lo !== undefined && after < lo) || (hi !== undefined && after > hi))) throw new InvalidCursorError();
    // The range still to read: past the cursor in the reading direction.
    const from = asc ? (after ?? lo) : lo;
    const to = asc ? hi : (after ?? hi);
    const exclusive = (sort: string) => sort !== after;

    const perShard = await Promise.all(tenantShardsOf(tenantId).map((shard) => this.shardPage(shard, from, to, asc, limit + 1, exclusive)));
    const merged = perShard.flat().sort((a, b) => (a.tenantSort < b.tenantSort ? -1 : a.tenantSort > b.tenantSort ? 1 : 0) * (asc ? 1 : -1));
    return this.page(merged.slice(0, limit + 1), limit, (e) => ({ tenantId, tenantSort: e.tenantSort }));
  }

  /** Up to `want` entries of one shard in [from, to] (either open), in order, skipping the cursor's own entry. */
  private async shardPage(shard: string, from: string | undefined, to: string | undefined, asc: boolean, want: number, keep: (sort: string) => boolean): Promise<AuditEntry[]> {
    const values: Record<string, string> = { ':t': shard };
    let range = '';
    if (from !== undefined && to !== undefined) {
      range = ' AND tenantSort BETWEEN :from AND :to';
      values[':from'] = from;
      values[':to'] = to;
    } else if (from !== undefined) {
      range = ' AND tenantSort >= :from';
      values[':from'] = from;
    } else if (to !== undefined) {
      range = ' AND tenantSort <= :to';
      values[':to'] = to;
    }
    if (from !== undefined && to !== undefined && from > to) return [];
    const out: AuditEntry[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const res = await this.doc.send(
        new QueryCommand({
          TableName: this.tables.audit,
          KeyConditionExpression: `tenantShard = :t${range}`,
          ExpressionAttributeValues: values,
          ScanIndexForward: asc,
          ExclusiveStartKey: start,
          // One more than wanted covers the cursor's own entry, which the inclusive range returns again.
          Limit: want + 1,
        }),
      );
      for (const e of (res.Items ?? []) as AuditEntry[]) if (keep(e.tenantSort)) out.push(e);
      start = res.LastEvaluatedKey;
    } while (start && out.length < want);
    return out.slice(0, want);
  }

  private page(items: AuditEntry[], limit: number, keyOf: (e: AuditEntry) => Key): AuditPage {
    const entries = items.slice(0, limit);
    const more = items.length > limit;
    return { entries, nextCursor: more ? encodeCursor(keyOf(entries[entries.length - 1]!)) : null };
  }
}

/** Every entry of a payment, in version order. */
export async function allEntriesForPayment(repo: Pick<AuditReader, 'listForPayment'>, payment: PaymentAuditRef): Promise<AuditEntry[]> {
  const out: AuditEntry[] = [];
  let cursor: string | undefined;
  do {
    const page = await repo.listForPayment(payment, { limit: MAX_PAGE_SIZE, cursor, order: 'asc' });
    out.push(...page.entries);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return out;
}

/** Reads a payment's whole audit chain and verifies it (see verifyChain). */
export async function verifyPaymentAudit(repo: Pick<AuditReader, 'listForPayment'>, payment: PaymentAuditRef): Promise<ChainVerification> {
  return verifyChain(await allEntriesForPayment(repo, payment));
}
