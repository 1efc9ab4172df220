/**
 * The package as a user gets it: `npm pack` (which builds dist/ with declarations) is installed from
 * the tarball into a fresh project outside this repository, a small consumer is type-checked with the
 * `tsc --init` defaults and with module resolution nodenext, node16 and bundler, then compiled and run
 * on plain Node (no tsx, no loader) against a local HTTP server.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tsc = path.resolve(packageDir, '..', '..', 'node_modules', '.bin', 'tsc');

let dir: string;
let files: string[] = [];
let server: http.Server | undefined;
let typeCheck: { ok: boolean; output: string } = { ok: false, output: 'not run' };
const seen: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders }> = [];

/** Answers as the API would, enough for the consumer: a create, a 503 then the payment, a hang, a 400, a recovery run. */
function startServer(): Promise<string> {
  let reads = 0;
  const payment = { id: 'pay_1', paymentID: 'pay_1', idempotencyKey: 'order-1', status: 'pending', amount: 12.5, amountMinor: 1250, currency: 'USD', paymentMethod: { type: 'card', token: '*****cess' }, metadata: {}, retryCount: 0, maxRetries: 3, lastError: null, createdAt: '2030-01-01T00:00:00.000Z', updatedAt: '2030-01-01T00:00:00.000Z', processedAt: null, nextRetryAt: null, version: 1 };
  const error = (code: string, retryable: boolean, field?: string) => ({ error: { code, message: code, retryable, timestamp: '2030-01-01T00:00:00.000Z', requestId: 'r', ...(field ? { details: [{ field, code, message: code }] } : {}) } });
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers });
      const send = (status: number, json: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(json));
      };
      if (req.headers['x-api-key'] !== 'k1') return send(403, error('FORBIDDEN', false));
      if (req.method === 'POST' && req.url === '/api/payments/process') {
        const amount = JSON.parse(body).amount;
        if (amount === 1.234) return send(400, error('AMOUNT_PRECISION_EXCEEDED', false, 'amount'));
        return send(201, payment, { location: '/api/payments/pay_1' });
      }
      if (req.url === '/api/payments/pay_1') return reads++ === 0 ? send(503, error('SERVICE_UNAVAILABLE', true), { 'retry-after': '0' }) : send(200, payment);
      if (req.url === '/api/payments/slow') return; // never answers
      if (req.method === 'POST' && req.url === '/api/recovery/process') return send(202, { runId: 'run_1', status: 'running', alreadyRunning: false, startedAt: '2030-01-01T00:00:00.000Z' });
      send(404, error('ROUTE_NOT_FOUND', false));
    });
  });
  return new Promise((resolve) => server!.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server!.address() as AddressInfo).port}`)));
}

const consumer = (baseUrl: string) => `import { createPaymentsClient, PaymentsApiError, type Payment, type PaymentStatus } from '@idempotent-payments/client';

const payments = createPaymentsClient({ baseUrl: ${JSON.stringify(baseUrl)}, apiKey: 'k1', retry: { baseDelayMs: 1 } });

const { payment, replayed, idempotencyKey } = await payments.createPayment(
  { amount: 12.5, currency: 'USD', paymentMethod: { type: 'card', token: 'tok_success' }, metadata: { orderId: '1' } },
  { idempotencyKey: 'order-1' },
);
const status: PaymentStatus = payment.status;
if (false as boolean) {
  // @ts-expect-error the types come from the contract: a currency is a string
  await payments.createPayment({ amount: 1, currency: 840, paymentMethod: { type: 'card', token: 't' } });
  // @ts-expect-error and a status is one of the contract's
  const nope: PaymentStatus = 'done';
  void nope;
}
const read: Payment = await payments.getPayment(payment.id);

let timedOut = '';
try {
  await payments.getPayment('slow', { timeoutMs: 50 });
} catch (err) {
  timedOut = (err as Error).name;
}
let aborted = '';
const controller = new AbortController();
setTimeout(() => controller.abort(), 50);
try {
  await payments.getPayment('slow', { signal: controller.signal });
} catch (err) {
  aborted = (err as Error).name;
}
let apiError: Record<string, unknown> = {};
try {
  await payments.createPayment({ amount: 1.234, currency: 'USD', paymentMethod: { type: 'card', token: 'tok_success' } });
} catch (err) {
  if (err instanceof PaymentsApiError) apiError = { status: err.status, code: err.code, field: err.details[0]?.field };
}
const recovery = await payments.startRecovery({ idempotencyKey: 'run 1' });
console.log(JSON.stringify({ id: payment.id, status, replayed, idempotencyKey, read: read.status, timedOut, aborted, apiError, runId: recovery.runId }));
`;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'client-consumer-'));
  // npm pack runs prepack: the build into dist/.
  const packed = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: packageDir });
  const info = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as Array<{ filename: string; files: Array<{ path: string }> }>;
  files = info[0]!.files.map((f) => f.path).sort();
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  // From the tarball, with its dependency from the npm cache (the registry only for what the cache lacks).
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', '--no-package-lock', path.join(dir, info[0]!.filename)], { cwd: dir });
  const baseUrl = await startServer();
  writeFileSync(path.join(dir, 'consumer.ts'), consumer(baseUrl));

  // One tsc process for every configuration: the --init one also emits consumer.js for the run below.
  await run(tsc, ['--init'], { cwd: dir });
  const variants: Record<string, Record<string, unknown>> = {
    'nodenext-libchecked': { module: 'nodenext', moduleResolution: 'nodenext', skipLibCheck: false },
    node16: { module: 'node16', moduleResolution: 'node16', target: 'es2022' },
    bundler: { module: 'esnext', moduleResolution: 'bundler' },
  };
  for (const [name, options] of Object.entries(variants)) {
    writeFileSync(path.join(dir, `tsconfig.${name}.json`), JSON.stringify({ extends: './tsconfig.json', compilerOptions: { ...options, noEmit: true }, files: ['consumer.ts'] }));
  }
  typeCheck = await run(tsc, ['-b', 'tsconfig.json', ...Object.keys(variants).map((n) => `tsconfig.${n}.json`)], { cwd: dir }).then(
    () => ({ ok: true, output: '' }),
    (err: { stdout?: string }) => ({ ok: false, output: err.stdout ?? String(err) }),
  );
}, 180_000);

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the published package', () => {
  it('ships the build with its declarations, the README and the licence; no sources, tests or scripts', () => {
    expect(files).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'package.json', 'dist/index.js', 'dist/index.d.ts', 'dist/api-types.d.ts', 'dist/retry-policy.js']));
    expect(files.filter((f) => !f.startsWith('dist/') && !['LICENSE', 'README.md', 'package.json'].includes(f))).toEqual([]);
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
    const pkg = JSON.parse(readFileSync(path.join(dir, 'node_modules/@idempotent-payments/client/package.json'), 'utf8'));
    expect(pkg.private).toBeUndefined();
    expect(pkg.exports['.']).toMatchObject({ types: './dist/index.d.ts', import: './dist/index.js' });
    expect(Object.keys(pkg.dependencies)).toEqual(['openapi-fetch']);
  });

  it('type-checks in a fresh project: tsc --init defaults, and module resolution nodenext (libraries checked), node16 and bundler', () => {
    expect(typeCheck).toEqual({ ok: true, output: '' });
  });

  it('runs on plain Node: typed calls, a retried 503, a timeout, an abort, a typed API error, an action with its key', async () => {
    expect(typeCheck.ok).toBe(true);
    const { stdout } = await run(process.execPath, ['consumer.js'], { cwd: dir, timeout: 30_000 });
    expect(JSON.parse(stdout)).toEqual({
      id: 'pay_1',
      status: 'pending',
      replayed: false,
      idempotencyKey: 'order-1',
      read: 'pending',
      timedOut: 'TimeoutError',
      aborted: 'AbortError',
      apiError: { status: 400, code: 'AMOUNT_PRECISION_EXCEEDED', field: 'amount' },
      runId: 'run_1',
    });
    const create = seen.find((r) => r.url === '/api/payments/process')!;
    expect(create.headers).toMatchObject({ 'idempotency-key': 'order-1', 'content-type': 'application/json' });
    expect(seen.filter((r) => r.url === '/api/payments/pay_1')).toHaveLength(2);
    // The timed-out read was tried maxAttempts (4) times; the aborted one once.
    expect(seen.filter((r) => r.url === '/api/payments/slow')).toHaveLength(5);
    expect(seen.find((r) => r.url === '/api/recovery/process')!.headers['idempotency-key']).toBe('run 1');
  });
});
