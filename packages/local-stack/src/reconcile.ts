/**
 * Brings resources that already exist on the emulators (a persistent DynamoDB Local data directory,
 * or a long-running emulator such as LocalStack) in line with the template before
 * createLocalResources() runs, so that a change in the CDK code shows up locally with no other edit:
 *
 * - a table whose key schema or local indexes changed is deleted and created again (CloudFormation
 *   replaces such a table too, so its data is lost there as well);
 * - global secondary indexes and the stream setting are updated in place;
 * - a queue's attributes (delay, visibility timeout, redrive policy, ...) are set to the template's.
 */
import {
  DeleteTableCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  ResourceNotFoundException,
  UpdateTableCommand,
  UpdateTimeToLiveCommand,
  type CreateTableCommandInput,
  type DynamoDBClient,
  type TableDescription,
} from '@aws-sdk/client-dynamodb';
import { GetQueueAttributesCommand, GetQueueUrlCommand, SetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { queueAttributes, resourcesOfType, tableInput, type CfnTemplate } from './template';
import { errorMessage, shortId, type LogFn } from './util';

type KeyElement = { AttributeName?: string; KeyType?: string };
type Index = { IndexName?: string; KeySchema?: KeyElement[]; Projection?: { ProjectionType?: string; NonKeyAttributes?: string[] } };

function keyText(keys: KeyElement[] | undefined, types: Map<string, string>): string {
  return (keys ?? []).map((k) => `${k.AttributeName}:${k.KeyType}:${types.get(k.AttributeName ?? '') ?? '?'}`).join(',');
}

function indexText(i: Index, types: Map<string, string>): string {
  const nonKey = [...(i.Projection?.NonKeyAttributes ?? [])].sort().join('|');
  return `${keyText(i.KeySchema, types)}/${i.Projection?.ProjectionType ?? 'ALL'}/${nonKey}`;
}

function indexMap(list: Index[] | undefined, types: Map<string, string>): Map<string, string> {
  return new Map((list ?? []).map((i) => [i.IndexName!, indexText(i, types)]));
}

export interface TableDrift {
  /** Key schema or local indexes differ: the table must be replaced. */
  readonly replace: string[];
  readonly gsiToDelete: string[];
  readonly gsiToCreate: string[];
  readonly stream?: { enabled: boolean; viewType?: string };
}

/** What differs between the table the template declares and the existing one. */
export function tableDrift(wanted: CreateTableCommandInput, existing: TableDescription): TableDrift {
  const wantedTypes = new Map((wanted.AttributeDefinitions ?? []).map((a) => [a.AttributeName!, a.AttributeType!]));
  const existingTypes = new Map((existing.AttributeDefinitions ?? []).map((a) => [a.AttributeName!, a.AttributeType!]));
  const replace: string[] = [];
  if (keyText(wanted.KeySchema, wantedTypes) !== keyText(existing.KeySchema, existingTypes)) {
    replace.push(`key ${keyText(existing.KeySchema, existingTypes)} → ${keyText(wanted.KeySchema, wantedTypes)}`);
  }
  const wantedLsi = indexMap(wanted.LocalSecondaryIndexes, wantedTypes);
  const existingLsi = indexMap(existing.LocalSecondaryIndexes, existingTypes);
  if ([...wantedLsi].some(([n, t]) => existingLsi.get(n) !== t) || [...existingLsi.keys()].some((n) => !wantedLsi.has(n))) {
    replace.push('local secondary indexes');
  }
  const wantedGsi = indexMap(wanted.GlobalSecondaryIndexes, wantedTypes);
  const existingGsi = indexMap(existing.GlobalSecondaryIndexes, existingTypes);
  const gsiToDelete = [...existingGsi].filter(([n, t]) => wantedGsi.get(n) !== t).map(([n]) => n);
  const gsiToCreate = [...wantedGsi].filter(([n, t]) => existingGsi.get(n) !== t).map(([n]) => n);
  const wantStream = Boolean(wanted.StreamSpecification?.StreamEnabled);
  const hasStream = Boolean(existing.StreamSpecification?.StreamEnabled);
  let stream: TableDrift['stream'];
  if (wantStream !== hasStream || (wantStream && wanted.StreamSpecification?.StreamViewType !== existing.StreamSpecification?.StreamViewType)) {
    stream = { enabled: wantStream, viewType: wanted.StreamSpecification?.StreamViewType };
  }
  return { replace, gsiToDelete, gsiToCreate, stream };
}

async function describe(ddb: DynamoDBClient, name: string): Promise<TableDescription | undefined> {
  try {
    return (await ddb.send(new DescribeTableCommand({ TableName: name }))).Table;
  } catch (err) {
    if (err instanceof ResourceNotFoundException) return undefined;
    throw err;
  }
}

async function waitActive(ddb: DynamoDBClient, name: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const t = await describe(ddb, name);
    if (!t) return;
    const busy = t.TableStatus !== 'ACTIVE' || (t.GlobalSecondaryIndexes ?? []).some((g) => g.IndexStatus && g.IndexStatus !== 'ACTIVE');
    if (!busy) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function deleteTable(ddb: DynamoDBClient, name: string): Promise<void> {
  await ddb.send(new DeleteTableCommand({ TableName: name }));
  for (let i = 0; i < 100 && (await describe(ddb, name)); i++) await new Promise((r) => setTimeout(r, 100));
}

export async function reconcileTables(template: CfnTemplate, ddb: DynamoDBClient, log: LogFn): Promise<void> {
  for (const [id, r] of resourcesOfType(template, 'AWS::DynamoDB::Table')) {
    const props = r.Properties ?? {};
    const wanted = tableInput(id, props);
    const name = wanted.TableName!;
    const existing = await describe(ddb, name);
    if (!existing) continue;
    const drift = tableDrift(wanted, existing);
    const label = `[${shortId(id)}]`;
    if (drift.replace.length) {
      log(`${label} ${drift.replace.join('; ')} changed: replacing the local table (its data is dropped, as CloudFormation would)`);
      await deleteTable(ddb, name);
      continue; // createLocalResources creates it as the template says
    }
    try {
      for (const indexName of drift.gsiToDelete) {
        log(`${label} deleting global secondary index ${indexName}`);
        await ddb.send(new UpdateTableCommand({ TableName: name, GlobalSecondaryIndexUpdates: [{ Delete: { IndexName: indexName } }] }));
        await waitActive(ddb, name);
      }
      for (const indexName of drift.gsiToCreate) {
        const gsi = wanted.GlobalSecondaryIndexes!.find((g) => g.IndexName === indexName)!;
        const keyNames = new Set((gsi.KeySchema ?? []).map((k) => k.AttributeName));
        log(`${label} creating global secondary index ${indexName}`);
        await ddb.send(
          new UpdateTableCommand({
            TableName: name,
            AttributeDefinitions: (wanted.AttributeDefinitions ?? []).filter((a) => keyNames.has(a.AttributeName)),
            GlobalSecondaryIndexUpdates: [{ Create: gsi as any }],
          }),
        );
        await waitActive(ddb, name);
      }
      if (drift.stream) {
        if (existing.StreamSpecification?.StreamEnabled) {
          await ddb.send(new UpdateTableCommand({ TableName: name, StreamSpecification: { StreamEnabled: false } }));
          await waitActive(ddb, name);
        }
        if (drift.stream.enabled) {
          log(`${label} enabling its stream (${drift.stream.viewType})`);
          await ddb.send(new UpdateTableCommand({ TableName: name, StreamSpecification: { StreamEnabled: true, StreamViewType: drift.stream.viewType as any } }));
          await waitActive(ddb, name);
        }
      }
      const ttl = props.TimeToLiveSpecification;
      if (ttl?.Enabled) {
        const { TimeToLiveDescription } = await ddb.send(new DescribeTimeToLiveCommand({ TableName: name }));
        const current = TimeToLiveDescription?.TimeToLiveStatus === 'ENABLED' ? TimeToLiveDescription.AttributeName : undefined;
        if (current !== ttl.AttributeName) {
          if (current) await ddb.send(new UpdateTimeToLiveCommand({ TableName: name, TimeToLiveSpecification: { Enabled: false, AttributeName: current } }));
          await ddb.send(new UpdateTimeToLiveCommand({ TableName: name, TimeToLiveSpecification: { Enabled: true, AttributeName: ttl.AttributeName } }));
        }
      }
    } catch (err) {
      log(`${label} could not update the local table in place (${errorMessage(err)}): replacing it`);
      await deleteTable(ddb, name);
    }
  }
}

/** Default attribute values, so that removing a setting from the template resets it. */
const QUEUE_DEFAULTS: Record<string, string> = {
  DelaySeconds: '0',
  MaximumMessageSize: '262144',
  MessageRetentionPeriod: '345600',
  ReceiveMessageWaitTimeSeconds: '0',
  VisibilityTimeout: '30',
};

export async function reconcileQueues(template: CfnTemplate, sqs: SQSClient, log: LogFn): Promise<void> {
  const queues = resourcesOfType(template, 'AWS::SQS::Queue');
  const nameOf = (id: string) => String(template.Resources[id]?.Properties?.QueueName ?? id);
  for (const [id, r] of queues) {
    const props = r.Properties ?? {};
    let url: string | undefined;
    try {
      url = (await sqs.send(new GetQueueUrlCommand({ QueueName: nameOf(id) }))).QueueUrl;
    } catch {
      continue; // not there yet: createLocalResources creates it
    }
    if (!url) continue;
    const { Attributes } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['All'] }));
    const current: Record<string, string> = Attributes ?? {};
    // The DLQ's ARN follows the queue's own ARN pattern, whether or not the DLQ exists yet.
    const arnOf = (dlqId: string) => current.QueueArn!.replace(/[^:]+$/, nameOf(dlqId));
    const wanted = { ...QUEUE_DEFAULTS, RedrivePolicy: '', ...queueAttributes(props, arnOf) };
    const changed: Record<string, string> = {};
    for (const [k, v] of Object.entries(wanted)) {
      const now = current[k] ?? '';
      const same = k === 'RedrivePolicy' && v && now ? sameJson(v, now) : now === v || (!now && v === QUEUE_DEFAULTS[k]);
      if (!same) changed[k] = v;
    }
    if (Object.keys(changed).length === 0) continue;
    log(`[${shortId(id)}] updating queue attributes: ${Object.keys(changed).join(', ')}`);
    await sqs.send(new SetQueueAttributesCommand({ QueueUrl: url, Attributes: changed }));
  }
}

function sameJson(a: string, b: string): boolean {
  try {
    const x = JSON.parse(a);
    const y = JSON.parse(b);
    return x.deadLetterTargetArn === y.deadLetterTargetArn && Number(x.maxReceiveCount) === Number(y.maxReceiveCount);
  } catch {
    return a === b;
  }
}
