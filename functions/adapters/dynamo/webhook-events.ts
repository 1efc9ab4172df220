/**
 * Webhook events in the WebhookEvents table: pk `id` (the derived event id, so the conditional put is
 * the idempotency of the stream consumer), the event itself as its JSON text (every delivery sends the
 * same bytes: a DynamoDB map would not keep the key order), `expiresAt` for the TTL, and the tenant
 * listing index (tenantShard = `<tenantId>#<n>`, createdSort = `<created>#<id>`), newest first.
 *
 * Capacity: a tenant's events spread over EVENT_TENANT_SHARDS index partitions (n from a hash of the
 * event id), so one tenant at 10× peak writes a quarter of its events per partition (docs/capacity.md).
 * A page queries every shard for one more than it needs and merges: createdSort is unique, so the
 * newest `limit` of the merge are the newest of the tenant, and the cursor is the last one's createdSort.
 */
import { createHash } from 'node:crypto';
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { GetCommand, PutCommand, QueryCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { InvalidCursorError } from '../../core/errors';
import type { WebhookEvent } from '../../core/webhooks/events';
import type { WebhookEventPage, WebhookEventStore } from '../../core/webhooks/ports';

export const EVENT_TENANT_SHARDS = 4;

const shardOf = (tenantId: string, eventId: string): string => `${tenantId}#${createHash('sha256').update(eventId).digest()[0]! % EVENT_TENANT_SHARDS}`;

interface EventItem {
  readonly id: string;
  readonly tenantId: string;
  readonly tenantShard: string;
  readonly createdSort: string;
  readonly type: string;
  readonly event: string;
  readonly expiresAt: number;
  readonly fannedOut?: boolean;
}

export class WebhookEventRepository implements WebhookEventStore {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly tables: { readonly events: string; readonly byTenantIndex: string; readonly retentionSeconds: number },
  ) {}

  async put(event: WebhookEvent): Promise<boolean> {
    // Kept from the change it reports, so a redelivered record writes the same expiry.
    const expiresAt = Math.floor(Date.parse(event.created) / 1000) + this.tables.retentionSeconds;
    const item: EventItem = { id: event.id, tenantId: event.tenantId, tenantShard: shardOf(event.tenantId, event.id), createdSort: `${event.created}#${event.id}`, type: event.type, event: JSON.stringify(event), expiresAt };
    try {
      await this.doc.send(new PutCommand({ TableName: this.tables.events, Item: item, ConditionExpression: 'attribute_not_exists(id)' }));
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw err;
    }
  }

  async get(tenantId: string, eventId: string): Promise<WebhookEvent | undefined> {
    const { Item } = await this.doc.send(new GetCommand({ TableName: this.tables.events, Key: { id: eventId } }));
    const item = Item as EventItem | undefined;
    // Another tenant's event is not found, like a missing one.
    return item && item.tenantId === tenantId ? (JSON.parse(item.event) as WebhookEvent) : undefined;
  }

  async fannedOut(eventId: string): Promise<boolean> {
    const { Item } = await this.doc.send(new GetCommand({ TableName: this.tables.events, Key: { id: eventId }, ConsistentRead: true, ProjectionExpression: 'fannedOut' }));
    return Item?.fannedOut === true;
  }

  async markFannedOut(eventId: string): Promise<void> {
    await this.doc.send(new UpdateCommand({ TableName: this.tables.events, Key: { id: eventId }, UpdateExpression: 'SET fannedOut = :t', ExpressionAttributeValues: { ':t': true } }));
  }

  async listByTenant(tenantId: string, opts: { readonly limit: number; readonly cursor?: string }): Promise<WebhookEventPage> {
    const before = opts.cursor === undefined ? undefined : decodeCursor(opts.cursor);
    const shards = Array.from({ length: EVENT_TENANT_SHARDS }, (_, n) => `${tenantId}#${n}`);
    // limit + 1 per shard: when the merge holds more than `limit`, there is a next page.
    const pages = await Promise.all(shards.map((shard) => this.queryShard(shard, before, opts.limit + 1)));
    const merged = pages.flat().sort((a, b) => (a.createdSort < b.createdSort ? 1 : -1));
    const items = merged.slice(0, opts.limit);
    const more = merged.length > opts.limit;
    return {
      items: items.map((i) => JSON.parse(i.event) as WebhookEvent),
      nextCursor: more ? Buffer.from(items[items.length - 1]!.createdSort, 'utf8').toString('base64url') : null,
    };
  }

  /** Up to `limit` of one shard's events older than `before`, newest first. */
  private async queryShard(shard: string, before: string | undefined, limit: number): Promise<EventItem[]> {
    const rows: EventItem[] = [];
    let from: Record<string, unknown> | undefined;
    do {
      const page = await this.doc.send(
        new QueryCommand({
          TableName: this.tables.events,
          IndexName: this.tables.byTenantIndex,
          KeyConditionExpression: before === undefined ? 'tenantShard = :s' : 'tenantShard = :s AND createdSort < :b',
          ExpressionAttributeValues: { ':s': shard, ...(before === undefined ? {} : { ':b': before }) },
          ScanIndexForward: false,
          Limit: limit - rows.length,
          ...(from ? { ExclusiveStartKey: from } : {}),
        }),
      );
      rows.push(...((page.Items ?? []) as EventItem[]));
      from = page.LastEvaluatedKey;
    } while (from && rows.length < limit);
    return rows;
  }
}

function decodeCursor(cursor: string): string {
  const createdSort = Buffer.from(cursor, 'base64url').toString('utf8');
  // `<ISO instant>#evt_…`: anything else was not handed out by this listing.
  if (!/^\d{4}-\d{2}-\d{2}T[0-9:.]+Z#evt_[a-z0-9]+$/.test(createdSort)) throw new InvalidCursorError();
  return createdSort;
}
