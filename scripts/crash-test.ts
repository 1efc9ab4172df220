/**
 * Crash test: under a steady load of payments, kill -9 the whole local stack mid-flight (DynamoDB Local,
 * the in-memory SQS emulator with its messages, the functions with their leases, the provider
 * simulator), restart it on the same data directory, let the reconciler run, and check that every
 * accepted payment ends in a final status with at most one charge.
 *
 *   npx tsx scripts/crash-test.ts [--seconds 6] [--concurrency 8]
 *
 * The stack runs in a child process group (this file with --child), so SIGKILL reaches every process
 * of it, by process group id.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '@idempotent-payments/local-stack';
import { cliOrExit, reporter } from './cli-args';

// One command line for both roles: the parent (what a user runs) and the child it restarts.
const args = cliOrExit('crash-test', {
  seconds: { type: 'number', default: 6, min: 1, max: 600, doc: 'how long clients send payments before the kill' },
  concurrency: { type: 'number', default: 8, min: 1, max: 256, integer: true, doc: 'clients sending at once' },
  child: { type: 'boolean', doc: 'internal: run the local stack (started by the parent)' },
  'data-dir': { type: 'string', doc: 'internal: the child\'s data directory' },
  port: { type: 'number', default: 0, min: 0, max: 65535, integer: true, doc: 'internal: the child\'s API port' },
});
const out = reporter(args.json);


// ---- child: the local stack with the provider simulator, on a persistent data directory ----------
async function child() {
  const { startLocalStack } = await import('@idempotent-payments/local-stack');
  const { startProviderSimulator } = await import('@idempotent-payments/provider-simulator');
  const { fastRecoveryEnv } = await import('./drill-env');
  const dataDir = args['data-dir'];
  if (!dataDir) throw new Error('--child needs --data-dir');
  const provider = await startProviderSimulator({ port: 0, ledgerFile: path.join(dataDir, 'crash-ledger.jsonl'), timeoutMs: 1500 });
  const stack = await startLocalStack({
    apiPort: args.port,
    dataDir,
    scheduleScale: 30,
    log: false,
    extraEnv: { ...fastRecoveryEnv(provider.url), POWERTOOLS_LOG_LEVEL: 'ERROR' },
  });
  const stop = async () => {
    await stack.stop();
    await provider.stop();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  console.log(`READY ${stack.apiUrl}`);
}

// ---- parent -----------------------------------------------------------------------------------
const here = fileURLToPath(import.meta.url);

async function startChild(dataDir: string, port: number): Promise<ChildProcess> {
  const proc = spawn(process.execPath, ['--import', 'tsx', here, '--child', '--data-dir', dataDir, '--port', String(port)], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let errText = '';
  proc.stderr!.on('data', (b: Buffer) => (errText += b.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`local stack did not start:\n${errText.slice(-2000)}`)), 120_000);
    proc.stdout!.on('data', (b: Buffer) => {
      if (b.toString().includes('READY')) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once('exit', (code) => reject(new Error(`local stack exited with ${code}:\n${errText.slice(-2000)}`)));
  });
  return proc;
}

function killGroup(proc: ChildProcess, signal: NodeJS.Signals) {
  try {
    process.kill(-proc.pid!, signal);
  } catch {
    /* already gone */
  }
}

async function stopChild(proc: ChildProcess) {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  killGroup(proc, 'SIGTERM');
  const timer = setTimeout(() => killGroup(proc, 'SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
  killGroup(proc, 'SIGKILL'); // anything of the group still around
}

interface Req {
  key: string;
  body: string;
  id?: string;
  /** The response never came: the client does not know whether the payment exists. */
  unknown?: boolean;
}

async function parent() {
  const seconds = args.seconds;
  const concurrency = args.concurrency;
  const dataDir = mkdtempSync(path.join(tmpdir(), 'crash-test-'));
  const port = await freePort();
  const api = `http://127.0.0.1:${port}`;
  let proc = await startChild(dataDir, port);
  out.progress(`local stack up; ${concurrency} clients send payments for ${seconds} s, then the stack is killed`);
  try {
    const tokens = ['tok_success', 'tok_success', 'tok_success', 'tok_transient_1', 'tok_slow_700'];
    const reqs: Req[] = [];
    const post = async (r: Req) => {
      try {
        const res = await fetch(`${api}/api/payments/process`, {
          method: 'POST',
          headers: { 'x-api-key': 'local-key-1', 'content-type': 'application/json' },
          body: r.body,
          signal: AbortSignal.timeout(10_000),
        });
        const body = (await res.json()) as { id?: string };
        if (res.status === 201 && body.id) {
          r.id = body.id;
          r.unknown = false;
        } else r.unknown = true;
      } catch {
        r.unknown = true;
      }
    };

    // Steady load, then kill -9 the whole stack while requests, workers and retries are in flight.
    let killed = false;
    let i = 0;
    const load = Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (!killed) {
          const key = `crash-${randomUUID()}`;
          const r: Req = { key, body: JSON.stringify({ idempotencyKey: key, amount: 5, currency: 'USD', paymentMethod: { type: 'card', token: tokens[i++ % tokens.length] } }) };
          reqs.push(r);
          await post(r);
        }
      }),
    );
    await new Promise((r) => setTimeout(r, seconds * 1000));
    killed = true;
    killGroup(proc, 'SIGKILL');
    const killedAt = Date.now();
    await load;
    const acceptedBeforeCrash = reqs.filter((r) => r.id).length;
    const unknownAtCrash = reqs.filter((r) => !r.id).length;
    out.progress(`sent ${reqs.length} payment requests; killed the stack (SIGKILL to its process group) with ${unknownAtCrash} responses lost`);

    proc = await startChild(dataDir, port);
    const restartSeconds = (Date.now() - killedAt) / 1000;
    // Clients retry what they could not confirm, with the same key: created now, or replayed.
    for (let round = 0; round < 3 && reqs.some((r) => !r.id); round++) {
      const retry = reqs.filter((r) => !r.id);
      let next = 0;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < retry.length) await post(retry[next++]!);
        }),
      );
    }
    const accepted = reqs.filter((r) => r.id);
    out.progress(`restarted on the same data in ${restartSeconds.toFixed(1)} s; ${accepted.length - acceptedBeforeCrash} more confirmed by client retries`);

    const ids = [...new Set(accepted.map((r) => r.id!))];
    const deadline = Date.now() + 240_000;
    let statuses = new Map<string, string>();
    for (;;) {
      statuses = new Map(
        await Promise.all(
          ids.map(async (id) => {
            const res = await fetch(`${api}/api/payments/${id}/status`, { headers: { 'x-api-key': 'local-key-1' } });
            return [id, res.status === 200 ? ((await res.json()) as { status: string }).status : 'missing'] as [string, string];
          }),
        ),
      );
      const open = [...statuses.values()].filter((s) => !['success', 'failed', 'expired'].includes(s)).length;
      if (open === 0 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    const byStatus: Record<string, number> = {};
    for (const s of statuses.values()) byStatus[s] = (byStatus[s] ?? 0) + 1;

    const recovery = (await (await fetch(`${api}/api/recovery/status`, { headers: { 'x-api-key': 'local-operator-key' } })).json()) as {
      runs: Array<{ counts: Record<string, number> }>;
    };
    const recoveredActions: Record<string, number> = {};
    for (const run of recovery.runs) {
      for (const [k, v] of Object.entries(run.counts ?? {})) if (k.startsWith('requeued') || k.startsWith('lease_resolved')) recoveredActions[k] = (recoveredActions[k] ?? 0) + v;
    }

    const ledgerFile = path.join(dataDir, 'crash-ledger.jsonl');
    const charges = new Map<string, number>();
    if (existsSync(ledgerFile)) {
      for (const line of readFileSync(ledgerFile, 'utf8').split('\n')) {
        if (!line.trim()) continue;
        try {
          const e = JSON.parse(line) as { paymentId: string; status: string };
          if (e.status === 'succeeded') charges.set(e.paymentId, (charges.get(e.paymentId) ?? 0) + 1);
        } catch {
          /* a line cut by the kill */
        }
      }
    }
    const duplicates = [...charges.values()].filter((n) => n > 1).length;
    const lost = [...statuses.values()].filter((s) => !['success', 'failed', 'expired'].includes(s)).length;
    const successWithoutCharge = [...statuses.entries()].filter(([id, s]) => s === 'success' && !charges.has(id)).length;
    out.report({
      accepted: ids.length,
      confirmedBeforeCrash: acceptedBeforeCrash,
      neverConfirmed: reqs.length - accepted.length,
      byStatus,
      recoveredActions,
      successfulCharges: [...charges.values()].reduce((a, b) => a + b, 0),
      duplicates,
      successWithoutCharge,
      lost,
    });
    out.line(`accepted payments: ${ids.length} (${acceptedBeforeCrash} confirmed before the crash; ${reqs.length - accepted.length} never confirmed)`);
    out.line(`final statuses: ${JSON.stringify(byStatus)}`);
    out.line(`recovered by the reconciler (last 10 runs): ${JSON.stringify(recoveredActions)}`);
    out.line(`charges: ${[...charges.values()].reduce((a, b) => a + b, 0)} successful; duplicates ${duplicates}; success without charge ${successWithoutCharge}; lost ${lost}`);
    if (duplicates || lost || successWithoutCharge) process.exitCode = 1;
  } finally {
    await stopChild(proc);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

if (args.child) await child();
else await parent();
