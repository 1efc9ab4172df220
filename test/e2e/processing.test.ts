/**
 * Processing, retries, crash recovery and the audit trail over HTTP on the local stack: the worker runs
 * from the SQS event source, the audit function from the real DynamoDB stream, the reconciler from
 * the schedule (sped up).
 */
import { randomUUID } from 'node:crypto';
import { GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fastRecoveryEnv } from '../../scripts/drill-env';
import { startLocalStack } from '@idempotent-payments/local-stack';
import { startProviderSimulator } from '@idempotent-payments/provider-simulator';
import { testLog } from '../helpers/test-log';
import { until } from '../helpers/until';
import { entryKeyOf } from '../../functions/core/audit';
import type { Payment } from '../../functions/core/payment';

const output = testLog();

let stack: Awaited<ReturnType<typeof startLocalStack>> | undefined;
let provider: Awaited<ReturnType<typeof startProviderSimulator>> | undefined;

beforeAll(async () => {
  provider = await startProviderSimulator({ port: 0, timeoutMs: 1500 });
  stack = await startLocalStack({
    apiPort: 0,
    log: output.log,
    // One minute of schedule every two seconds; short lease and backoff so recovery is quick.
    scheduleScale: 30,
    extraEnv: {
      ...fastRecoveryEnv(provider.url),
      FAULT_CRASH_AFTER_CHARGE: 'token',
      // The provider's 503s of different payments add up; keep the breaker out of these scenarios
      // (its own behaviour is covered by the unit tests).
      BREAKER_MIN_FAILING_PAYMENTS: '1000',
      BREAKER_FAILURE_RATE: '1',
    },
  });
});

afterAll(async () => {
  await stack?.stop();
  await provider?.stop();
});

async function call(method: string, path: string, body?: unknown, apiKey = 'local-key-1') {
  const res = await fetch(`${stack!.apiUrl}${path}`, {
    method,
    headers: { 'x-api-key': apiKey, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as any };
}

async function pay(token: string) {
  const res = await call('POST', '/api/payments/process', {
    idempotencyKey: `e2e-${randomUUID()}`,
    amount: 12.34,
    currency: 'EUR',
    paymentMethod: { type: 'card', token },
  });
  expect(res.status).toBe(201);
  return res.json.id as string;
}


const settled = (id: string) =>
  until(
    () => call('GET', `/api/payments/${id}`),
    (r) => ['success', 'failed', 'expired'].includes(r.json.status),
  ).then((r) => r.json);

/** The audit trail once it has caught up with the payment's current version. */
async function auditOf(id: string, version: number) {
  const r = await until(
    () => call('GET', `/api/audit/payments?paymentID=${id}&verify=true&limit=1000`),
    (r) => r.status === 200 && r.json.entries.length === version,
  );
  return r.json;
}

describe('processing over HTTP', () => {
  it('a good card reaches success with one charge, and its audit chain is versions 1..N', async () => {
    const id = await pay('tok_success');
    const p = await settled(id);
    expect(p).toMatchObject({ status: 'success', retryCount: 0, lastError: null });
    expect(p.processedAt).toBeTruthy();
    expect(provider!.ledger(id).filter((e) => e.status === 'succeeded')).toHaveLength(1);
    const audit = await auditOf(id, p.version);
    expect(audit.entries.map((e: any) => e.version)).toEqual([1, 2, 3]);
    expect(audit.entries.map((e: any) => e.toStatus)).toEqual(['pending', 'processing', 'success']);
    expect(audit.verification.ok).toBe(true);
    expect(JSON.stringify(audit)).not.toContain('tok_success');
  });

  it('a declined card fails after one attempt with a non-retryable error', async () => {
    const id = await pay('tok_decline');
    const p = await settled(id);
    expect(p).toMatchObject({ status: 'failed', retryCount: 0, lastError: { code: 'CARD_DECLINED', retryable: false } });
    expect(provider!.ledger(id)).toHaveLength(1);
    expect(provider!.ledger(id)[0]!.status).toBe('declined');
    const retry = await call('POST', `/api/payments/${id}/retry`);
    expect(retry.status).toBe(409);
    expect(retry.json.error.code).toBe('INVALID_STATE_TRANSITION');
  });

  it('a card failing transiently twice succeeds with retryCount 2; the trail goes processing → retrying → processing → success', async () => {
    const id = await pay('tok_transient_2');
    const p = await settled(id);
    expect(p).toMatchObject({ status: 'success', retryCount: 2 });
    expect(provider!.ledger(id).filter((e) => e.status === 'succeeded')).toHaveLength(1);
    const audit = await auditOf(id, p.version);
    expect(audit.entries.map((e: any) => e.toStatus)).toEqual(['pending', 'processing', 'retrying', 'processing', 'retrying', 'processing', 'success']);
    expect(audit.entries.map((e: any) => e.version)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(audit.verification.ok).toBe(true);
  });

  it('a worker killed between the charge and the state update causes no second charge', async () => {
    const id = await pay('tok_crash_after_charge');
    const p = await settled(id);
    expect(p.status).toBe('success');
    const ledger = provider!.ledger(id);
    expect(ledger).toHaveLength(1);
    expect(ledger[0]!.idempotencyKey).toBe(`confirm-${id}-1`);
    const audit = await auditOf(id, p.version);
    expect(audit.verification.ok).toBe(true);
  });

  it('tampering with an audit entry in DynamoDB makes verification fail and name the entry', async () => {
    const id = await pay('tok_success');
    const p = await settled(id);
    await auditOf(id, p.version);
    const tableOf = (prefix: string) => Object.entries(stack!.resources.tables).find(([k]) => k.startsWith(prefix))![1].name;
    // The entry's key is made of the payment's tenant, id and version 2's update time, as the service makes it.
    const stored = await stack!.clients.dynamodb.send(new GetItemCommand({ TableName: tableOf('PaymentsTable'), Key: { id: { S: id } }, ConsistentRead: true }));
    await stack!.clients.dynamodb.send(
      new UpdateItemCommand({
        TableName: tableOf('AuditLogTable'),
        Key: marshall(entryKeyOf(unmarshall(stored.Item!) as Payment, 2)!),
        UpdateExpression: 'SET actor = :a',
        ExpressionAttributeValues: { ':a': { S: 'someone-else' } },
      }),
    );
    const res = await call('GET', `/api/audit/payments?paymentID=${id}&verify=true`);
    expect(res.json.verification).toMatchObject({ ok: false, version: 2, problem: 'HASH_MISMATCH' });
  });
  it('a card failing forever fails after maxRetries with growing backoff; an operator re-open is audited', async () => {
    const id = await pay('tok_fail_always');
    const p = await settled(id);
    expect(p).toMatchObject({ status: 'failed', retryCount: 3, maxRetries: 3, lastError: { code: 'PROVIDER_UNAVAILABLE', retryable: true } });
    const audit = await auditOf(id, p.version);
    const caps = audit.entries
      .filter((e: any) => e.toStatus === 'retrying')
      .map((e: any) => Number(/backoff cap (\d+) ms/.exec(e.reason)?.[1]));
    expect(caps).toEqual([200, 400, 800]);
    expect(audit.verification.ok).toBe(true);

    // Re-opening is an operator action: the operator key (see DEFAULT_API_KEYS).
    const reopened = await call('POST', `/api/payments/${id}/retry`, { reason: 'provider incident resolved' }, 'local-operator-key');
    expect(reopened.status).toBe(202);
    expect(reopened.json.status).toBe('retrying');
    const again = await until(
      () => call('GET', `/api/payments/${id}`),
      (r) => r.json.status === 'failed' && r.json.version > p.version,
    );
    expect(again.json).toMatchObject({ retryCount: 6, maxRetries: 6 });
    const trail = await until(
      () => call('GET', `/api/audit/payments?paymentID=${id}&verify=true&limit=1000`),
      (r) => r.json.entries?.some((e: any) => e.action === 'operator_reopen'),
    ).then((r) => r.json);
    const reopen = trail.entries.find((e: any) => e.action === 'operator_reopen');
    expect(reopen).toMatchObject({ fromStatus: 'failed', toStatus: 'retrying', actor: 'operator:local', reason: 'provider incident resolved' });
    expect(trail.verification.ok).toBe(true);
  });

});
