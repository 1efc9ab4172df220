/**
 * Operability on the local stack, read the way CloudWatch reads it: the functions' stdout. A create,
 * a replay, a mismatch and a worker attempt must emit the named EMF metrics with low-cardinality
 * dimensions, and log lines must carry the request id and the X-Ray trace id.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalStack } from '@idempotent-payments/local-stack';
import { startProviderSimulator } from '@idempotent-payments/provider-simulator';
import { localProviderEnv } from '../../scripts/drill-env';
import { testLog } from '../helpers/test-log';

const output = testLog();
let stack: Awaited<ReturnType<typeof startLocalStack>> | undefined;
let provider: Awaited<ReturnType<typeof startProviderSimulator>> | undefined;

beforeAll(async () => {
  provider = await startProviderSimulator({ port: 0 });
  stack = await startLocalStack({ apiPort: 0, log: output.log, schedules: false, extraEnv: localProviderEnv(provider.url) });
});

afterAll(async () => {
  await stack?.stop();
  await provider?.stop();
});

interface Emf {
  readonly fn: string;
  readonly namespace: string;
  readonly dimensions: Record<string, string>;
  readonly values: Record<string, number | number[]>;
}

/** `[Function] {json}` lines of the local stack, parsed. */
function jsonLines(): { fn: string; body: Record<string, any> }[] {
  const out: { fn: string; body: Record<string, any> }[] = [];
  for (const line of output.lines()) {
    const m = /^\[([^\]]+)\] (\{.*\})$/.exec(line);
    if (!m) continue;
    try {
      out.push({ fn: m[1]!, body: JSON.parse(m[2]!) });
    } catch {
      /* not JSON */
    }
  }
  return out;
}

function emfBlocks(): Emf[] {
  return jsonLines()
    .filter((l) => l.body._aws)
    .flatMap(({ fn, body }) =>
      (body._aws.CloudWatchMetrics as { Namespace: string; Dimensions: string[][]; Metrics: { Name: string }[] }[]).map((d) => ({
        fn,
        namespace: d.Namespace,
        dimensions: Object.fromEntries(d.Dimensions.flat().map((n) => [n, String(body[n])])),
        values: Object.fromEntries(d.Metrics.map((m) => [m.Name, body[m.Name]])),
      })),
    );
}

const total = (blocks: Emf[], name: string, where: (b: Emf) => boolean = () => true) =>
  blocks
    .filter((b) => name in b.values && where(b))
    .flatMap((b) => [b.values[name]].flat())
    .reduce((a, v) => a + v, 0);

async function post(body: unknown) {
  const res = await fetch(`${stack!.apiUrl}/api/payments/process`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': 'local-key-1' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as any };
}

describe('metrics and logs', () => {
  it('emits the named EMF metrics for a create, a replay, a mismatch and a worker attempt; logs carry request and trace ids', async () => {
    const key = `obs-${randomUUID()}`;
    const body = { idempotencyKey: key, amount: 10, currency: 'USD', paymentMethod: { type: 'card', token: 'tok_success' } };
    const created = await post(body);
    expect(created.status).toBe(201);
    expect((await post(body)).status).toBe(201);
    expect((await post({ ...body, amount: 11 })).status).toBe(422);

    const deadline = Date.now() + 20_000;
    // Wait for both the worker's metric and its log line: they reach the captured output separately.
    const attemptLogged = () => jsonLines().some((l) => l.fn.startsWith('PaymentWorkerFunction') && l.body.message === 'attempt outcome');
    while ((total(emfBlocks(), 'PaymentAttempts') < 1 || !attemptLogged()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));

    const blocks = emfBlocks();
    expect(blocks.length).toBeGreaterThan(0);
    for (const b of blocks) {
      expect(b.namespace).toBe('IdempotentPayments');
      expect(b.dimensions).toMatchObject({ service: 'payments', stage: 'dev' });
      // Low cardinality: never a tenant, payment or request id as a dimension.
      for (const name of Object.keys(b.dimensions)) expect(['service', 'stage', 'outcome', 'state', 'reason']).toContain(name);
    }
    const fromCreate = (b: Emf) => b.fn.startsWith('CreatePaymentFunction');
    expect(total(blocks, 'PaymentsCreated', fromCreate)).toBe(1);
    expect(total(blocks, 'PaymentsReplayed', fromCreate)).toBe(1);
    expect(total(blocks, 'IdempotencyKeyMismatches', fromCreate)).toBe(1);
    const attempts = blocks.filter((b) => 'PaymentAttempts' in b.values);
    expect(attempts.map((b) => [b.fn.replace(/[0-9A-F]{8}$/, ''), b.dimensions.outcome])).toEqual([['PaymentWorkerFunction', 'succeeded']]);
    expect(total(blocks, 'AuditEntriesWritten')).toBeGreaterThanOrEqual(1);

    // Log lines: the mismatch is logged by the create function, the attempt by the worker.
    const logs = jsonLines().filter((l) => typeof l.body.message === 'string');
    const rejected = logs.find((l) => l.fn.startsWith('CreatePaymentFunction') && l.body.message === 'request rejected');
    expect(rejected?.body).toMatchObject({ requestId: expect.any(String), function_request_id: expect.any(String), cold_start: expect.any(Boolean) });
    expect(rejected?.body.xray_trace_id).toMatch(/^1-[0-9a-f]{8}-[0-9a-f]{24}$/);
    const attempt = logs.find((l) => l.fn.startsWith('PaymentWorkerFunction') && l.body.message === 'attempt outcome');
    expect(attempt?.body).toMatchObject({ paymentId: created.json.id, outcome: 'succeeded', function_request_id: expect.any(String) });
    expect(attempt?.body.xray_trace_id).toMatch(/^1-[0-9a-f]{8}-[0-9a-f]{24}$/);
  });
});
