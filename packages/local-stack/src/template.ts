/**
 * Reads the synthesized CloudFormation template in cdk.out and creates what it declares on the local
 * emulators. The template is the only list of tables and queues: nothing here names a resource.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import {
  CreateTableCommand,
  DescribeTableCommand,
  DynamoDBClient,
  ResourceInUseException,
  UpdateTimeToLiveCommand,
  type CreateTableCommandInput,
} from '@aws-sdk/client-dynamodb';
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';

export interface CfnResource {
  readonly Type: string;
  readonly Properties?: Record<string, any>;
  readonly Metadata?: Record<string, any>;
  readonly DependsOn?: string | string[];
}
export interface CfnTemplate {
  readonly Resources: Record<string, CfnResource>;
}
export interface SynthesizedStack {
  readonly stackName: string;
  readonly template: CfnTemplate;
  /** Absolute path of cdk.out, where the function bundles (assets) live. */
  readonly assemblyDir: string;
}

/** Loads the single stack of the cloud assembly in `cdkOut` (run `npm run synth` first). */
export function loadSynthesizedStack(cdkOut = 'cdk.out'): SynthesizedStack {
  const assemblyDir = path.resolve(cdkOut);
  let manifest: { artifacts?: Record<string, { type: string; properties?: { templateFile?: string } }> };
  try {
    manifest = JSON.parse(readFileSync(path.join(assemblyDir, 'manifest.json'), 'utf8'));
  } catch {
    throw new Error(`No cloud assembly in ${assemblyDir}: run "npm run synth" first`);
  }
  const stacks = Object.entries(manifest.artifacts ?? {}).filter(([, a]) => a.type === 'aws:cloudformation:stack');
  if (stacks.length !== 1) throw new Error(`Expected one stack in ${assemblyDir}, found ${stacks.length}`);
  const [stackName, artifact] = stacks[0]!;
  const templateFile = artifact.properties?.templateFile ?? `${stackName}.template.json`;
  const template = JSON.parse(readFileSync(path.join(assemblyDir, templateFile), 'utf8')) as CfnTemplate;
  return { stackName, template, assemblyDir };
}

export function resourcesOfType(t: CfnTemplate, type: string): Array<[string, CfnResource]> {
  return Object.entries(t.Resources).filter(([, r]) => r.Type === type);
}

/** Physical names of local resources: the logical id, which is unique within the stack. */
export interface LocalResources {
  /** Table logical id → table name. */
  readonly tables: Record<string, { name: string; streamArn?: string }>;
  /** Queue logical id → queue URL, ARN and name. */
  readonly queues: Record<string, { url: string; arn: string; name: string }>;
}

export function tableInput(logicalId: string, props: Record<string, any>): CreateTableCommandInput {
  const input: CreateTableCommandInput = {
    TableName: props.TableName ?? logicalId,
    KeySchema: props.KeySchema,
    AttributeDefinitions: props.AttributeDefinitions,
    BillingMode: props.BillingMode ?? 'PROVISIONED',
  };
  if (input.BillingMode === 'PROVISIONED') input.ProvisionedThroughput = props.ProvisionedThroughput;
  if (props.GlobalSecondaryIndexes) {
    input.GlobalSecondaryIndexes = props.GlobalSecondaryIndexes.map((g: any) => ({
      IndexName: g.IndexName,
      KeySchema: g.KeySchema,
      Projection: g.Projection,
      ...(input.BillingMode === 'PROVISIONED' ? { ProvisionedThroughput: g.ProvisionedThroughput } : {}),
    }));
  }
  if (props.LocalSecondaryIndexes) input.LocalSecondaryIndexes = props.LocalSecondaryIndexes;
  if (props.StreamSpecification) {
    input.StreamSpecification = { StreamEnabled: true, StreamViewType: props.StreamSpecification.StreamViewType };
  }
  return input;
}

async function ensureTable(ddb: DynamoDBClient, logicalId: string, props: Record<string, any>) {
  const input = tableInput(logicalId, props);
  try {
    await ddb.send(new CreateTableCommand(input));
    if (props.TimeToLiveSpecification?.Enabled) {
      await ddb.send(
        new UpdateTimeToLiveCommand({
          TableName: input.TableName,
          TimeToLiveSpecification: { Enabled: true, AttributeName: props.TimeToLiveSpecification.AttributeName },
        }),
      );
    }
  } catch (err) {
    // A persistent data directory keeps tables across restarts.
    if (!(err instanceof ResourceInUseException)) throw err;
  }
  const { Table } = await ddb.send(new DescribeTableCommand({ TableName: input.TableName }));
  return { name: input.TableName!, streamArn: Table?.LatestStreamArn };
}

/** Queue attributes as SQS CreateQueue takes them, with the DLQ reference resolved to an ARN. */
export function queueAttributes(props: Record<string, any>, arnOf: (logicalId: string) => string): Record<string, string> {
  const attrs: Record<string, string> = {};
  for (const key of ['DelaySeconds', 'MaximumMessageSize', 'MessageRetentionPeriod', 'ReceiveMessageWaitTimeSeconds', 'VisibilityTimeout']) {
    if (props[key] !== undefined) attrs[key] = String(props[key]);
  }
  if (props.RedrivePolicy) {
    const target = props.RedrivePolicy.deadLetterTargetArn;
    const dlqLogical = target?.['Fn::GetAtt']?.[0];
    attrs.RedrivePolicy = JSON.stringify({
      deadLetterTargetArn: dlqLogical ? arnOf(dlqLogical) : target,
      maxReceiveCount: Number(props.RedrivePolicy.maxReceiveCount),
    });
  }
  return attrs;
}

/** Creates every table and queue the template declares; idempotent, so a restart on kept data works. */
export async function createLocalResources(
  template: CfnTemplate,
  clients: { dynamodb: DynamoDBClient; sqs: SQSClient },
): Promise<LocalResources> {
  const tables: Record<string, { name: string; streamArn?: string }> = {};
  for (const [id, r] of resourcesOfType(template, 'AWS::DynamoDB::Table')) {
    tables[id] = await ensureTable(clients.dynamodb, id, r.Properties ?? {});
  }
  const queues: Record<string, { url: string; arn: string; name: string }> = {};
  const pending = resourcesOfType(template, 'AWS::SQS::Queue');
  // Dead-letter queues first: a queue's redrive policy needs its DLQ's ARN.
  const dependsOn = (props: Record<string, any>) => props.RedrivePolicy?.deadLetterTargetArn?.['Fn::GetAtt']?.[0] as string | undefined;
  while (pending.length) {
    const idx = pending.findIndex(([, r]) => {
      const dep = dependsOn(r.Properties ?? {});
      return !dep || queues[dep];
    });
    if (idx < 0) throw new Error('Queue redrive policies form a cycle or name a missing queue');
    const [id, r] = pending.splice(idx, 1)[0]!;
    const props = r.Properties ?? {};
    const name = props.QueueName ?? id;
    const { QueueUrl } = await clients.sqs.send(
      new CreateQueueCommand({ QueueName: name, Attributes: queueAttributes(props, (l) => queues[l]!.arn) }),
    );
    const { Attributes } = await clients.sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['QueueArn'] }));
    queues[id] = { url: QueueUrl!, arn: Attributes!.QueueArn!, name };
  }
  return { tables, queues };
}

/** A local table's ARN: the form Fn::GetAtt Arn resolves to and the IAM proxy checks requests against. */
export const localTableArn = (tableName: string) => `arn:aws:dynamodb:local:000000000000:table/${tableName}`;

/** A local function's ARN, by logical id. */
export const localFunctionArn = (functionId: string) => `arn:aws:lambda:local:000000000000:function:${functionId}`;

/**
 * Resolves the intrinsic functions CDK emits in function environments (Ref and Fn::GetAtt of tables,
 * queues and functions, Fn::Join) to the local resources.
 */
export function resolveValue(value: unknown, template: CfnTemplate, local: LocalResources): string {
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return String(value);
  const v = value as Record<string, any>;
  if (v && 'Ref' in v) return resolveRef(v.Ref, 'Ref', template, local);
  if (v && 'Fn::GetAtt' in v) {
    const [id, attr] = v['Fn::GetAtt'] as [string, string];
    return resolveRef(id, attr, template, local);
  }
  if (v && 'Fn::Join' in v) {
    const [sep, parts] = v['Fn::Join'] as [string, unknown[]];
    return parts.map((p) => resolveValue(p, template, local)).join(sep);
  }
  throw new Error(`Cannot resolve ${JSON.stringify(value)} locally`);
}

function resolveRef(id: string, attr: string, template: CfnTemplate, local: LocalResources): string {
  if (id === 'AWS::Region') return process.env.AWS_REGION ?? 'us-east-1';
  if (id === 'AWS::AccountId') return '000000000000';
  if (id === 'AWS::Partition') return 'aws';
  if (id === 'AWS::URLSuffix') return 'amazonaws.com';
  const type = template.Resources[id]?.Type;
  if (type === 'AWS::DynamoDB::Table') {
    const t = local.tables[id]!;
    if (attr === 'Ref') return t.name;
    if (attr === 'Arn') return localTableArn(t.name);
    if (attr === 'StreamArn' && t.streamArn) return t.streamArn;
  }
  if (type === 'AWS::SQS::Queue') {
    const q = local.queues[id]!;
    if (attr === 'Ref' || attr === 'QueueUrl') return q.url;
    if (attr === 'Arn') return q.arn;
    if (attr === 'QueueName') return q.name;
  }
  // An API key's Ref is its id; local keys come from LOCAL_API_KEYS, so the logical id stands in.
  if (type === 'AWS::ApiGateway::ApiKey' && attr === 'Ref') return id;
  if (type === 'AWS::Lambda::Function') {
    if (attr === 'Ref') return id;
    if (attr === 'Arn') return localFunctionArn(id);
  }
  throw new Error(`Cannot resolve ${attr} of ${id} (${type ?? 'unknown'}) locally`);
}

/** The environment a function is deployed with, resolved to the local resources. */
export function functionEnvironment(template: CfnTemplate, functionId: string, local: LocalResources): Record<string, string> {
  const vars = template.Resources[functionId]?.Properties?.Environment?.Variables ?? {};
  return Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, resolveValue(v, template, local)]));
}
