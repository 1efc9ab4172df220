/**
 * Webhook events in the WebhookEvents table: pk `id` (the derived event id, so the conditional put is
 * the idempotency of the stream consumer), the event itself as its JSON text (every delivery sends the
 * same bytes: a DynamoDB map would not keep the key order), `expiresAt` for the TTL, and the tenant
 * listing index (tenantId, createdSort = `<created>#<id>`), newest first.
 *
 * Capacity: the index partition is the tenant. One tenant's events are a fraction of its payments'
 * writes (final states only), but a tenant notifying over ~1,000 events/s would need the index sharded
 * as the payments listing is (docs/capacity.md).
 */
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { GetCommand, PutCommand, QueryCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { InvalidCursorError } from '../../core/errors';
import type { WebhookEvent } from '../../core/webhooks/events';
import type { WebhookEventPage, WebhookEventStore } from '../../core/webhooks/ports';

interface EventItem {
  readonly id: string;
  readonly tenantId: string;
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
    const item: EventItem = { id: event.id, tenantId: event.tenantId, createdSort: `${event.created}#${event.id}`, type: event.type, event: JSON.stringify(event), expiresAt };
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

  /**
   * One more item than asked is read, so the last page says so (nextCursor null) instead of handing out a
   * cursor to an empty page, which a bare LastEvaluatedKey would.
   */
  async listByTenant(tenantId: string, opts: { readonly limit: number; readonly cursor?: string }): Promise<WebhookEventPage> {
    const start = opts.cursor === undefined ? undefined : decodeCursor(opts.cursor, tenantId);
    const rows: EventItem[] = [];
    let from: Record<string, unknown> | undefined = start;
    do {
      const page = await this.doc.send(
        new QueryCommand({
          TableName: this.tables.events,
          IndexName: this.tables.byTenantIndex,
          KeyConditionExpression: 'tenantId = :t',
          ExpressionAttributeValues: { ':t': tenantId },
          ScanIndexForward: false,
          Limit: opts.limit + 1 - rows.length,
          ...(from ? { ExclusiveStartKey: from } : {}),
        }),
      );
      rows.push(...((page.Items ?? []) as EventItem[]));
      from = page.LastEvaluatedKey;
    } while (from && rows.length <= opts.limit);
    const items = rows.slice(0, opts.limit);
    const last = items[items.length - 1];
    const more = rows.length > opts.limit;
    return {
      items: items.map((i) => JSON.parse(i.event) as WebhookEvent),
      nextCursor: more && last ? Buffer.from(JSON.stringify([last.createdSort, last.id]), 'utf8').toString('base64url') : null,
    };
  }
}

function decodeCursor(cursor: string, tenantId: string): Record<string, string> {
  try {
    const [createdSort, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[];
    if (typeof createdSort === 'string' && typeof id === 'string') return { id, tenantId, createdSort };
  } catch {
    // fall through
  }
  throw new InvalidCursorError();
}
