/**
 * The local stack enforces each function's IAM role from the synthesized template: a function's own
 * credentials, sent to the proxies its environment names, get AWS's AccessDeniedException for what its
 * role lacks and go through for what it has. Recovery, which needs DeleteItem on its run lock, runs twice
 * in a row to completion with the roles enforced.
 */
import { randomUUID } from 'node:crypto';
import { DeleteItemCommand, DynamoDBClient, GetItemCommand, PutItemCommand, QueryCommand } from '@aws-sdk/client-dynamodb';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalStack, type LocalStack } from '@idempotent-payments/local-stack';
import { startProviderSimulator } from '@idempotent-payments/provider-simulator';
import { OPEN_PAYMENTS_INDEX } from '../../functions/shared/config-contract';
import { localProviderEnv } from '../../scripts/drill-env';

let stack: LocalStack | undefined;
let provider: Awaited<ReturnType<typeof startProviderSimulator>> | undefined;
const clients: Array<{ destroy(): void }> = [];

beforeAll(async () => {
  provider = await startProviderSimulator({ port: 0 });
  stack = await startLocalStack({
    apiPort: 0,
    schedules: false,
    log: false,
    extraEnv: { ...localProviderEnv(provider.url), RECOVERY_RUN_LEASE_SECONDS: '10' },
  });
}, 60_000);

afterAll(async () => {
  for (const c of clients) c.destroy();
  await stack?.stop();
  await provider?.stop();
});

const s = () => stack!;
const region = 'us-east-1';
const idOf = (prefix: string, ids: string[]) => ids.find((id) => id.startsWith(prefix))!;
const table = (prefix: string) => s().resources.tables[idOf(prefix, Object.keys(s().resources.tables))]!.name;
const queueUrl = (prefix: string) => s().resources.queues[idOf(prefix, Object.keys(s().resources.queues))]!.url;

/** Clients signed with a function's own credentials, sent where its environment sends them: the proxies. */
function as(functionPrefix: string) {
  const credentials = s().iam!.credentialsOf(functionPrefix);
  const c = {
    dynamodb: new DynamoDBClient({ endpoint: s().iam!.endpoints.dynamodb, region, credentials, maxAttempts: 1 }),
    sqs: new SQSClient({ endpoint: s().iam!.endpoints.sqs, region, credentials, useQueueUrlAsEndpoint: false, maxAttempts: 1 }),
    lambda: new LambdaClient({ endpoint: s().iam!.endpoints.lambda, region, credentials, maxAttempts: 1 }),
  };
  clients.push(...Object.values(c));
  return c;
}

describe('IAM enforced by the local stack', () => {
  it('denies what a role lacks with AWS AccessDeniedException, naming the role, action and resource', async () => {
    const payments = table('PaymentsTable');
    const queries = as('PaymentQueriesFunction');
    const err = await queries.dynamodb
      .send(new DeleteItemCommand({ TableName: payments, Key: { id: { S: `pay_${randomUUID()}` } } }))
      .catch((e: unknown) => e as { name: string; message: string; $metadata: { httpStatusCode: number } });
    expect(err).toMatchObject({ name: 'AccessDeniedException', $metadata: { httpStatusCode: 400 } });
    expect((err as { message: string }).message).toMatch(
      new RegExp(`^User: arn:aws:sts::000000000000:assumed-role/PaymentQueriesFunctionServiceRole\\w+/PaymentQueriesFunction\\w+ is not authorized to perform: dynamodb:DeleteItem on resource: arn:aws:dynamodb:\\S+:table/${payments} `),
    );

    // The audit writer may send to its own failure queue, not to the payments queue.
    const audit = as('AuditStreamFunction');
    const sqsErr = await audit.sqs
      .send(new SendMessageCommand({ QueueUrl: queueUrl('PaymentsQueue'), MessageBody: '{}' }))
      .catch((e: unknown) => e as { name: string; message: string });
    expect(sqsErr).toMatchObject({ name: expect.stringMatching(/^AccessDenied/), message: expect.stringContaining('sqs:sendmessage on resource: arn:aws:sqs:') });
    await expect(audit.sqs.send(new SendMessageCommand({ QueueUrl: queueUrl('AuditFailuresDlq'), MessageBody: '{}' }))).resolves.toBeDefined();

    // Only the recovery API may invoke the reconciler.
    const reconciler = idOf('ReconcilerFunction', s().functions);
    const invoke = new InvokeCommand({ FunctionName: reconciler, InvocationType: 'DryRun' });
    await expect(queries.lambda.send(invoke)).rejects.toMatchObject({ name: 'AccessDeniedException' });
    await expect(as('RecoveryApiFunction').lambda.send(invoke)).resolves.toMatchObject({ StatusCode: 204 });

    expect(s().iam!.denials().map((d) => d.action)).toEqual(['dynamodb:DeleteItem', 'sqs:SendMessage', 'lambda:InvokeFunction']);
  });

  it('allows what a role has, index ARNs included', async () => {
    const payments = table('PaymentsTable');
    await expect(as('PaymentQueriesFunction').dynamodb.send(new GetItemCommand({ TableName: payments, Key: { id: { S: 'pay_none' } } }))).resolves.toBeDefined();
    await expect(
      as('ReconcilerFunction').dynamodb.send(
        new QueryCommand({
          TableName: payments,
          IndexName: OPEN_PAYMENTS_INDEX,
          KeyConditionExpression: 'openShard = :s',
          ExpressionAttributeValues: { ':s': { S: 'none' } },
        }),
      ),
    ).resolves.toBeDefined();
    // A role's Query on the table does not cover another table.
    await expect(
      as('ReconcilerFunction').dynamodb.send(
        new QueryCommand({ TableName: table('AuditLogTable'), KeyConditionExpression: 'tenantShard = :p', ExpressionAttributeValues: { ':p': { S: 'x' } } }),
      ),
    ).rejects.toMatchObject({ name: 'AccessDeniedException' });
  });

  it('the recovery status counts an open payment under the real grants: the index names it, BatchGetItem reads its status', async () => {
    const key = s().apiKeys.has('local-operator-key') ? 'local-operator-key' : [...s().apiKeys.keys()][0]!;
    // An open payment written straight to the table (not through the API, so no worker moves it), due
    // far ahead, so no recovery run of this file acts on it.
    const admin = new DynamoDBClient({ endpoint: s().endpoints.dynamodb, region, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
    clients.push(admin);
    const id = `pay_iam_${randomUUID()}`;
    const Item = { id: { S: id }, status: { S: 'retrying' }, version: { N: '3' }, openShard: { S: 'open#00' }, dueAt: { N: String(Date.now() + 86_400_000) } };
    await admin.send(new PutItemCommand({ TableName: table('PaymentsTable'), Item }));
    try {
      const deniedBefore = s().iam!.denials().length;
      const res = await fetch(`${s().apiUrl}/api/recovery/status`, { headers: { 'x-api-key': key } });
      const body = (await res.json()) as { openPayments: Record<string, number | boolean> };
      expect(res.status, JSON.stringify(body)).toBe(200);
      expect(body.openPayments).toMatchObject({ retrying: expect.any(Number), total: expect.any(Number), complete: true });
      expect(body.openPayments.retrying).toBeGreaterThanOrEqual(1);
      expect(s().iam!.denials().slice(deniedBefore)).toEqual([]);
    } finally {
      await admin.send(new DeleteItemCommand({ TableName: table('PaymentsTable'), Key: { id: { S: id } } }));
    }
  });

  it('two recovery runs in a row both complete: the run lock is released under the real grants', async () => {
    // An operator key once the stack has one; a tenant key until then.
    const key = s().apiKeys.has('local-operator-key') ? 'local-operator-key' : [...s().apiKeys.keys()][0]!;
    const headers = { 'x-api-key': key, 'content-type': 'application/json' };
    const statusOf = async (runId: string) => {
      const res = await fetch(`${s().apiUrl}/api/recovery/status`, { headers });
      const body = (await res.json()) as { runs: Array<{ runId: string; status: string }> };
      return body.runs.find((r) => r.runId === runId)?.status;
    };
    // Finished means the reconciler's invocation returned: it records the run, then releases the lock.
    const runOnce = async () => {
      const reconciled = s().waitForInvocation((r) => r.functionId.startsWith('ReconcilerFunction'), 30_000);
      const res = await fetch(`${s().apiUrl}/api/recovery/process`, { method: 'POST', headers, body: '{}' });
      const body = (await res.json()) as { runId: string; alreadyRunning: boolean };
      expect(res.status).toBe(202);
      expect(body.alreadyRunning).toBe(false);
      expect((await reconciled).outcome.ok).toBe(true);
      return body.runId;
    };
    const deniedBefore = s().iam!.denials().length;
    const first = await runOnce();
    const second = await runOnce();
    expect(second).not.toBe(first);
    expect([await statusOf(first), await statusOf(second)]).toEqual(['completed', 'completed']);
    expect(s().iam!.denials().slice(deniedBefore)).toEqual([]);
  }, 60_000);
});
