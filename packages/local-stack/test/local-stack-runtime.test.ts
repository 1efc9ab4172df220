/**
 * The local stack's runtime behaviour, with the project's template but a purpose-made fixture handler
 * in every function: API Gateway events and errors, function timeouts and crashed workers, the SQS
 * event source (partial batch failures, redelivery, redrive to the DLQ), the DynamoDB stream event
 * source (retries, on-failure destination), the Lambda Invoke endpoint and schedules.
 */
import { PutItemCommand } from '@aws-sdk/client-dynamodb';
import { ReceiveMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiGateway } from '../src/api-gateway-server';
import { localApiKeyId, parseApiKeys } from '../src/api-keys';
import { buildRestApi } from '../src/api-model';
import type { InvocationRecord } from '../src/function-invocation';
import { FunctionRegistry } from '../src/function-registry';
import { LambdaInvocationError, startLocalStack, type LocalStack } from '../src/local-stack';
import { eventually, fixtureAssembly, idOf, type FixtureAssembly } from './helpers/local-stack-fixtures';
import * as path from 'node:path';

let assembly: FixtureAssembly;
let stack: LocalStack;
const seen: InvocationRecord[] = [];
const logs: string[] = [];
let ids: Record<string, string>;

beforeAll(async () => {
  assembly = fixtureAssembly({
    modify: (t) => {
      t.Resources[idOf(t, 'CreatePaymentFunction', 'AWS::Lambda::Function')]!.Properties.Timeout = 2;
      // Fast redelivery: a 2 s visibility timeout (Lambda wants it at least the function's timeout),
      // no batching window, two receives before the DLQ.
      t.Resources[idOf(t, 'PaymentWorkerFunction', 'AWS::Lambda::Function')]!.Properties.Timeout = 2;
      const queue = t.Resources[idOf(t, 'PaymentsQueue', 'AWS::SQS::Queue')]!.Properties;
      queue.VisibilityTimeout = 2;
      queue.RedrivePolicy.maxReceiveCount = 2;
      const sqsMapping = Object.values(t.Resources).find((r) => r.Type === 'AWS::Lambda::EventSourceMapping' && !r.Properties.StartingPosition)!;
      sqsMapping.Properties.MaximumBatchingWindowInSeconds = 0;
      const streamMapping = Object.values(t.Resources).find((r) => r.Type === 'AWS::Lambda::EventSourceMapping' && r.Properties.StartingPosition)!;
      streamMapping.Properties.MaximumRetryAttempts = 1;
    },
  });
  const t = assembly.template;
  ids = {
    create: idOf(t, 'CreatePaymentFunction'),
    queries: idOf(t, 'PaymentQueriesFunction'),
    worker: idOf(t, 'PaymentWorkerFunction'),
    audit: idOf(t, 'AuditStreamFunction'),
    reconciler: idOf(t, 'ReconcilerFunction'),
    recovery: idOf(t, 'RecoveryApiFunction'),
    queue: idOf(t, 'PaymentsQueue'),
    dlq: idOf(t, 'PaymentsDlq'),
    auditDlq: idOf(t, 'AuditFailuresDlq'),
    table: idOf(t, 'PaymentsTable'),
  };
  stack = await startLocalStack({
    cdkOut: assembly.cdkOut,
    apiPort: 0,
    extraEnv: { FIXTURE_EXTRA: 'yes', PROVIDER_URL: 'http://127.0.0.1:9/provider' },
    schedules: false,
    log: (l) => logs.push(l),
  });
  stack.onInvocation((r) => seen.push(r));
});

afterAll(async () => {
  await stack?.stop();
  assembly?.remove();
});

const call = async (method: string, p: string, opts: { body?: string | Buffer; headers?: Record<string, string>; key?: string | null } = {}) => {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.key !== null) headers['x-api-key'] = opts.key ?? 'local-key-1';
  const res = await fetch(`${stack.apiUrl}${p}`, { method, headers, body: opts.body });
  const buf = Buffer.from(await res.arrayBuffer());
  let json: any;
  try {
    json = JSON.parse(buf.toString());
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, json, buf };
};

describe('API Gateway', () => {
  it('invokes the route function with the proxy event, path parameters, query and tenant', async () => {
    const res = await call('GET', '/api/payments/pay_9/status?x=1&x=2&y=%C3%A9', { headers: { 'X-Custom': 'v' }, key: 'local-key-2' });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-amzn-requestid')).toBeTruthy();
    const { event, fn, env, remaining } = res.json;
    expect(fn).toBe(ids.queries);
    expect(event).toMatchObject({
      resource: '/api/payments/{paymentID}/status',
      path: '/api/payments/pay_9/status',
      httpMethod: 'GET',
      pathParameters: { paymentID: 'pay_9' },
      queryStringParameters: { x: '2', y: 'é' },
      multiValueQueryStringParameters: { x: ['1', '2'], y: ['é'] },
      body: null,
      isBase64Encoded: false,
      requestContext: { stage: 'dev', resourcePath: '/api/payments/{paymentID}/status', identity: { apiKey: 'local-key-2', apiKeyId: localApiKeyId('local-key-2'), sourceIp: '127.0.0.1' } },
    });
    expect(event.headers['X-Custom']).toBe('v');
    expect(event.requestContext.requestId).toBe(res.headers.get('x-amzn-requestid'));
    expect(remaining).toBeGreaterThan(0);
    expect(remaining).toBeLessThanOrEqual(10_000);
    // The function's own environment: template values resolved locally, runtime variables, extraEnv.
    expect(env).toMatchObject({
      AWS_LAMBDA_FUNCTION_NAME: ids.queries,
      AWS_REGION: 'us-east-1',
      // The IAM proxies in front of the backends, and the function's own credentials.
      AWS_ENDPOINT_URL_DYNAMODB: stack.iam!.endpoints.dynamodb,
      AWS_ENDPOINT_URL_SQS: stack.iam!.endpoints.sqs,
      AWS_ENDPOINT_URL_LAMBDA: stack.iam!.endpoints.lambda,
      AWS_ACCESS_KEY_ID: stack.iam!.credentialsOf(ids.queries).accessKeyId,
      PAYMENTS_TABLE: stack.resources.tables[ids.table]!.name,
      // Only what its config contract reads: the queries function sends no messages.
      PAYMENTS_QUEUE_URL: null,
      PROVIDER_URL: 'http://127.0.0.1:9/provider',
      FIXTURE_EXTRA: 'yes',
      STAGE: 'dev',
    });
  });

  it('passes the body through and maps the result: status, headers, multi-value headers, base64', async () => {
    const posted = await call('POST', '/api/payments/process', { body: '{"a":1}', headers: { 'content-type': 'application/json' } });
    expect(posted.json.event.body).toBe('{"a":1}');
    expect(posted.json.fn).toBe(ids.create);

    const multi = await call('GET', '/api/payments/x?mode=multi');
    expect(multi.status).toBe(202);
    expect(multi.headers.get('x-one')).toBe('a');
    expect(multi.headers.get('x-many')).toBe('1, 2');
    expect(multi.buf.toString()).toBe('text');

    const binary = await call('GET', '/api/payments/x?mode=binary');
    expect([...binary.buf]).toEqual([0, 1, 2, 255]);
    expect(binary.headers.get('content-type')).toBe('application/octet-stream');
  });

  it('answers 502 in the template shape when the function throws or returns a malformed result', async () => {
    for (const mode of ['throw', 'malformed']) {
      const res = await call('GET', `/api/payments/x?mode=${mode}`);
      expect(res.status).toBe(502);
      expect(res.json.error).toMatchObject({ code: 'INTERNAL_ERROR', message: 'Internal server error', retryable: true });
    }
  });

  it('enforces the function Timeout (2 s here): a timed-out function is a 502', async () => {
    const started = Date.now();
    const res = await call('POST', '/api/payments/process?mode=sleep&ms=5000', { body: '{}' });
    expect(res.status).toBe(502);
    expect(Date.now() - started).toBeLessThan(4500);
    const r = seen.findLast((x) => x.functionId === ids.create)!;
    expect(r.outcome.ok).toBe(false);
    expect(!r.outcome.ok && r.outcome.error.errorType).toBe('Sandbox.Timedout');
  });

  it('rejects bodies over 10 MB with 413', async () => {
    const res = await call('POST', '/api/payments/process', { body: Buffer.alloc(10 * 1024 * 1024 + 1, 97) });
    expect(res.status).toBe(413);
  });

  it('answers 504 when the integration takes longer than the integration timeout', async () => {
    const registry = new FunctionRegistry(
      [{ id: ids.create, handler: 'index.handler', assetDir: path.join(assembly.cdkOut, 'asset.fixture'), timeoutSeconds: 5, memoryMb: 128, runtime: 'nodejs22.x', env: {} }],
      () => {},
    );
    const gw = await startApiGateway({ model: buildRestApi(assembly.template as any)!, registry, apiKeys: parseApiKeys('k:t'), port: 0, log: () => {}, integrationTimeoutMs: 300 });
    try {
      const res = await fetch(`${gw.url}/api/payments/process?mode=sleep&ms=2000`, { method: 'POST', headers: { 'x-api-key': 'k' }, body: '{}' });
      expect(res.status).toBe(504);
      expect(((await res.json()) as any).error.message).toBe('Endpoint request timed out');
    } finally {
      await gw.stop();
      await registry.stop();
    }
  });
});

describe('function runtime', () => {
  it('invoke() resolves with the result and rejects with the function error', async () => {
    const out = await stack.invoke('ReconcilerFunction', { hello: 1 });
    expect(out).toMatchObject({ echo: { hello: 1 }, fn: ids.reconciler });
    expect(out.remaining).toBeLessThanOrEqual(300_000);
    const err = await stack.invoke('ReconcilerFunction', { mode: 'throw' }).catch((e) => e);
    expect(err).toBeInstanceOf(LambdaInvocationError);
    expect(err.lambdaError).toMatchObject({ errorType: 'TypeError', errorMessage: 'direct boom' });
    await expect(stack.invoke('Payment', {})).rejects.toThrow(/several/);
    await expect(stack.invoke('NoSuchFunction', {})).rejects.toThrow(/No function/);
  });

  it('replaces a worker that blocks its event loop past the timeout, or exits', async () => {
    const before = await stack.invoke('CreatePaymentFunction', {});
    const spun = await stack.invokeOutcome('CreatePaymentFunction', { mode: 'spin', ms: 6000 });
    expect(!spun.ok && spun.error.errorType).toBe('Sandbox.Timedout');
    const after = await stack.invoke('CreatePaymentFunction', {});
    expect(after.initializedAt).toBeGreaterThan(before.initializedAt);

    const exited = await stack.invokeOutcome('CreatePaymentFunction', { mode: 'exit' });
    expect(!exited.ok && exited.error.errorType).toBe('Runtime.ExitError');
    expect(await stack.invoke('CreatePaymentFunction', { again: true })).toMatchObject({ echo: { again: true } });
  });

  it('runs invocations of one function concurrently', async () => {
    const started = Date.now();
    await Promise.all([1, 2, 3, 4, 5].map(() => stack.invoke('AuditApiFunction', { mode: 'sleep', ms: 600 })));
    expect(Date.now() - started).toBeLessThan(2400); // one after the other: 3000 ms
  });
});

describe('event sources', () => {
  it('API → table + queue (SDK clients inside the function) → worker via SQS and audit via the stream', async () => {
    const id = `chain-${Date.now()}`;
    const body = JSON.stringify({ id });
    const viaSqs = stack.waitForInvocation((r) => r.source === 'sqs' && (r.event as any).Records.some((x: any) => x.body === body));
    const viaStream = stack.waitForInvocation((r) => r.source === 'stream' && r.functionId === ids.audit && (r.event as any).Records.some((x: any) => x.dynamodb.Keys.id.S === id));
    const res = await call('POST', '/api/payments/process?mode=write', { body, key: 'local-key-1' });
    expect(res.status).toBe(201);

    const sqs = await viaSqs;
    expect(sqs.functionId).toBe(ids.worker);
    const record = (sqs.event as any).Records.find((x: any) => x.body === body);
    expect(record).toMatchObject({
      eventSource: 'aws:sqs',
      eventSourceARN: stack.resources.queues[ids.queue]!.arn,
      messageAttributes: { kind: { stringValue: 'fixture', dataType: 'String' } },
      attributes: { ApproximateReceiveCount: '1' },
    });
    expect(sqs.outcome.ok).toBe(true);

    const stream = await viaStream;
    expect(stream.functionId).toBe(ids.audit);
    const change = (stream.event as any).Records.find((x: any) => x.dynamodb.Keys.id.S === id);
    expect(change).toMatchObject({ eventName: 'INSERT', dynamodb: { NewImage: { id: { S: id }, meta: { M: {} }, tenant: { S: localApiKeyId('local-key-1') } }, StreamViewType: 'NEW_AND_OLD_IMAGES' } });
  });

  it('SQS: reported item failures come back after the visibility timeout and reach the DLQ after maxReceiveCount', async () => {
    const fail = `fail-${Date.now()}`;
    const ok = `ok-${Date.now()}`;
    const counts: string[] = [];
    const off = stack.onInvocation((r) => {
      if (r.source !== 'sqs') return;
      for (const rec of (r.event as any).Records) if (rec.body === fail) counts.push(rec.attributes.ApproximateReceiveCount);
    });
    const q = stack.resources.queues[ids.queue]!;
    await stack.clients.sqs.send(new SendMessageCommand({ QueueUrl: q.url, MessageBody: fail }));
    await stack.clients.sqs.send(new SendMessageCommand({ QueueUrl: q.url, MessageBody: ok }));
    const dlq = stack.resources.queues[ids.dlq]!;
    const dead = await eventually(async () => {
      const { Messages } = await stack.clients.sqs.send(new ReceiveMessageCommand({ QueueUrl: dlq.url, WaitTimeSeconds: 1, MaxNumberOfMessages: 10 }));
      return Messages?.find((m) => m.Body === fail);
    }, 20_000, 'the failed message in the DLQ');
    off();
    expect(dead.Body).toBe(fail);
    expect(counts).toEqual(['1', '2']);
    // The successful message of the batch was deleted, not redelivered.
    expect(seen.filter((r) => r.source === 'sqs' && (r.event as any).Records.some((x: any) => x.body === ok))).toHaveLength(1);
  });

  it('SQS: a function error leaves the whole batch for redelivery', async () => {
    const crash = `crash-${Date.now()}`;
    await stack.clients.sqs.send(new SendMessageCommand({ QueueUrl: stack.resources.queues[ids.queue]!.url, MessageBody: crash }));
    const second = await stack.waitForInvocation(
      (r) => r.source === 'sqs' && (r.event as any).Records.some((x: any) => x.body === crash && x.attributes.ApproximateReceiveCount === '2'),
      15_000,
    );
    expect(second.outcome.ok).toBe(false);
  });

  it('stream: a failing record is retried, then described on the on-failure queue, and the shard moves on', async () => {
    const poison = `poison-${Date.now()}`;
    const table = stack.resources.tables[ids.table]!;
    const attempts: boolean[] = [];
    const off = stack.onInvocation((r) => {
      // The table's stream has two consumers (audit and webhook events): count the audit function's attempts.
      if (r.source === 'stream' && r.functionId === ids.audit && (r.event as any).Records.some((x: any) => x.dynamodb.Keys.id.S === poison)) attempts.push(r.outcome.ok);
    });
    await stack.clients.dynamodb.send(new PutItemCommand({ TableName: table.name, Item: { id: { S: poison }, poison: { BOOL: true } } }));
    const failures = stack.resources.queues[ids.auditDlq]!;
    const msg = await eventually(async () => {
      const { Messages } = await stack.clients.sqs.send(new ReceiveMessageCommand({ QueueUrl: failures.url, WaitTimeSeconds: 1 }));
      return Messages?.[0];
    }, 20_000, 'the on-failure record');
    off();
    expect(attempts).toEqual([false, false]); // first attempt + MaximumRetryAttempts (1)
    const info = JSON.parse(msg.Body!);
    expect(info.requestContext).toMatchObject({ condition: 'RetryAttemptsExhausted', functionArn: expect.stringContaining(ids.audit) });
    expect(info.DDBStreamBatchInfo).toMatchObject({ batchSize: 1, streamArn: table.streamArn });

    const next = `after-${Date.now()}`;
    const wait = stack.waitForInvocation((r) => r.source === 'stream' && r.functionId === ids.audit && (r.event as any).Records.some((x: any) => x.dynamodb.Keys.id.S === next));
    await stack.clients.dynamodb.send(new PutItemCommand({ TableName: table.name, Item: { id: { S: next } } }));
    expect((await wait).outcome.ok).toBe(true);
  });
});

describe('Lambda endpoint and schedules', () => {
  it('lets a function invoke another through @aws-sdk/client-lambda', async () => {
    const res = await call('POST', '/api/recovery/process?mode=invoke', { body: '{}' });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ statusCode: 200, functionError: null, payload: { echo: { from: ids.recovery }, fn: ids.reconciler } });

    const failed = await call('POST', '/api/recovery/process?mode=invoke&target=throw', { body: '{}' });
    expect(failed.json).toMatchObject({ statusCode: 200, functionError: 'Unhandled', payload: { errorType: 'TypeError', errorMessage: 'direct boom' } });

    const wait = stack.waitForInvocation((r) => r.source === 'lambda' && r.functionId === ids.reconciler && (r.event as any).mode === 'async');
    const queued = await call('POST', '/api/recovery/process?mode=invoke&type=Event&target=async', { body: '{}' });
    expect(queued.json).toMatchObject({ statusCode: 202, payload: null });
    expect((await wait).outcome.ok).toBe(true);
  });

  it('answers ResourceNotFoundException for an unknown function', async () => {
    const res = await fetch(`${stack.endpoints.lambda}/2015-03-31/functions/Nope/invocations`, { method: 'POST', body: '{}' });
    expect(res.status).toBe(404);
    expect(res.headers.get('x-amzn-errortype')).toBe('ResourceNotFoundException');
    const byArn = await fetch(`${stack.endpoints.lambda}/2015-03-31/functions/${encodeURIComponent(`arn:aws:lambda:us-east-1:000000000000:function:${ids.reconciler}`)}/invocations`, {
      method: 'POST',
      body: '{"x":1}',
    });
    expect(await byArn.json()).toMatchObject({ echo: { x: 1 } });
  });

  it('fireSchedule() invokes the rule targets with a Scheduled Event', async () => {
    const outcomes = await stack.fireSchedule();
    expect(outcomes).toHaveLength(1);
    expect(outcomes[0]!.ok && JSON.parse(outcomes[0]!.payload)).toEqual({ scheduled: true, fn: ids.reconciler });
  });
});
