/**
 * The principals table: API key id → who the key is (`tenant:<id>` or `operator:<name>`), written by the
 * tenants command (scripts/tenants.ts) when it creates, rotates or revokes a key, read by every API
 * function on each request through a short cache. Tenants and their keys change without a deploy.
 *
 * Item: { apiKeyId, principal, status: 'active' | 'revoked', keyName?, createdAt, updatedAt, revokedAt? }.
 * A key that is absent or revoked is refused (403); API Gateway refuses a deleted key before it gets
 * here, so the table is the second gate, and the one that says who the caller is.
 */
import { GetCommand, PutCommand, ScanCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { parsePrincipal, type Principal, type PrincipalDirectory } from '../../core/principal';

export interface PrincipalRecord {
  readonly apiKeyId: string;
  /** `tenant:<id>` or `operator:<name>`. */
  readonly principal: string;
  readonly status: 'active' | 'revoked';
  readonly keyName?: string;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly revokedAt?: string;
}

export class PrincipalsTable {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  async get(apiKeyId: string): Promise<PrincipalRecord | undefined> {
    const r = await this.db.send(new GetCommand({ TableName: this.table, Key: { apiKeyId } }));
    return r.Item as PrincipalRecord | undefined;
  }

  /** Records a new key's principal; refuses to overwrite another key id's record. */
  async add(apiKeyId: string, principal: Principal, keyName: string, now = new Date()): Promise<PrincipalRecord> {
    const item: PrincipalRecord = { apiKeyId, principal: principalText(principal), status: 'active', keyName, createdAt: now.toISOString(), updatedAt: now.toISOString() };
    await this.db.send(new PutCommand({ TableName: this.table, Item: item, ConditionExpression: 'attribute_not_exists(apiKeyId)' }));
    return item;
  }

  /** Marks the key revoked: from the next cache refresh on, every function refuses it. Idempotent. */
  async revoke(apiKeyId: string, now = new Date()): Promise<void> {
    await this.db.send(
      new UpdateCommand({
        TableName: this.table,
        Key: { apiKeyId },
        UpdateExpression: 'SET #s = :revoked, updatedAt = :now, revokedAt = if_not_exists(revokedAt, :now)',
        ConditionExpression: 'attribute_exists(apiKeyId)',
        ExpressionAttributeNames: { '#s': 'status' },
        ExpressionAttributeValues: { ':revoked': 'revoked', ':now': now.toISOString() },
      }),
    );
  }

  /** Every record (an operator's listing: a few hundred keys at most). */
  async list(): Promise<PrincipalRecord[]> {
    const out: PrincipalRecord[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const r = await this.db.send(new ScanCommand({ TableName: this.table, ...(start ? { ExclusiveStartKey: start } : {}) }));
      out.push(...((r.Items ?? []) as PrincipalRecord[]));
      start = r.LastEvaluatedKey;
    } while (start);
    return out.sort((a, b) => a.principal.localeCompare(b.principal) || a.createdAt.localeCompare(b.createdAt));
  }
}

export const principalText = (p: Principal): string => (p.kind === 'tenant' ? `tenant:${p.tenantId}` : `operator:${p.name}`);

/**
 * The API functions' view of the table: one GetItem per key id, kept `cacheSeconds` in the function
 * instance (a revoked key may work that much longer in an instance that saw it; API Gateway refuses a
 * deleted key at once). Unknown ids are cached for a shorter time, so a key just added works soon.
 */
export class CachedPrincipalDirectory implements PrincipalDirectory {
  /** Key id → the lookup (in flight or done) and until when it may be used: concurrent requests share one read. */
  private readonly cache = new Map<string, { lookup: Promise<Principal | undefined>; until: number }>();

  constructor(
    private readonly table: Pick<PrincipalsTable, 'get'>,
    private readonly opts: { cacheSeconds: number; missCacheSeconds?: number; now?: () => number },
  ) {}

  resolve(apiKeyId: string): Promise<Principal | undefined> {
    const now = (this.opts.now ?? Date.now)();
    const hit = this.cache.get(apiKeyId);
    if (hit && hit.until > now) return hit.lookup;
    if (this.cache.size > 10_000) this.cache.clear();
    const entry = { lookup: this.read(apiKeyId), until: Number.POSITIVE_INFINITY };
    this.cache.set(apiKeyId, entry);
    entry.lookup.then(
      (principal) => {
        const seconds = principal ? this.opts.cacheSeconds : Math.min(this.opts.cacheSeconds, this.opts.missCacheSeconds ?? 5);
        entry.until = (this.opts.now ?? Date.now)() + seconds * 1000;
      },
      () => {
        // A failed read is not remembered: the next request reads again.
        if (this.cache.get(apiKeyId) === entry) this.cache.delete(apiKeyId);
      },
    );
    return entry.lookup;
  }

  private async read(apiKeyId: string): Promise<Principal | undefined> {
    const record = await this.table.get(apiKeyId);
    return record?.status === 'active' ? parsePrincipal(record.principal) : undefined;
  }
}
