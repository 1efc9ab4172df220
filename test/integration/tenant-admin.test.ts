/**
 * The tenants command's operations against the principals table as the stack declares it (DynamoDB
 * Local), with API Gateway's key management in memory: a tenant added without a deploy is resolved by
 * the functions' directory, rotation keeps the tenant, a revoked key is refused and deleted.
 */
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { loadSynthesizedStack, resourcesOfType, startDynamoDbLocal, tableInput, type RunningEmulator } from '@idempotent-payments/local-stack';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CachedPrincipalDirectory, PrincipalsTable } from '../../functions/adapters/dynamo/principals';
import { TenantAdmin, type KeyRegistry } from '../../scripts/tenant-admin';
import { projectRoot } from '../helpers/project-root';

const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
let ddb: RunningEmulator;
let client: DynamoDBClient;
let table: PrincipalsTable;

beforeAll(async () => {
  ddb = await startDynamoDbLocal({});
  client = new DynamoDBClient({ endpoint: ddb.endpoint, region: 'us-east-1', credentials });
  const { template } = loadSynthesizedStack(`${projectRoot}/cdk.out`);
  const [id, res] = resourcesOfType(template, 'AWS::DynamoDB::Table').find(([id]) => id.startsWith('PrincipalsTable'))!;
  const name = `${id}-${Date.now()}`;
  await client.send(new CreateTableCommand({ ...tableInput(id, res.Properties ?? {}), TableName: name }));
  table = new PrincipalsTable(DynamoDBDocumentClient.from(client), name);
});

afterAll(async () => {
  client?.destroy();
  await ddb?.stop();
});

/** API Gateway's keys and plan associations in memory; `failOn` makes one step fail once. */
function registry(failOn?: 'addToPlan') {
  const keys = new Map<string, { value: string; plans: Set<string> }>();
  let n = 0;
  let failed = false;
  const r: KeyRegistry = {
    async createKey() {
      const id = `k${++n}${Date.now().toString(36)}`;
      keys.set(id, { value: `secret-${id}`, plans: new Set() });
      return { id, value: `secret-${id}` };
    },
    async addToPlan(planId, keyId) {
      if (failOn === 'addToPlan' && !failed) {
        failed = true;
        throw new Error('API Gateway unavailable');
      }
      keys.get(keyId)!.plans.add(planId);
    },
    async deleteKey(keyId) {
      keys.delete(keyId);
    },
  };
  /** What API Gateway would accept: a key that exists and is on a plan. */
  const gatewayAccepts = (keyId: string) => (keys.get(keyId)?.plans.size ?? 0) > 0;
  return { r, keys, gatewayAccepts };
}

describe('tenants without a deploy', () => {
  it('adds a tenant key: recorded, on the plan, and resolved by the functions; rotation keeps the tenant; revoke refuses and deletes', async () => {
    const api = registry();
    const admin = new TenantAdmin({ keys: api.r, principals: table, stackName: 'IdempotentPayments-test' });
    const directory = () => new CachedPrincipalDirectory(table, { cacheSeconds: 60 });

    const first = await admin.addKey('tenant:acme', 'plan-standard');
    expect(api.gatewayAccepts(first.apiKeyId)).toBe(true);
    expect(api.keys.get(first.apiKeyId)!.plans).toEqual(new Set(['plan-standard']));
    expect(await table.get(first.apiKeyId)).toMatchObject({ principal: 'tenant:acme', status: 'active', keyName: expect.stringMatching(/^IdempotentPayments-test-acme-/) });
    // The key value is never stored.
    expect(JSON.stringify(await table.list())).not.toContain(first.value);
    expect(await directory().resolve(first.apiKeyId)).toEqual({ kind: 'tenant', tenantId: 'acme' });

    const second = await admin.addKey('tenant:acme', 'plan-standard');
    expect(second.apiKeyId).not.toBe(first.apiKeyId);
    expect(await directory().resolve(second.apiKeyId)).toEqual({ kind: 'tenant', tenantId: 'acme' });

    await admin.revokeKey(first.apiKeyId);
    expect(await table.get(first.apiKeyId)).toMatchObject({ status: 'revoked', revokedAt: expect.any(String) });
    expect(api.keys.has(first.apiKeyId)).toBe(false);
    expect(await directory().resolve(first.apiKeyId)).toBeUndefined();
    expect(await directory().resolve(second.apiKeyId)).toEqual({ kind: 'tenant', tenantId: 'acme' });
    // Revoking again is harmless; an unknown key id is an error, not a silent success.
    await expect(admin.revokeKey(first.apiKeyId)).resolves.toMatchObject({ status: 'revoked' });
    await expect(admin.revokeKey('nope')).rejects.toThrow(/no principal/);
  });

  it('operators get operator principals; a malformed name is refused before anything is created', async () => {
    const api = registry();
    const admin = new TenantAdmin({ keys: api.r, principals: table, stackName: 'IdempotentPayments-test' });
    const ops = await admin.addKey('operator:alice', 'plan-operators');
    expect(await new CachedPrincipalDirectory(table, { cacheSeconds: 60 }).resolve(ops.apiKeyId)).toEqual({ kind: 'operator', name: 'alice' });
    await expect(admin.addKey('tenant:a b', 'plan-standard')).rejects.toThrow(/not tenant:<id>/);
    await expect(admin.addKey('admin:root', 'plan-standard')).rejects.toThrow(/not tenant:<id>/);
    expect(api.keys.size).toBe(1);
  });

  it('a failure half-way leaves a key that works nowhere: recorded but not on a plan, so API Gateway refuses it', async () => {
    const api = registry('addToPlan');
    const admin = new TenantAdmin({ keys: api.r, principals: table, stackName: 'IdempotentPayments-test' });
    await expect(admin.addKey('tenant:beta', 'plan-standard')).rejects.toThrow(/unavailable/);
    const [orphan] = [...api.keys.keys()];
    expect(api.gatewayAccepts(orphan!)).toBe(false);
    // The operator revokes the orphan and adds again.
    await admin.revokeKey(orphan!);
    const again = await admin.addKey('tenant:beta', 'plan-standard');
    expect(api.gatewayAccepts(again.apiKeyId)).toBe(true);
  });
});
