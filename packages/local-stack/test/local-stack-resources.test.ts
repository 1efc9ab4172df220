/**
 * "Changing a table's key or a queue's delay in the CDK code changes the local stack with no other
 * edit": the local resources follow the template, also across restarts on kept data (a persistent
 * DynamoDB Local directory, an SQS emulator that outlives the stack), and stream checkpoints survive a
 * restart.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { DescribeTableCommand, GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSqsEmulator, type RunningEmulator } from '../src/emulators';
import { startLocalStack, type InvocationRecord, type LocalStack } from '../src/local-stack';
import { fixtureAssembly, idOf, type FixtureAssembly } from './helpers/local-stack-fixtures';

let assembly: FixtureAssembly;
let dataDir: string;
let externalSqs: RunningEmulator;
let stack: LocalStack | undefined;
let ids: { table: string; queue: string; audit: string; auditTable: string };

const start = async () => {
  stack = await startLocalStack({ cdkOut: assembly.cdkOut, apiPort: 0, dataDir, schedules: false, endpoints: { sqs: externalSqs.endpoint }, log: () => {} });
  return stack;
};
const stop = async () => {
  await stack?.stop();
  stack = undefined;
};
const keyOf = async (s: LocalStack, tableId: string) =>
  (await s.clients.dynamodb.send(new DescribeTableCommand({ TableName: s.resources.tables[tableId]!.name }))).Table!;
const delayOf = async (s: LocalStack, queueId: string) =>
  (await s.clients.sqs.send(new GetQueueAttributesCommand({ QueueUrl: s.resources.queues[queueId]!.url, AttributeNames: ['DelaySeconds'] }))).Attributes!.DelaySeconds;

beforeAll(async () => {
  assembly = fixtureAssembly();
  const t = assembly.template;
  ids = { table: idOf(t, 'PaymentsTable'), queue: idOf(t, 'PaymentsQueue'), audit: idOf(t, 'AuditStreamFunction'), auditTable: idOf(t, 'AuditLogTable') };
  dataDir = mkdtempSync(path.join(tmpdir(), 'local-stack-data-'));
  externalSqs = await startSqsEmulator();
});

afterAll(async () => {
  await stop();
  await externalSqs?.stop();
  assembly?.remove();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('local resources follow the template', () => {
  it('creates tables and queues as declared; stream records are delivered once across a restart', async () => {
    const s = await start();
    const table = await keyOf(s, ids.table);
    expect(table.KeySchema).toEqual(assembly.template.Resources[ids.table]!.Properties.KeySchema);
    expect(await delayOf(s, ids.queue)).toBe(String(assembly.template.Resources[ids.queue]!.Properties.DelaySeconds ?? 0));

    // The Payments stream has two consumers (audit, webhook events); this follows the audit function's.
    const wait = s.waitForInvocation((r) => r.source === 'stream' && r.functionId === ids.audit && (r.event as any).Records.some((x: any) => x.dynamodb.Keys.id.S === 'kept-1'));
    await s.clients.dynamodb.send(new PutItemCommand({ TableName: s.resources.tables[ids.table]!.name, Item: { id: { S: 'kept-1' } } }));
    await wait;
    await s.clients.dynamodb.send(
      new PutItemCommand({ TableName: s.resources.tables[ids.auditTable]!.name, Item: { tenantShard: { S: 't#00' }, tenantSort: { S: 's' }, paymentId: { S: 'p1' }, version: { N: '1' }, tenantId: { S: 't' } } }),
    );
    await stop();
    const checkpoints = JSON.parse(readFileSync(path.join(dataDir, 'stream-checkpoints.json'), 'utf8'));
    expect(Object.values<any>(checkpoints).map((c) => c.streamArn)).toContain(s.resources.tables[ids.table]!.streamArn);

    // Same template, same data: the item is still there and its stream record is not delivered again.
    const again = await start();
    const redelivered: InvocationRecord[] = [];
    again.onInvocation((r) => {
      if (r.source === 'stream' && r.functionId === ids.audit && (r.event as any).Records.some((x: any) => x.dynamodb.Keys.id.S === 'kept-1')) redelivered.push(r);
    });
    const item = await again.clients.dynamodb.send(new GetItemCommand({ TableName: again.resources.tables[ids.table]!.name, Key: { id: { S: 'kept-1' } } }));
    expect(item.Item?.id?.S).toBe('kept-1');
    const next = again.waitForInvocation((r) => r.source === 'stream' && r.functionId === ids.audit && (r.event as any).Records.some((x: any) => x.dynamodb.Keys.id.S === 'kept-2'));
    await again.clients.dynamodb.send(new PutItemCommand({ TableName: again.resources.tables[ids.table]!.name, Item: { id: { S: 'kept-2' } } }));
    await next;
    expect(redelivered).toEqual([]);
    await stop();
  });

  it("applies a changed table key and queue delay on restart, with no other edit", async () => {
    const t = assembly.template;
    const props = t.Resources[ids.table]!.Properties;
    props.KeySchema = [{ AttributeName: 'pk', KeyType: 'HASH' }];
    props.AttributeDefinitions = props.AttributeDefinitions.filter((a: any) => a.AttributeName !== 'id').concat({ AttributeName: 'pk', AttributeType: 'S' });
    t.Resources[ids.queue]!.Properties.DelaySeconds = 7;
    // A new global secondary index on another table is added in place: its data stays.
    const audit = t.Resources[ids.auditTable]!.Properties;
    audit.AttributeDefinitions.push({ AttributeName: 'extra', AttributeType: 'S' });
    audit.GlobalSecondaryIndexes = [...(audit.GlobalSecondaryIndexes ?? []), { IndexName: 'by-extra', KeySchema: [{ AttributeName: 'extra', KeyType: 'HASH' }], Projection: { ProjectionType: 'KEYS_ONLY' } }];
    assembly.save();

    const s = await start();
    const table = await keyOf(s, ids.table);
    expect(table.KeySchema).toEqual([{ AttributeName: 'pk', KeyType: 'HASH' }]);
    expect(table.StreamSpecification?.StreamViewType).toBe('NEW_AND_OLD_IMAGES');
    expect(await delayOf(s, ids.queue)).toBe('7');
    const auditTable = await keyOf(s, ids.auditTable);
    expect(auditTable.GlobalSecondaryIndexes?.map((g) => g.IndexName).sort()).toEqual(['by-extra']);
    const kept = await s.clients.dynamodb.send(new GetItemCommand({ TableName: s.resources.tables[ids.auditTable]!.name, Key: { tenantShard: { S: 't#00' }, tenantSort: { S: 's' } } }));
    expect(kept.Item).toBeDefined();

    // The stream of the replaced table reaches the audit function.
    const wait = s.waitForInvocation((r) => r.source === 'stream' && r.functionId === ids.audit && (r.event as any).Records.some((x: any) => x.dynamodb.Keys.pk?.S === 'new-key'));
    await s.clients.dynamodb.send(new PutItemCommand({ TableName: s.resources.tables[ids.table]!.name, Item: { pk: { S: 'new-key' } } }));
    expect((await wait).source).toBe('stream');
    await stop();
  });
});
