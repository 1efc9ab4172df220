/**
 * The local stack against the project's real synthesized template (cdk.out; `npm test` synthesizes
 * first): what it derives from the template (routes, event sources, schedules, environments, gateway
 * responses), the event shapes it builds, and a live run of the real bundles: API key checks, an SQS
 * message reaching the worker, a table write reaching the audit stream function, the schedule firing
 * the reconciler. Assertions are about delivery, not about payment behaviour.
 */
import { PutItemCommand } from '@aws-sdk/client-dynamodb';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayResponse } from '../src/api-gateway-responses';
import { localApiKeyId, parseApiKeys } from '../src/api-keys';
import { buildRestApi, listRoutes, type RestApiModel } from '../src/api-model';
import { buildProxyEvent, proxyResultToResponse } from '../src/api-proxy-integration';
import { matchResource, methodFor } from '../src/api-route-matcher';
import { batchItemFailures, eventSourceMappings } from '../src/event-sources';
import { functionDefinitions } from '../src/function-definitions';
import { startLocalStack, type InvocationRecord, type LocalStack } from '../src/local-stack';
import { nextCronTime, parseCron, parseRate, scheduledEvent, scheduleRules } from '../src/scheduler';
import { sqsRecord } from '../src/sqs-poller';
import { streamRecord } from '../src/stream-records';
import { loadSynthesizedStack, type LocalResources } from '../src/template';
import { idOf, projectRoot } from './helpers/local-stack-fixtures';
import * as path from 'node:path';

const synthesized = loadSynthesizedStack(path.join(projectRoot, 'cdk.out'));
const { template } = synthesized;
const api = buildRestApi(template) as RestApiModel;
const fn = (prefix: string) => idOf(template, prefix, 'AWS::Lambda::Function');

const ctx = { requestId: 'req-1', extendedRequestId: 'ext-1', stage: api.stageName, apiId: api.apiId };
const segments = (p: string) => p.split('/').filter(Boolean);

describe('API model from the template', () => {
  it('builds every route from the Resource / Method chain, with its function and API key setting', () => {
    const routes = listRoutes(api);
    const methods = Object.values(template.Resources).filter((r) => r.Type === 'AWS::ApiGateway::Method');
    expect(routes).toHaveLength(methods.length);
    expect(routes).toContainEqual({ method: 'POST', path: '/api/payments/process', functionId: fn('CreatePaymentFunction'), apiKeyRequired: true, integrationType: 'AWS_PROXY' });
    expect(routes).toContainEqual(expect.objectContaining({ method: 'GET', path: '/api/payments/{paymentID}', functionId: fn('PaymentQueriesFunction') }));
    expect(routes).toContainEqual(expect.objectContaining({ method: 'POST', path: '/api/payments/{paymentID}/retry', functionId: fn('RetryPaymentFunction') }));
    expect(routes.every((r) => r.functionId && template.Resources[r.functionId]?.Type === 'AWS::Lambda::Function')).toBe(true);
    expect(api.stageName).toBe('dev');
  });

  it('prefers static path parts over {param} siblings, and backtracks into the parameter branch', () => {
    expect(matchResource(api.root, segments('/api/payments/process'))?.node.path).toBe('/api/payments/process');
    expect(matchResource(api.root, segments('/api/payments/validate-key'))?.node.path).toBe('/api/payments/validate-key');
    const byId = matchResource(api.root, segments('/api/payments/pay_123'));
    expect(byId?.node.path).toBe('/api/payments/{paymentID}');
    expect(byId?.pathParameters).toEqual({ paymentID: 'pay_123' });
    expect(matchResource(api.root, segments('/api/payments/pay_1/status'))?.pathParameters).toEqual({ paymentID: 'pay_1' });
    expect(matchResource(api.root, segments('/api/payments/key/k-9'))?.pathParameters).toEqual({ idempotencyKey: 'k-9' });
    // "process" is static but has no /status child: the {paymentID} branch serves it.
    expect(matchResource(api.root, segments('/api/payments/process/status'))?.pathParameters).toEqual({ paymentID: 'process' });
    expect(matchResource(api.root, segments('/api/nothing'))).toBeUndefined();
    // A resource without the method: no fallback to a sibling.
    const key = matchResource(api.root, segments('/api/payments/key'));
    expect(key?.node.path).toBe('/api/payments/key');
    expect(methodFor(key!.node, 'GET')).toBeUndefined();
  });

  it('shapes gateway errors with the template GatewayResponses', () => {
    const forbidden = gatewayResponse(api, 'INVALID_API_KEY', ctx);
    expect(forbidden.status).toBe(403);
    expect(JSON.parse(forbidden.body.toString())).toEqual({
      error: { code: 'FORBIDDEN', message: 'Forbidden', retryable: false, timestamp: expect.stringMatching(/^\d{2}\/\w{3}\/\d{4}:\d{2}:\d{2}:\d{2} \+0000$/), requestId: 'req-1' },
    });
    expect(forbidden.headers['x-amzn-ErrorType']).toEqual(['ForbiddenException']);
    // The template maps x-request-id from context.requestId.
    expect(forbidden.headers['x-request-id']).toEqual(['req-1']);

    const missing = gatewayResponse(api, 'MISSING_AUTHENTICATION_TOKEN', ctx);
    expect(missing.status).toBe(403);
    expect(JSON.parse(missing.body.toString()).error.message).toBe('Missing Authentication Token');

    // A Lambda failure is a DEFAULT_5XX: the template's template, API Gateway's 502.
    const failed = gatewayResponse(api, 'DEFAULT_5XX', ctx);
    expect(failed.status).toBe(502);
    expect(JSON.parse(failed.body.toString())).toEqual({
      error: { code: 'INTERNAL_ERROR', message: 'Internal server error', retryable: true, timestamp: expect.any(String), requestId: 'req-1' },
    });
    // The template's INTEGRATION_TIMEOUT response, with API Gateway's 504.
    const timeout = gatewayResponse(api, 'INTEGRATION_TIMEOUT', ctx);
    expect(timeout.status).toBe(504);
    expect(JSON.parse(timeout.body.toString()).error).toMatchObject({ code: 'UPSTREAM_TIMEOUT', message: 'Endpoint request timed out' });
    // Without any GatewayResponse, API Gateway's own body.
    const bare = gatewayResponse({ gatewayResponses: new Map() }, 'INVALID_API_KEY', ctx);
    expect(JSON.parse(bare.body.toString())).toEqual({ message: 'Forbidden' });
    // Header mappings from context variables, literals and request headers.
    const mapped = gatewayResponse(
      { gatewayResponses: new Map([['DEFAULT_4XX', { type: 'DEFAULT_4XX', templates: {}, parameters: { 'gatewayresponse.header.a': 'context.requestId', 'gatewayresponse.header.b': "'x'", 'gatewayresponse.header.c': 'method.request.header.Origin', 'gatewayresponse.header.d': 'context.nope' } }]]) },
      'INVALID_API_KEY',
      { ...ctx, requestHeaders: { origin: 'o' } },
    );
    expect(mapped.headers).toMatchObject({ a: ['req-1'], b: ['x'], c: ['o'] });
    expect(mapped.headers).not.toHaveProperty('d');
  });

  it('builds REST proxy events (payload format 1.0)', () => {
    const match = matchResource(api.root, segments('/api/payments/pay%201/status'.replace('%20', '_')))!;
    const event = buildProxyEvent(
      api,
      match,
      {
        method: 'GET',
        path: '/api/payments/pay_1/status',
        query: 'a=1&a=2&b=x%20y',
        rawHeaders: ['Host', '127.0.0.1:3000', 'X-Api-Key', 'k1', 'Accept', 'a', 'Accept', 'b'],
        body: Buffer.alloc(0),
        sourceIp: '127.0.0.1',
      },
      { requestId: 'r', extendedRequestId: 'e', apiKey: 'k1', apiKeyId: 'tenant-1', requestTimeEpoch: Date.UTC(2026, 0, 2, 3, 4, 5) },
    );
    expect(event).toMatchObject({
      resource: '/api/payments/{paymentID}/status',
      path: '/api/payments/pay_1/status',
      httpMethod: 'GET',
      pathParameters: { paymentID: 'pay_1' },
      queryStringParameters: { a: '2', b: 'x y' },
      multiValueQueryStringParameters: { a: ['1', '2'], b: ['x y'] },
      body: null,
      isBase64Encoded: false,
      stageVariables: null,
    });
    expect(event.headers.Accept).toBe('b');
    expect(event.multiValueHeaders.Accept).toEqual(['a', 'b']);
    expect(event.requestContext).toMatchObject({
      requestId: 'r',
      resourcePath: '/api/payments/{paymentID}/status',
      httpMethod: 'GET',
      stage: 'dev',
      path: '/dev/api/payments/pay_1/status',
      requestTime: '02/Jan/2026:03:04:05 +0000',
      identity: { apiKey: 'k1', apiKeyId: 'tenant-1', sourceIp: '127.0.0.1' },
    });
  });

  it('validates Lambda proxy results as API Gateway does', () => {
    const ok = proxyResultToResponse(JSON.stringify({ statusCode: 201, headers: { a: 'x' }, multiValueHeaders: { b: ['1', '2'] }, body: '{}' }));
    expect(ok).toMatchObject({ status: 201, headers: { a: ['x'], b: ['1', '2'], 'Content-Type': ['application/json'] } });
    expect(proxyResultToResponse(JSON.stringify({ statusCode: 200, body: 'AAE=', isBase64Encoded: true }))).toMatchObject({ body: Buffer.from([0, 1]) });
    for (const bad of [null, 'text', [], { body: '{}' }, { statusCode: 200, body: { a: 1 } }, { statusCode: 200, extra: 1 }, { statusCode: 99 }, { statusCode: 200, headers: { a: {} } }]) {
      expect(proxyResultToResponse(JSON.stringify(bad)), JSON.stringify(bad)).toHaveProperty('malformed');
    }
  });

  it('parses API keys', () => {
    expect([...parseApiKeys('local-key-1:tenant-1, k2:t:2')]).toEqual([
      ['local-key-1', 'tenant-1'],
      ['k2', 't:2'],
    ]);
    expect(() => parseApiKeys('nokey')).toThrow(/key:tenant/);
  });
});

describe('event sources, schedules and environments from the template', () => {
  it('reads the SQS and stream mappings', () => {
    const { mappings, warnings } = eventSourceMappings(template);
    expect(warnings).toEqual([]);
    const sqs = mappings.find((m) => m.kind === 'sqs')!;
    expect(sqs).toMatchObject({ functionId: fn('PaymentWorkerFunction'), sourceId: idOf(template, 'PaymentsQueue'), batchSize: 10, reportBatchItemFailures: true, enabled: true });
    expect(sqs.maxBatchingWindowSeconds).toBe(1);
    const stream = mappings.find((m) => m.kind === 'dynamodb-stream')!;
    expect(stream).toMatchObject({ functionId: fn('AuditStreamFunction'), sourceId: idOf(template, 'PaymentsTable'), reportBatchItemFailures: true });
    expect(stream.props).toMatchObject({ StartingPosition: 'TRIM_HORIZON', BisectBatchOnFunctionError: true });
  });

  it('reads the schedule and builds scheduled events', () => {
    const rules = scheduleRules(template);
    expect(rules).toHaveLength(1);
    expect(rules[0]).toMatchObject({ expression: 'rate(1 minute)', enabled: true, targets: [{ functionId: fn('ReconcilerFunction') }] });
    const event = scheduledEvent(rules[0]!, rules[0]!.targets[0]!, new Date(Date.UTC(2026, 0, 1, 0, 0, 0, 123))) as any;
    expect(event).toMatchObject({ source: 'aws.events', 'detail-type': 'Scheduled Event', time: '2026-01-01T00:00:00Z', detail: {} });
    expect(event.resources[0]).toMatch(/^arn:aws:events:us-east-1:000000000000:rule\/ReconcilerSchedule/);
  });

  it('parses rate and cron expressions', () => {
    expect(parseRate('rate(1 minute)')).toBe(60_000);
    expect(parseRate('rate(5 minutes)')).toBe(300_000);
    expect(parseRate('rate(2 hours)')).toBe(7_200_000);
    expect(parseRate('cron(0 * * * ? *)')).toBeUndefined();
    const at = (c: string, from: Date) => new Date(nextCronTime(parseCron(c)!, from.getTime())!).toISOString();
    expect(at('cron(0/15 * * * ? *)', new Date('2026-03-01T10:07:30Z'))).toBe('2026-03-01T10:15:00.000Z');
    expect(at('cron(30 9 ? * MON-FRI *)', new Date('2026-03-06T10:00:00Z'))).toBe('2026-03-09T09:30:00.000Z'); // Fri → Mon
    expect(at('cron(0 0 1 JAN ? *)', new Date('2026-03-01T00:00:00Z'))).toBe('2027-01-01T00:00:00.000Z');
    expect(() => parseCron('cron(0 0 L * ? *)')).toThrow(/not supported/);
  });

  it("resolves each function's environment to local resources and adds the runtime variables", () => {
    const local: LocalResources = {
      tables: Object.fromEntries(Object.entries(template.Resources).filter(([, r]) => r.Type === 'AWS::DynamoDB::Table').map(([id]) => [id, { name: `local-${id}`, streamArn: 'arn:stream' }])),
      queues: Object.fromEntries(
        Object.entries(template.Resources)
          .filter(([, r]) => r.Type === 'AWS::SQS::Queue')
          .map(([id]) => [id, { url: `http://127.0.0.1:1/000000000000/${id}`, arn: `arn:aws:sqs:us-east-1:000000000000:${id}`, name: id }]),
      ),
    };
    const defs = functionDefinitions(synthesized, local, { dynamodb: 'http://127.0.0.1:1', sqs: 'http://127.0.0.1:2', lambda: 'http://127.0.0.1:3' }, { PROVIDER_URL: 'http://127.0.0.1:4' });
    expect(defs.map((d) => d.id).sort()).toEqual(Object.entries(template.Resources).filter(([, r]) => r.Type === 'AWS::Lambda::Function').map(([id]) => id).sort());
    const worker = defs.find((d) => d.id === fn('PaymentWorkerFunction'))!;
    expect(worker.handler).toBe('index.handler');
    expect(worker.timeoutSeconds).toBe(template.Resources[worker.id]!.Properties!.Timeout);
    expect(worker.assetDir).toBe(path.join(synthesized.assemblyDir, template.Resources[worker.id]!.Metadata!['aws:asset:path']));
    expect(worker.env).toMatchObject({
      PAYMENTS_TABLE: `local-${idOf(template, 'PaymentsTable')}`,
      PAYMENTS_QUEUE_URL: `http://127.0.0.1:1/000000000000/${idOf(template, 'PaymentsQueue')}`,
      AWS_REGION: 'us-east-1',
      AWS_LAMBDA_FUNCTION_NAME: worker.id,
      AWS_ENDPOINT_URL_DYNAMODB: 'http://127.0.0.1:1',
      AWS_ENDPOINT_URL_SQS: 'http://127.0.0.1:2',
      AWS_ENDPOINT_URL_LAMBDA: 'http://127.0.0.1:3',
      PROVIDER_URL: 'http://127.0.0.1:4', // extraEnv wins over the template
      STAGE: 'dev',
    });
    expect(worker.env.AWS_ACCESS_KEY_ID).toBeTruthy();
    const recovery = defs.find((d) => d.id === fn('RecoveryApiFunction'))!;
    expect(recovery.env.RECONCILER_FUNCTION_NAME).toBe(fn('ReconcilerFunction'));
  });

  it('builds SQS and stream records', () => {
    const rec = sqsRecord(
      {
        MessageId: 'm1',
        ReceiptHandle: 'h1',
        Body: 'hello',
        MD5OfBody: 'md5',
        Attributes: { ApproximateReceiveCount: '2', SentTimestamp: '1', SenderId: 'x', ApproximateFirstReceiveTimestamp: '2' },
        MessageAttributes: { a: { DataType: 'String', StringValue: 'v' }, b: { DataType: 'Binary', BinaryValue: new Uint8Array([1]) } },
      },
      'arn:q',
    );
    expect(rec).toMatchObject({
      messageId: 'm1',
      receiptHandle: 'h1',
      body: 'hello',
      eventSource: 'aws:sqs',
      eventSourceARN: 'arn:q',
      awsRegion: 'us-east-1',
      attributes: { ApproximateReceiveCount: '2' },
      messageAttributes: { a: { stringValue: 'v', dataType: 'String', stringListValues: [] }, b: { binaryValue: 'AQ==', dataType: 'Binary' } },
    });
    const s = streamRecord(
      {
        eventID: 'e1',
        eventName: 'MODIFY',
        dynamodb: {
          ApproximateCreationDateTime: 1700000000,
          Keys: { id: { S: '1' } },
          // DynamoDB Local's {} for an empty map is repaired.
          NewImage: { id: { S: '1' }, meta: {}, nested: { M: { inner: {} } }, list: { L: [{}] } },
          OldImage: { id: { S: '1' } },
          SequenceNumber: '42',
          SizeBytes: 10,
          StreamViewType: 'NEW_AND_OLD_IMAGES',
        },
      },
      'arn:stream',
    );
    expect(s).toMatchObject({ eventID: 'e1', eventName: 'MODIFY', eventSource: 'aws:dynamodb', eventSourceARN: 'arn:stream', awsRegion: 'us-east-1' });
    expect(s.dynamodb).toMatchObject({ ApproximateCreationDateTime: 1700000000, SequenceNumber: '42', Keys: { id: { S: '1' } }, OldImage: { id: { S: '1' } } });
    expect(s.dynamodb!.NewImage).toEqual({ id: { S: '1' }, meta: { M: {} }, nested: { M: { inner: { M: {} } } }, list: { L: [{ M: {} }] } });
  });

  it('reads partial batch responses as Lambda does', () => {
    const ids = ['a', 'b'];
    expect(batchItemFailures('null', ids)).toEqual(new Set());
    expect(batchItemFailures('{"statusCode":200}', ids)).toEqual(new Set());
    expect(batchItemFailures('{"batchItemFailures":[]}', ids)).toEqual(new Set());
    expect(batchItemFailures('{"batchItemFailures":[{"itemIdentifier":"b"}]}', ids)).toEqual(new Set(['b']));
    expect(batchItemFailures('{"batchItemFailures":[{"itemIdentifier":"zzz"}]}', ids)).toBe('all');
    expect(batchItemFailures('{"batchItemFailures":[{"itemIdentifier":""}]}', ids)).toBe('all');
    expect(batchItemFailures('{"batchItemFailures":[{}]}', ids)).toBe('all');
  });
});

describe('the real bundles on the local stack', () => {
  let stack: LocalStack | undefined;
  const seen: InvocationRecord[] = [];
  const logs: string[] = [];

  beforeAll(async () => {
    // rate(1 minute) scaled 30×: the reconciler fires every 2 s.
    stack = await startLocalStack({ cdkOut: path.join(projectRoot, 'cdk.out'), apiPort: 0, scheduleScale: 30, log: (l) => logs.push(l) });
    stack.onInvocation((r) => seen.push(r));
  });

  afterAll(async () => {
    await stack?.stop();
  });

  const post = (p: string, headers: Record<string, string> = {}) =>
    fetch(`${stack!.apiUrl}${p}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{}' });

  it('exposes endpoints on 127.0.0.1 and the created resources', () => {
    expect(stack!.apiUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    for (const e of Object.values(stack!.endpoints)) expect(e).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(Object.keys(stack!.resources.tables).sort()).toEqual(Object.entries(template.Resources).filter(([, r]) => r.Type === 'AWS::DynamoDB::Table').map(([id]) => id).sort());
    expect(Object.keys(stack!.resources.queues)).toHaveLength(Object.values(template.Resources).filter((r) => r.Type === 'AWS::SQS::Queue').length);
  });

  it('answers 403 without a key, with an unknown key, on an unknown route and on a wrong method', async () => {
    for (const [res, message] of [
      [await post('/api/payments/process'), 'Forbidden'],
      [await post('/api/payments/process', { 'x-api-key': 'not-a-key' }), 'Forbidden'],
      [await post('/api/nowhere', { 'x-api-key': 'local-key-1' }), 'Missing Authentication Token'],
      [await fetch(`${stack!.apiUrl}/api/payments/process`, { headers: { 'x-api-key': 'local-key-1' } }), 'Missing Authentication Token'],
    ] as const) {
      expect(res.status).toBe(403);
      const body = (await res.json()) as any;
      expect(body.error).toMatchObject({ code: 'FORBIDDEN', message });
      expect(body.error.requestId).toBe(res.headers.get('x-amzn-requestid'));
    }
    expect(seen.filter((r) => r.source === 'api')).toHaveLength(0);
  });

  it("passes a request with a key to its function, with the key's opaque id as apiKeyId (also under the stage prefix)", async () => {
    for (const prefix of ['', '/dev']) {
      const wait = stack!.waitForInvocation((r) => r.source === 'api' && r.functionId === fn('CreatePaymentFunction'));
      const res = await post(`${prefix}/api/payments/process`, { 'x-api-key': 'local-key-2' });
      expect([403, 404, 502]).not.toContain(res.status);
      const r = await wait;
      expect((r.event as any).requestContext.identity).toMatchObject({ apiKey: 'local-key-2', apiKeyId: localApiKeyId('local-key-2') });
      expect((r.event as any).resource).toBe('/api/payments/process');
    }
  });

  it('delivers a message sent to the payments queue to the worker function', async () => {
    const queue = stack!.resources.queues[idOf(template, 'PaymentsQueue')]!;
    const body = JSON.stringify({ probe: 'local-stack-test', at: Date.now() });
    const wait = stack!.waitForInvocation((r) => r.source === 'sqs' && (r.event as any).Records.some((x: any) => x.body === body));
    await stack!.clients.sqs.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: body }));
    const r = await wait;
    expect(r.functionId).toBe(fn('PaymentWorkerFunction'));
    expect((r.event as any).Records[0]).toMatchObject({ eventSource: 'aws:sqs', eventSourceARN: queue.arn, attributes: { ApproximateReceiveCount: '1' } });
  });

  it('delivers a write to the payments table to the audit stream function', async () => {
    const table = stack!.resources.tables[idOf(template, 'PaymentsTable')]!;
    const id = `probe-${Date.now()}`;
    // Both consumers of the table's stream get it (the webhook event function too); this waits for the audit one.
    const wait = stack!.waitForInvocation((r) => r.source === 'stream' && r.functionId === fn('AuditStreamFunction') && (r.event as any).Records.some((x: any) => x.dynamodb.Keys.id?.S === id));
    await stack!.clients.dynamodb.send(new PutItemCommand({ TableName: table.name, Item: { id: { S: id }, note: { S: 'probe' } } }));
    const r = await wait;
    expect(r.functionId).toBe(fn('AuditStreamFunction'));
    const record = (r.event as any).Records.find((x: any) => x.dynamodb.Keys.id.S === id);
    expect(record).toMatchObject({ eventName: 'INSERT', eventSource: 'aws:dynamodb', eventSourceARN: table.streamArn, dynamodb: { NewImage: { id: { S: id }, note: { S: 'probe' } } } });
  });

  it('fires the schedule: the reconciler runs with a Scheduled Event', async () => {
    const r = await stack!.waitForInvocation((x) => x.source === 'schedule', 10_000);
    expect(r.functionId).toBe(fn('ReconcilerFunction'));
    expect(r.event).toMatchObject({ source: 'aws.events', 'detail-type': 'Scheduled Event' });
    const fired = await stack!.fireSchedule('ReconcilerSchedule');
    expect(fired).toHaveLength(1);
  });

  it('stop() can be called twice', async () => {
    const s = stack!;
    stack = undefined;
    await s.stop();
    await s.stop();
    await expect(fetch(`${s.apiUrl}/api/payments/process`)).rejects.toThrow();
  });
});
