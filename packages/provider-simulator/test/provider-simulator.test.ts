import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createHttpProvider } from '../../../functions/adapters/provider/http-provider';
import type { ChargeRequest, ChargeResult, PaymentProvider } from '../../../functions/core/provider';
import { startProviderSimulator, type ProviderSimulator } from '../src/provider-simulator';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** How long a simulated timeout hangs, and the client budget: the client gives up first. */
const SIM_TIMEOUT_MS = 800;
const CLIENT_TIMEOUT_MS = 300;

let sim: ProviderSimulator;
let provider: PaymentProvider;
const tmpDirs: string[] = [];
const extraSims: ProviderSimulator[] = [];
const children: ChildProcess[] = [];

beforeAll(async () => {
  sim = await startProviderSimulator({ port: 0, timeoutMs: SIM_TIMEOUT_MS, seed: 1 });
  provider = createHttpProvider({ baseUrl: sim.url, timeoutMs: CLIENT_TIMEOUT_MS });
});

afterEach(() => sim?.setFaults({}));

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null && c.pid) process.kill(c.pid, 'SIGKILL');
  await Promise.allSettled([sim?.stop(), ...extraSims.map((s) => s.stop())]);
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

const newTmpDir = (): string => {
  const d = mkdtempSync(path.join(tmpdir(), 'provider-sim-'));
  tmpDirs.push(d);
  return d;
};

function chargeReq(token: string, attempt = 1, paymentId = `pay_${randomUUID()}`): ChargeRequest {
  return { idempotencyKey: `${paymentId}:${attempt}`, paymentId, amountMinor: 4200, currency: 'EUR', token };
}

const succeededId = (r: ChargeResult): string => {
  if (r.outcome !== 'succeeded') throw new Error(`expected succeeded, got ${JSON.stringify(r)}`);
  return r.chargeId;
};

describe('provider simulator through the http adapter', () => {
  it('answers /health and refuses a non-loopback host', async () => {
    const res = await fetch(`${sim.url}/health`);
    expect(res.status).toBe(200);
    expect(sim.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    await expect(startProviderSimulator({ host: '0.0.0.0' as '127.0.0.1' })).rejects.toThrow(/127\.0\.0\.1/);
  });

  it('tok_success charges once and records a succeeded ledger entry', async () => {
    const req = chargeReq('tok_success');
    const chargeId = succeededId(await provider.charge(req));
    expect(sim.ledger(req.paymentId)).toEqual([
      expect.objectContaining({ idempotencyKey: req.idempotencyKey, paymentId: req.paymentId, amountMinor: 4200, currency: 'EUR', chargeId, status: 'succeeded' }),
    ]);
    await expect(provider.lookup(req.idempotencyKey)).resolves.toEqual({ found: true, result: { outcome: 'succeeded', chargeId } });
  });

  it('an unknown token behaves like tok_success', async () => {
    expect((await provider.charge(chargeReq('tok_visa_4242'))).outcome).toBe('succeeded');
  });

  it.each([
    ['tok_decline', 'CARD_DECLINED'],
    ['tok_insufficient_funds', 'INSUFFICIENT_FUNDS'],
    ['tok_invalid', 'INVALID_TOKEN'],
  ])('%s is declined with %s and the decline is recorded', async (token, code) => {
    const req = chargeReq(token);
    await expect(provider.charge(req)).resolves.toMatchObject({ outcome: 'declined', code });
    expect(sim.ledger(req.paymentId)).toEqual([expect.objectContaining({ status: 'declined', code })]);
    await expect(provider.lookup(req.idempotencyKey)).resolves.toMatchObject({ found: true, result: { outcome: 'declined', code } });
    // Replaying the key returns the same decline without a new entry.
    await expect(provider.charge(req)).resolves.toMatchObject({ outcome: 'declined', code });
    expect(sim.ledger(req.paymentId)).toHaveLength(1);
  });

  it('tok_transient_2 fails the first two attempts of a payment, then succeeds', async () => {
    const paymentId = `pay_${randomUUID()}`;
    const a1 = chargeReq('tok_transient_2', 1, paymentId);
    await expect(provider.charge(a1)).resolves.toMatchObject({ outcome: 'retryable_error', code: 'PROVIDER_UNAVAILABLE' });
    // The same key again is the same attempt: still failing, and nothing recorded for it.
    await expect(provider.charge(a1)).resolves.toMatchObject({ outcome: 'retryable_error' });
    await expect(provider.lookup(a1.idempotencyKey)).resolves.toEqual({ found: false });
    await expect(provider.charge(chargeReq('tok_transient_2', 2, paymentId))).resolves.toMatchObject({ outcome: 'retryable_error' });
    const chargeId = succeededId(await provider.charge(chargeReq('tok_transient_2', 3, paymentId)));
    expect(sim.ledger(paymentId)).toEqual([expect.objectContaining({ idempotencyKey: `${paymentId}:3`, chargeId, status: 'succeeded' })]);
  });

  it('tok_fail_always always answers 503 and never charges', async () => {
    const paymentId = `pay_${randomUUID()}`;
    for (let attempt = 1; attempt <= 3; attempt++) {
      await expect(provider.charge(chargeReq('tok_fail_always', attempt, paymentId))).resolves.toMatchObject({
        outcome: 'retryable_error',
        code: 'PROVIDER_UNAVAILABLE',
      });
    }
    expect(sim.ledger(paymentId)).toEqual([]);
  });

  it('tok_rate_limited answers 429 with Retry-After: 1', async () => {
    const req = chargeReq('tok_rate_limited');
    await expect(provider.charge(req)).resolves.toEqual({
      outcome: 'retryable_error',
      code: 'RATE_LIMITED',
      message: expect.any(String),
      retryAfterMs: 1000,
    });
    expect(sim.ledger(req.paymentId)).toEqual([]);
  });

  it('tok_slow_<ms> succeeds after the delay', async () => {
    const started = Date.now();
    expect((await provider.charge(chargeReq('tok_slow_80'))).outcome).toBe('succeeded');
    expect(Date.now() - started).toBeGreaterThanOrEqual(75);
  });

  it('tok_timeout: the client sees unknown, but the charge happened and lookup finds it', async () => {
    const req = chargeReq('tok_timeout');
    await expect(provider.charge(req)).resolves.toMatchObject({ outcome: 'unknown', code: 'PROVIDER_TIMEOUT' });
    const found = await provider.lookup(req.idempotencyKey);
    expect(found).toMatchObject({ found: true, result: { outcome: 'succeeded' } });
    const chargeId = found.found && found.result.outcome === 'succeeded' ? found.result.chargeId : '';
    // Retrying the same key replays the recorded charge at once instead of charging again.
    await expect(provider.charge(req)).resolves.toEqual({ outcome: 'succeeded', chargeId });
    expect(sim.ledger(req.paymentId)).toHaveLength(1);
  });

  it('a late response after a long hang still carries the recorded charge', async () => {
    const patient = createHttpProvider({ baseUrl: sim.url, timeoutMs: SIM_TIMEOUT_MS + 1000 });
    const req = chargeReq('tok_timeout');
    const chargeId = succeededId(await patient.charge(req));
    expect(sim.ledger(req.paymentId)).toEqual([expect.objectContaining({ chargeId })]);
  });

  it('a replayed key returns the first result; a changed request gets IDEMPOTENCY_MISMATCH', async () => {
    const req = chargeReq('tok_success');
    const first = succeededId(await provider.charge(req));
    await expect(provider.charge(req)).resolves.toEqual({ outcome: 'succeeded', chargeId: first });
    await expect(provider.charge({ ...req, amountMinor: 1 })).resolves.toMatchObject({ outcome: 'declined', code: 'IDEMPOTENCY_MISMATCH' });
    await expect(provider.charge({ ...req, currency: 'USD' })).resolves.toMatchObject({ code: 'IDEMPOTENCY_MISMATCH' });
    await expect(provider.charge({ ...req, token: 'tok_decline' })).resolves.toMatchObject({ code: 'IDEMPOTENCY_MISMATCH' });
    expect(sim.ledger(req.paymentId)).toHaveLength(1);
  });

  it.each(['tok_success', 'tok_slow_60'])('concurrent charges with one key (%s) make exactly one ledger entry', async (token) => {
    const req = chargeReq(token);
    const results = await Promise.all(Array.from({ length: 25 }, () => provider.charge(req)));
    const ids = new Set(results.map(succeededId));
    expect(ids.size).toBe(1);
    expect(sim.ledger(req.paymentId)).toHaveLength(1);
  });

  it('a concurrent request with the same key but other parameters gets IDEMPOTENCY_MISMATCH', async () => {
    const req = chargeReq('tok_slow_60');
    const [a, b] = await Promise.all([provider.charge(req), provider.charge({ ...req, amountMinor: 99 })]);
    expect(a.outcome).toBe('succeeded');
    expect(b).toMatchObject({ outcome: 'declined', code: 'IDEMPOTENCY_MISMATCH' });
    expect(sim.ledger(req.paymentId)).toHaveLength(1);
  });

  it('lookup of a key never charged is not found', async () => {
    await expect(provider.lookup(`pay_${randomUUID()}:1`)).resolves.toEqual({ found: false });
  });

  it('rejects malformed charge requests without recording', async () => {
    const res = await fetch(`${sim.url}/v1/charges`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ idempotencyKey: 'x:1', paymentId: 'x', amountMinor: -5, currency: 'EUR', token: 'tok_success' }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: 'VALIDATION_ERROR' } });
    expect(sim.ledger('x')).toEqual([]);
  });

  it('serves the ledger over HTTP, filtered by paymentId', async () => {
    const req = chargeReq('tok_success');
    await provider.charge(req);
    const all = (await (await fetch(`${sim.url}/v1/ledger`)).json()) as { entries: unknown[] };
    expect(all.entries.length).toBe(sim.ledger().length);
    const one = (await (await fetch(`${sim.url}/v1/ledger?paymentId=${encodeURIComponent(req.paymentId)}`)).json()) as { entries: unknown[] };
    expect(one.entries).toEqual([expect.objectContaining({ idempotencyKey: req.idempotencyKey, status: 'succeeded' })]);
  });
});

describe('fault injection', () => {
  async function runBatch(n: number): Promise<string[]> {
    const outcomes: string[] = [];
    for (let i = 0; i < n; i++) outcomes.push((await provider.charge(chargeReq('tok_success'))).outcome);
    return outcomes;
  }

  it('errorRate with a fixed seed is deterministic and 503s never charge', async () => {
    const before = sim.ledger().length;
    sim.setFaults({ errorRate: 0.5, seed: 42 });
    const first = await runBatch(20);
    sim.setFaults({ errorRate: 0.5, seed: 42 });
    const second = await runBatch(20);

    expect(second).toEqual(first);
    const ok = first.filter((o) => o === 'succeeded').length;
    expect(ok).toBeGreaterThan(0);
    expect(ok).toBeLessThan(20);
    expect(first.every((o) => o === 'succeeded' || o === 'retryable_error')).toBe(true);
    expect(sim.ledger().length - before).toBe(2 * ok);
  });

  it('faults do not touch tokens with a fixed outcome', async () => {
    sim.setFaults({ errorRate: 1 });
    await expect(provider.charge(chargeReq('tok_decline'))).resolves.toMatchObject({ outcome: 'declined' });
    await expect(provider.charge(chargeReq('tok_success'))).resolves.toMatchObject({ outcome: 'retryable_error' });
  });

  it('timeoutRate records the charge and then hangs, so the client sees unknown and lookup finds it', async () => {
    // Set over HTTP to exercise POST /v1/faults.
    const res = await fetch(`${sim.url}/v1/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ timeoutRate: 1, seed: 7 }),
    });
    expect(await res.json()).toEqual({ faults: { errorRate: 0, timeoutRate: 1, latencyMs: 0 } });
    const req = chargeReq('tok_success');
    await expect(provider.charge(req)).resolves.toMatchObject({ outcome: 'unknown' });
    await expect(provider.lookup(req.idempotencyKey)).resolves.toMatchObject({ found: true, result: { outcome: 'succeeded' } });
  });

  it('latencyMs delays charges; invalid fault settings are refused', async () => {
    sim.setFaults({ latencyMs: 60 });
    const started = Date.now();
    expect((await provider.charge(chargeReq('tok_success'))).outcome).toBe('succeeded');
    expect(Date.now() - started).toBeGreaterThanOrEqual(55);
    expect(() => sim.setFaults({ errorRate: 2 })).toThrow(RangeError);
    const res = await fetch(`${sim.url}/v1/faults`, { method: 'POST', body: JSON.stringify({ errorRate: -1 }) });
    expect(res.status).toBe(400);
  });
});

describe('ledger persistence', () => {
  it('survives stop and restart, keeps idempotency, and POST /v1/reset clears it', async () => {
    const ledgerFile = path.join(newTmpDir(), 'nested', 'ledger.jsonl');
    const s1 = await startProviderSimulator({ ledgerFile, timeoutMs: SIM_TIMEOUT_MS });
    extraSims.push(s1);
    const p1 = createHttpProvider({ baseUrl: s1.url, timeoutMs: CLIENT_TIMEOUT_MS });
    const ok = chargeReq('tok_success');
    const declined = chargeReq('tok_decline');
    const chargeId = succeededId(await p1.charge(ok));
    await p1.charge(declined);
    await s1.stop();
    expect(readFileSync(ledgerFile, 'utf8').trim().split('\n')).toHaveLength(2);

    // A torn last line, as left by a kill -9 mid-write, is skipped.
    appendFileSync(ledgerFile, '{"idempotencyKey":"torn');
    const s2 = await startProviderSimulator({ ledgerFile, timeoutMs: SIM_TIMEOUT_MS });
    extraSims.push(s2);
    const p2 = createHttpProvider({ baseUrl: s2.url, timeoutMs: CLIENT_TIMEOUT_MS });
    expect(s2.ledger().map((e) => [e.idempotencyKey, e.status])).toEqual([
      [ok.idempotencyKey, 'succeeded'],
      [declined.idempotencyKey, 'declined'],
    ]);
    await expect(p2.lookup(ok.idempotencyKey)).resolves.toEqual({ found: true, result: { outcome: 'succeeded', chargeId } });
    await expect(p2.charge(ok)).resolves.toEqual({ outcome: 'succeeded', chargeId });
    await expect(p2.charge({ ...ok, amountMinor: 1 })).resolves.toMatchObject({ code: 'IDEMPOTENCY_MISMATCH' });
    const other = chargeReq('tok_success');
    await p2.charge(other);
    expect(s2.ledger()).toHaveLength(3);
    const lines = readFileSync(ledgerFile, 'utf8').split('\n').filter((l) => l.trim() !== '');
    expect(JSON.parse(lines.at(-1)!)).toMatchObject({ idempotencyKey: other.idempotencyKey });

    const res = await fetch(`${s2.url}/v1/reset`, { method: 'POST' });
    expect(res.status).toBe(200);
    expect(s2.ledger()).toEqual([]);
    await expect(p2.lookup(ok.idempotencyKey)).resolves.toEqual({ found: false });
    expect(readFileSync(ledgerFile, 'utf8')).toBe('');
    await s2.stop();
  });

  /** Starts the CLI in a child process and resolves with its URL once it listens. */
  function startCli(ledgerFile: string): Promise<{ child: ChildProcess; url: string }> {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'packages/provider-simulator/src/provider-simulator.ts', '--port', '0', '--ledger', ledgerFile, '--timeout-ms', '5000'],
      { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(child);
    return new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`simulator CLI did not start: ${out}`)), 8000);
      const onData = (d: Buffer): void => {
        out += d.toString();
        const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve({ child, url: m[1]! });
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`simulator CLI exited with ${code}: ${out}`));
      });
    });
  }

  const exited = (child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> =>
    child.exitCode !== null || child.signalCode !== null
      ? Promise.resolve({ code: child.exitCode, signal: child.signalCode })
      : new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

  it('CLI: a charge whose response was lost survives kill -9; the restarted CLI stops cleanly on SIGTERM', async () => {
    const ledgerFile = path.join(newTmpDir(), 'ledger.jsonl');
    const first = await startCli(ledgerFile);
    const p1 = createHttpProvider({ baseUrl: first.url, timeoutMs: CLIENT_TIMEOUT_MS });
    const req = chargeReq('tok_timeout');
    await expect(p1.charge(req)).resolves.toMatchObject({ outcome: 'unknown' });
    process.kill(first.child.pid!, 'SIGKILL');
    expect(await exited(first.child)).toMatchObject({ signal: 'SIGKILL' });

    const second = await startCli(ledgerFile);
    const p2 = createHttpProvider({ baseUrl: second.url, timeoutMs: 2000 });
    await expect(p2.lookup(req.idempotencyKey)).resolves.toMatchObject({ found: true, result: { outcome: 'succeeded' } });
    process.kill(second.child.pid!, 'SIGTERM');
    expect(await exited(second.child)).toEqual({ code: 0, signal: null });
  }, 20_000);
});
