import { createHash } from 'node:crypto';
import { PutItemCommand, type AttributeValue, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { resourcesOfType, type CfnTemplate, type LocalResources } from './template';

/** Parses `key:who,key2:who2` (or takes a map) into key → who (`tenant-1`, `tenant:tenant-1`, `operator:ops`). */
export function parseApiKeys(spec: string | Record<string, string>): Map<string, string> {
  if (typeof spec !== 'string') return new Map(Object.entries(spec));
  const keys = new Map<string, string>();
  for (const pair of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const at = pair.indexOf(':');
    if (at <= 0 || at === pair.length - 1) throw new Error(`Bad API key "${pair}": expected key:tenant`);
    keys.set(pair.slice(0, at), pair.slice(at + 1));
  }
  return keys;
}

/**
 * The id API Gateway would give the key (requestContext.identity.apiKeyId): opaque, stable, and not
 * the tenant's name, so handlers must map it to a principal as they do in AWS.
 */
export function localApiKeyId(key: string): string {
  return `lk${createHash('sha256').update(key).digest('hex').slice(0, 10)}`;
}

/** Who a key is, as `tenant:<id>` or `operator:<name>`; a bare name is a tenant. */
export function principalOf(who: string): string {
  return who.startsWith('tenant:') || who.startsWith('operator:') ? who : `tenant:${who}`;
}

/** Metadata key on a table that holds API key id → principal records (what an admin command writes in AWS). */
export const API_KEY_PRINCIPALS_METADATA = 'LocalStack::ApiKeyPrincipals';

/**
 * Writes one record per local key into every table whose template metadata names it the API key
 * principals table (`LocalStack::ApiKeyPrincipals`: which attribute holds the key id, the principal and,
 * optionally, the status). In AWS an operator command writes these records when it creates a key;
 * locally the keys come from LOCAL_API_KEYS, so the local stack writes them, with the ids its gateway
 * hands the functions. Returns the tables seeded.
 */
export async function seedApiKeyPrincipals(
  template: CfnTemplate,
  local: LocalResources,
  dynamodb: DynamoDBClient,
  keys: ReadonlyMap<string, string>,
): Promise<string[]> {
  const seeded: string[] = [];
  for (const [id, resource] of resourcesOfType(template, 'AWS::DynamoDB::Table')) {
    const spec = resource.Metadata?.[API_KEY_PRINCIPALS_METADATA] as { KeyIdAttribute?: string; PrincipalAttribute?: string; StatusAttribute?: string } | undefined;
    const table = local.tables[id];
    if (!spec?.KeyIdAttribute || !spec.PrincipalAttribute || !table) continue;
    const now = new Date().toISOString();
    for (const [key, who] of keys) {
      const item: Record<string, AttributeValue> = {
        [spec.KeyIdAttribute]: { S: localApiKeyId(key) },
        [spec.PrincipalAttribute]: { S: principalOf(who) },
        keyName: { S: 'LOCAL_API_KEYS' },
        createdAt: { S: now },
        updatedAt: { S: now },
      };
      if (spec.StatusAttribute) item[spec.StatusAttribute] = { S: 'active' };
      await dynamodb.send(new PutItemCommand({ TableName: table.name, Item: item }));
    }
    seeded.push(id);
  }
  return seeded;
}
