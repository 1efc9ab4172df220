/**
 * Webhook endpoints in the WebhookEndpoints table: pk `tenantId`, sk `id`, so a tenant's endpoints are
 * one Query (the fan-out of every event reads them) and another tenant's id is simply not found. The
 * secrets live here (the table is encrypted with the stage's data key); the API shows them only in the
 * answers to create and rotate.
 */
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, GetCommand, PutCommand, QueryCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { WebhookEndpoint } from '../../core/webhooks/endpoints';
import type { WebhookEndpointStore } from '../../core/webhooks/ports';

export class WebhookEndpointRepository implements WebhookEndpointStore {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  async create(endpoint: WebhookEndpoint): Promise<void> {
    await this.doc.send(new PutCommand({ TableName: this.table, Item: endpoint, ConditionExpression: 'attribute_not_exists(id)' }));
  }

  async get(tenantId: string, id: string): Promise<WebhookEndpoint | undefined> {
    const { Item } = await this.doc.send(new GetCommand({ TableName: this.table, Key: { tenantId, id }, ConsistentRead: true }));
    return Item as WebhookEndpoint | undefined;
  }

  async list(tenantId: string): Promise<WebhookEndpoint[]> {
    const items: WebhookEndpoint[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const page = await this.doc.send(
        new QueryCommand({
          TableName: this.table,
          KeyConditionExpression: 'tenantId = :t',
          ExpressionAttributeValues: { ':t': tenantId },
          ConsistentRead: true,
          ...(start ? { ExclusiveStartKey: start } : {}),
        }),
      );
      items.push(...((page.Items ?? []) as WebhookEndpoint[]));
      start = page.LastEvaluatedKey;
    } while (start);
    return items.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  async remove(tenantId: string, id: string): Promise<boolean> {
    try {
      await this.doc.send(new DeleteCommand({ TableName: this.table, Key: { tenantId, id }, ConditionExpression: 'attribute_exists(id)' }));
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw err;
    }
  }

  /** One update: the current secret becomes the previous one, so a rotation never loses the old secret mid-way. */
  async rotate(tenantId: string, id: string, next: { secret: string; previousSecretExpiresAt: number }): Promise<WebhookEndpoint | undefined> {
    try {
      const { Attributes } = await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: { tenantId, id },
          UpdateExpression: 'SET previousSecret = secret, secret = :s, previousSecretExpiresAt = :x',
          ConditionExpression: 'attribute_exists(id)',
          ExpressionAttributeValues: { ':s': next.secret, ':x': next.previousSecretExpiresAt },
          ReturnValues: 'ALL_NEW',
        }),
      );
      return Attributes as WebhookEndpoint;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return undefined;
      throw err;
    }
  }
}
