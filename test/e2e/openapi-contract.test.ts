/**
 * docs/openapi.yaml is the contract: its routes are exactly the synthesized template's, and real
 * responses of the local stack (success and error, with their headers) validate against it.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { startLocalRun } from '../../scripts/drill-env';
import { projectRoot } from '../helpers/project-root';

type Doc = {
  paths: Record<string, Record<string, { responses: Record<string, { $ref?: string; headers?: Record<string, unknown>; content?: Record<string, { schema: unknown }> }> }>>;
  components: { responses: Record<string, { headers?: Record<string, unknown>; content?: Record<string, { schema: unknown }> }> };
};
const doc = parse(readFileSync(path.join(projectRoot, 'docs/openapi.yaml'), 'utf8')) as Doc;
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];

const ajv = new Ajv2020({ strict: true, allErrors: true });
addFormats(ajv);
ajv.addVocabulary(['openapi', 'info', 'servers', 'security', 'tags', 'paths', 'components']);
ajv.addSchema({ $id: 'openapi', ...doc });

let run: Awaited<ReturnType<typeof startLocalRun>> | undefined;
let stack: NonNullable<typeof run>['stack'] | undefined;

beforeAll(async () => {
  run = await startLocalRun({ log: false, schedules: false, extraEnv: { RETRY_BASE_SECONDS: '0.05' } });
  stack = run.stack;
});

afterAll(async () => {
  await run?.stop();
});

/** Every response checked: its status is documented for the operation, and its body and headers match. */
const checked: string[] = [];

async function call(method: string, resource: string, url: string, opts: { body?: unknown; key?: string | null; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...opts.headers };
  if (opts.key !== null) headers['x-api-key'] = opts.key ?? 'local-key-1';
  const res = await fetch(`${stack!.apiUrl}${url}`, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  const body: any = await res.json();
  const op = doc.paths[resource]?.[method.toLowerCase()];
  expect(op, `${method} ${resource} is documented`).toBeDefined();
  let response = op!.responses[String(res.status)];
  expect(response, `${method} ${resource} documents ${res.status}`).toBeDefined();
  if (response!.$ref) response = doc.components.responses[response!.$ref.split('/').pop()!]!;
  const schema = response!.content?.['application/json']?.schema as { $ref: string };
  const validate = ajv.getSchema(`openapi${schema.$ref}`)!;
  expect(validate(body), `${method} ${url} → ${res.status}: ${ajv.errorsText(validate.errors)}`).toBe(true);
  // Retryable errors must carry Retry-After, and only headers the document declares for the response.
  if (body?.error?.retryable) expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
  for (const name of ['retry-after', 'location', 'idempotent-replayed']) {
    if (res.headers.get(name) === null) continue;
    const declared = Object.keys(response!.headers ?? {}).map((h) => h.toLowerCase());
    expect(declared, `${method} ${resource} → ${res.status} declares ${name}`).toContain(name);
  }
  checked.push(`${method} ${resource} ${res.status}`);
  return { status: res.status, headers: res.headers, body };
}

const newPayment = (key: string, overrides: Record<string, unknown> = {}) => ({
  idempotencyKey: key,
  amount: 19.99,
  currency: 'USD',
  paymentMethod: { type: 'card', token: 'tok_success' },
  metadata: { orderId: key },
  ...overrides,
});

describe('docs/openapi.yaml', () => {
  it('documents exactly the routes of the synthesized template', () => {
    // The local stack's routes are the template's API Gateway methods, read from cdk.out.
    const routes = stack!.routes.map((r) => `${r.method} ${r.path}`);
    const documented = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).filter((m) => METHODS.includes(m)).map((m) => `${m.toUpperCase()} ${p}`));
    expect(documented.sort()).toEqual(routes.sort());
    expect(routes.length).toBe(10);
  });

  it('every component schema compiles (JSON Schema 2020-12, strict)', () => {
    for (const name of Object.keys((doc.components as unknown as { schemas: object }).schemas)) {
      expect(ajv.getSchema(`openapi#/components/schemas/${name}`), name).toBeTypeOf('function');
    }
  });

  it('real responses of every route validate against it', async () => {
    const key = `oas-${randomUUID()}`;
    const created = await call('POST', '/api/payments/process', '/api/payments/process', { body: newPayment(key) });
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toBe(`/api/payments/${created.body.id}`);
    expect(created.body.amountMinor).toBe(1999);
    const replay = await call('POST', '/api/payments/process', '/api/payments/process', { body: newPayment(key) });
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    const id = created.body.id as string;

    await call('GET', '/api/payments/{paymentID}', `/api/payments/${id}`);
    await call('GET', '/api/payments/{paymentID}/status', `/api/payments/${id}/status`);
    await call('GET', '/api/payments/key/{idempotencyKey}', `/api/payments/key/${key}`);
    await call('POST', '/api/payments/validate-key', '/api/payments/validate-key', { body: { idempotencyKey: `free-${randomUUID()}` } });
    await call('POST', '/api/payments/validate-key', '/api/payments/validate-key', { body: newPayment(key, { amount: 20 }) });

    const list = await call('GET', '/api/payments', '/api/payments?limit=1');
    expect(list.body.items).toHaveLength(1);
    const next = await call('GET', '/api/payments', `/api/payments?limit=1&cursor=${list.body.nextCursor}`);
    expect(next.status).toBe(200);
    await call('GET', '/api/payments', '/api/payments?status=pending&limit=100');

    await call('GET', '/api/audit/payments', `/api/audit/payments?paymentID=${id}&verify=true`);
    await call('GET', '/api/audit/payments', '/api/audit/payments?limit=5');
    await call('POST', '/api/recovery/process', '/api/recovery/process');
    await call('GET', '/api/recovery/status', '/api/recovery/status');

    // Wait for the charge, then a retry of a successful payment is a 409 INVALID_STATE_TRANSITION.
    const deadline = Date.now() + 20_000;
    while (((await (await fetch(`${stack!.apiUrl}/api/payments/${id}/status`, { headers: { 'x-api-key': 'local-key-1' } })).json()) as { status: string }).status !== 'success') {
      if (Date.now() > deadline) throw new Error('payment not settled');
      await new Promise((r) => setTimeout(r, 200));
    }
    const retry = await call('POST', '/api/payments/{paymentID}/retry', `/api/payments/${id}/retry`, { body: { reason: 'contract test' } });
    expect(retry.body.error).toMatchObject({ code: 'INVALID_STATE_TRANSITION', details: [{ from: 'success' }] });
  });

  it('error responses validate against it: validation, 404, 422, bad cursor, 403', async () => {
    const bad = await call('POST', '/api/payments/process', '/api/payments/process', { body: newPayment(`oas-${randomUUID()}`, { amount: 1.234 }) });
    expect(bad.body.error.details[0]).toMatchObject({ field: 'amount', code: 'AMOUNT_PRECISION_EXCEEDED' });
    await call('GET', '/api/payments/{paymentID}', '/api/payments/pay_missing');
    const key = `oas-${randomUUID()}`;
    const first = await call('POST', '/api/payments/process', '/api/payments/process', { body: newPayment(key) });
    const mismatch = await call('POST', '/api/payments/process', '/api/payments/process', { body: newPayment(key, { amount: 5 }) });
    expect(mismatch.body.error.details).toEqual([expect.objectContaining({ paymentID: first.body.id })]);
    const page = await call('GET', '/api/payments', '/api/payments?limit=1');
    const cross = await call('GET', '/api/payments', `/api/payments?limit=1&cursor=${page.body.nextCursor}`, { key: 'local-key-2' });
    expect(cross.body.error.code).toBe('INVALID_CURSOR');
    await call('GET', '/api/payments', '/api/payments?limit=500');
    await call('GET', '/api/payments/{paymentID}', '/api/payments/pay_missing', { key: 'not-a-key' });
    expect(new Set(checked.map((c) => c.split(' ').slice(0, 2).join(' '))).size).toBe(10);
  });
});
