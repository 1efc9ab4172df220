/**
 * Fixture cloud assemblies for the local stack tests: the project's synthesized template (cdk.out,
 * optionally modified), with every function pointed at one small purpose-made handler, so that the
 * runtime is tested without depending on payment behaviour.
 *
 * The assembly lives under node_modules/.cache so that the fixture bundle resolves '@aws-sdk/*' from
 * the project's node_modules, exactly like the real bundles in cdk.out.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSynthesizedStack, type CfnTemplate } from '../../src/template';

export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

/** A mutable deep copy of the synthesized template. */
export type MutableTemplate = { Resources: Record<string, { Type: string; Properties?: any; Metadata?: any }> };

/** The logical id in `t` starting with `prefix` (PaymentsQueue → PaymentsQueue59F70EDB). */
export function idOf(t: CfnTemplate | MutableTemplate, prefix: string, type?: string): string {
  const ids = Object.entries(t.Resources)
    .filter(([id, r]) => id.startsWith(prefix) && (!type || r.Type === type))
    .map(([id]) => id)
    .filter((id) => /^[0-9A-F]{8}$/.test(id.slice(prefix.length)) || id === prefix);
  if (ids.length !== 1) throw new Error(`expected one ${type ?? 'resource'} named ${prefix}*, found ${ids.join(', ') || 'none'}`);
  return ids[0]!;
}

/** One handler for every function; what it does depends on the event. */
export const FIXTURE_HANDLER = String.raw`
import { DynamoDBClient, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { SQSClient, SendMessageCommand } from '@aws-sdk/client-sqs';
import { LambdaClient, InvokeCommand } from '@aws-sdk/client-lambda';

const ENV = ['AWS_LAMBDA_FUNCTION_NAME', 'AWS_REGION', 'AWS_ACCESS_KEY_ID', 'AWS_ENDPOINT_URL_DYNAMODB', 'AWS_ENDPOINT_URL_SQS',
  'AWS_ENDPOINT_URL_LAMBDA', 'PAYMENTS_TABLE', 'PAYMENTS_QUEUE_URL', 'PROVIDER_URL', 'RECONCILER_FUNCTION_NAME', 'STAGE', 'FIXTURE_EXTRA'];
const env = () => Object.fromEntries(ENV.map((k) => [k, process.env[k] ?? null]));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const initializedAt = Date.now();

async function api(event, context) {
  const q = event.queryStringParameters ?? {};
  switch (q.mode) {
    case 'throw':
      throw new Error('boom');
    case 'malformed':
      return { statusCode: 200, body: { not: 'a string' } };
    case 'sleep':
      await sleep(Number(q.ms));
      break;
    case 'binary':
      return { statusCode: 200, headers: { 'content-type': 'application/octet-stream' }, isBase64Encoded: true, body: Buffer.from([0, 1, 2, 255]).toString('base64') };
    case 'multi':
      return { statusCode: 202, headers: { 'x-one': 'a' }, multiValueHeaders: { 'x-many': ['1', '2'] }, body: 'text' };
    case 'write': {
      const body = JSON.parse(event.body);
      await new DynamoDBClient({}).send(new PutItemCommand({
        TableName: process.env.PAYMENTS_TABLE,
        Item: { id: { S: body.id }, meta: { M: {} }, tenant: { S: event.requestContext.identity.apiKeyId } },
      }));
      // Default client settings: the queue URL's host (sqs.<region>.localhost) is used as the endpoint.
      await new SQSClient({}).send(new SendMessageCommand({
        QueueUrl: process.env.PAYMENTS_QUEUE_URL,
        MessageBody: event.body,
        MessageAttributes: { kind: { DataType: 'String', StringValue: 'fixture' } },
      }));
      return { statusCode: 201, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ok: true }) };
    }
    case 'invoke': {
      const lambda = new LambdaClient({});
      const res = await lambda.send(new InvokeCommand({
        FunctionName: process.env.RECONCILER_FUNCTION_NAME,
        InvocationType: q.type ?? 'RequestResponse',
        Payload: JSON.stringify({ from: context.functionName, mode: q.target }),
      }));
      const text = res.Payload ? Buffer.from(res.Payload).toString() : '';
      return { statusCode: 200, body: JSON.stringify({ statusCode: res.StatusCode, functionError: res.FunctionError ?? null, payload: text ? JSON.parse(text) : null }) };
    }
  }
  return {
    statusCode: 200,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ event, fn: context.functionName, remaining: context.getRemainingTimeInMillis(), env: env() }),
  };
}

function sqs(event) {
  const batchItemFailures = [];
  for (const r of event.Records) {
    if (r.body.includes('crash')) throw new Error('crash requested');
    if (r.body.includes('fail')) batchItemFailures.push({ itemIdentifier: r.messageId });
  }
  return { batchItemFailures };
}

function stream(event) {
  for (const r of event.Records) if (r.dynamodb?.NewImage?.poison) throw new Error('poison record');
  return { batchItemFailures: [] };
}

export const handler = async (event, context) => {
  if (event?.requestContext && event.httpMethod) return api(event, context);
  const source = event?.Records?.[0]?.eventSource;
  if (source === 'aws:sqs') return sqs(event);
  if (source === 'aws:dynamodb') return stream(event);
  if (event?.source === 'aws.events') return { scheduled: true, fn: context.functionName };
  if (event?.mode === 'throw') throw new TypeError('direct boom');
  if (event?.mode === 'sleep') await sleep(event.ms);
  if (event?.mode === 'spin') { const end = Date.now() + event.ms; while (Date.now() < end) {} }
  if (event?.mode === 'exit') process.exit(3);
  return { echo: event, fn: context.functionName, requestId: context.awsRequestId, remaining: context.getRemainingTimeInMillis(), initializedAt, env: env() };
};
`;

export interface FixtureAssembly {
  readonly cdkOut: string;
  readonly template: MutableTemplate;
  readonly stackName: string;
  /** Writes the (possibly further modified) template again. */
  save(): void;
  remove(): void;
}

/**
 * Copies the synthesized stack into a fresh cloud assembly whose functions all run FIXTURE_HANDLER
 * (or `handlerSource`), after `modify` has edited the template.
 */
export function fixtureAssembly(opts: { modify?: (t: MutableTemplate) => void; handlerSource?: string; realCdkOut?: string } = {}): FixtureAssembly {
  const real = loadSynthesizedStack(opts.realCdkOut ?? path.join(projectRoot, 'cdk.out'));
  const base = path.join(projectRoot, 'node_modules', '.cache', 'local-stack-tests');
  mkdirSync(base, { recursive: true });
  const dir = mkdtempSync(path.join(base, 'assembly-'));
  const template = JSON.parse(JSON.stringify(real.template)) as MutableTemplate;
  const assetDir = path.join(dir, 'asset.fixture');
  mkdirSync(assetDir);
  writeFileSync(path.join(assetDir, 'index.mjs'), opts.handlerSource ?? FIXTURE_HANDLER);
  for (const r of Object.values(template.Resources)) {
    if (r.Type === 'AWS::Lambda::Function') r.Metadata = { ...r.Metadata, 'aws:asset:path': 'asset.fixture' };
  }
  opts.modify?.(template);
  const templateFile = `${real.stackName}.template.json`;
  const save = () => {
    writeFileSync(path.join(dir, templateFile), JSON.stringify(template, null, 1));
    writeFileSync(
      path.join(dir, 'manifest.json'),
      JSON.stringify({ version: '48.0.0', artifacts: { [real.stackName]: { type: 'aws:cloudformation:stack', properties: { templateFile } } } }),
    );
  };
  save();
  return { cdkOut: dir, template, stackName: real.stackName, save, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function eventually<T>(check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 15_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}
