/**
 * `npm run bench:pipeline`: Node CPU per payment of the whole local pipeline (Linux only), by thread.
 *
 * The local stack runs in this process: the API Gateway emulation, the IAM proxies, the event-source
 * and stream pollers on the main thread, and each Lambda function in its own worker thread. The load
 * (HTTP creates, then polling DynamoDB Local directly for the outcome) and the provider simulator run in
 * a separate driver thread, so their CPU is left out. CPU is read per OS thread from
 * /proc/self/task/<tid>/stat (user + system, 10 ms ticks) at three moments: before the creates, when
 * every payment is `success`, and when every version is in the audit log. Java (DynamoDB Local) is
 * reported on its own line from /proc/<pid>/stat when its pid is known.
 *
 *   npm run bench:pipeline -- [--payments 300] [--concurrency 8] [--warmup 30] [--json]
 */
import { readdirSync, readFileSync } from 'node:fs';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { cliOrExit, reporter } from './cli-args';
import type { Payment } from '../functions/core/payment';

interface DriverInit {
  readonly phase: 'init';
}
interface DriverRun {
  readonly phase: 'run';
  readonly apiUrl: string;
  readonly dynamodb: string;
  readonly paymentsTable: string;
  readonly auditTable: string;
  readonly payments: number;
  readonly concurrency: number;
  readonly label: string;
}
type ToDriver = DriverRun | { readonly phase: 'stop' };
type FromDriver =
  | { readonly type: 'ready'; readonly tid: number; readonly providerUrl: string }
  | { readonly type: 'sent'; readonly label: string }
  | { readonly type: 'settled'; readonly label: string; readonly ms: number }
  | { readonly type: 'audited'; readonly label: string; readonly ms: number }
  | { readonly type: 'error'; readonly message: string };

const osThreadId = (): number => Number(readFileSync('/proc/thread-self/stat', 'utf8').split(' ')[0]);
const TICK_MS = 10; // USER_HZ is 100 on Linux

/** CPU ms (user + system) per thread of this process, and of another process when a pid is given. */
function cpuByThread(): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), (Number(fields[11]) + Number(fields[12])) * TICK_MS);
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return out;
}
function processCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  } catch {
    return undefined;
  }
}

/** The DynamoDB Local the local stack started: a java child of this process. */
function childJavaPid(): number {
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && comm === 'java') return Number(pid);
    } catch {
      // gone
    }
  }
  return NaN;
}

// ---------------------------------------------------------------------------------------------------
// Driver thread: the provider simulator and the client load.
// ---------------------------------------------------------------------------------------------------
async function driver(): Promise<void> {
  const { startProviderSimulator } = await import('@idempotent-payments/provider-simulator');
  const { DynamoDBClient, BatchGetItemCommand, GetItemCommand } = await import('@aws-sdk/client-dynamodb');
  const { marshall, unmarshall } = await import('@aws-sdk/util-dynamodb');
  const { entryKeyOf } = await import('../functions/core/audit');
  const provider = await startProviderSimulator({ port: 0 });
  const port = parentPort!;
  const send = (m: FromDriver) => port.postMessage(m);
  send({ type: 'ready', tid: osThreadId(), providerUrl: provider.url });
  port.on('message', async (m: ToDriver) => {
    if (m.phase === 'stop') {
      await provider.stop();
      port.close();
      return;
    }
    try {
      const ddb = new DynamoDBClient({ endpoint: m.dynamodb, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
      const t0 = performance.now();
      const ids: string[] = [];
      let next = 0;
      await Promise.all(
        Array.from({ length: m.concurrency }, async () => {
          while (next < m.payments) {
            const n = next++;
            const res = await fetch(`${m.apiUrl}/api/payments/process`, {
              method: 'POST',
              headers: { 'x-api-key': 'local-key-1', 'content-type': 'application/json', 'Idempotency-Key': `cpu-${m.label}-${n}-${t0}` },
              body: JSON.stringify({ amount: 12.5, currency: 'USD', paymentMethod: { type: 'card', token: 'tok_success' } }),
            });
            const body = (await res.json()) as { id?: string };
            if (res.status !== 201 || !body.id) throw new Error(`create answered ${res.status}: ${JSON.stringify(body)}`);
            ids.push(body.id);
          }
        }),
      );
      send({ type: 'sent', label: m.label });
      // Settled: every payment success (read straight from DynamoDB Local, not through the API).
      let open = [...ids];
      while (open.length) {
        await new Promise((r) => setTimeout(r, 250));
        const still: string[] = [];
        for (let i = 0; i < open.length; i += 100) {
          const keys = open.slice(i, i + 100).map((id) => ({ id: { S: id } }));
          const res = await ddb.send(new BatchGetItemCommand({ RequestItems: { [m.paymentsTable]: { Keys: keys, ProjectionExpression: 'id, #s', ExpressionAttributeNames: { '#s': 'status' } } } }));
          const done = new Set((res.Responses?.[m.paymentsTable] ?? []).filter((it) => it.status?.S === 'success').map((it) => it.id!.S!));
          for (const k of keys) if (!done.has(k.id.S)) still.push(k.id.S);
        }
        open = still;
      }
      send({ type: 'settled', label: m.label, ms: performance.now() - t0 });
      // Audited: three versions (pending, processing, success) of each in the audit log.
      let unaudited = [...ids];
      while (unaudited.length) {
        await new Promise((r) => setTimeout(r, 500));
        const still: string[] = [];
        for (const id of unaudited) {
          // The entry of version 3 (success), found by the key the payment's update times give.
          const pay = await ddb.send(new GetItemCommand({ TableName: m.paymentsTable, Key: { id: { S: id } }, ConsistentRead: true }));
          const key = pay.Item ? entryKeyOf(unmarshall(pay.Item) as Payment, 3) : undefined;
          const entry = key ? await ddb.send(new GetItemCommand({ TableName: m.auditTable, Key: marshall(key) })) : undefined;
          if (!entry?.Item) still.push(id);
        }
        unaudited = still;
      }
      send({ type: 'audited', label: m.label, ms: performance.now() - t0 });
      ddb.destroy();
    } catch (err) {
      send({ type: 'error', message: (err as Error).message });
    }
  });
}

// ---------------------------------------------------------------------------------------------------
// Main thread: the local stack, and the CPU readings.
// ---------------------------------------------------------------------------------------------------
async function main(): Promise<void> {
  const args = cliOrExit('bench:pipeline', {
    payments: { type: 'number', default: 300, min: 10, integer: true, doc: 'payments measured' },
    concurrency: { type: 'number', default: 8, min: 1, max: 64, integer: true, doc: 'creates in flight' },
    warmup: { type: 'number', default: 30, min: 1, integer: true, doc: 'payments before measuring (loads every function)' },
  });
  const out = reporter(args.json);
  if (process.platform !== 'linux') throw new Error('bench:pipeline reads per-thread CPU from /proc (Linux only)');
  const { startLocalStack } = await import('@idempotent-payments/local-stack');
  const { localProviderEnv } = await import('./drill-env');

  // The driver is this file again, loaded through tsx in the worker (hooks are per thread on Node 20).
  const bootstrap = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(import.meta.url)}); })`;
  const worker = new Worker(bootstrap, { eval: true, workerData: { role: 'driver' } as DriverInit & { role: string } });
  const inbox: FromDriver[] = [];
  const waiters: Array<() => void> = [];
  worker.on('message', (m: FromDriver) => {
    inbox.push(m);
    waiters.splice(0).forEach((w) => w());
  });
  const next = async (): Promise<FromDriver> => {
    while (!inbox.length) await new Promise<void>((r) => waiters.push(r));
    const m = inbox.shift()!;
    if (m.type === 'error') throw new Error(`driver: ${m.message}`);
    return m;
  };
  const ready = (await next()) as Extract<FromDriver, { type: 'ready' }>;
  const stack = await startLocalStack({ apiPort: 0, log: false, extraEnv: { ...localProviderEnv(ready.providerUrl), POWERTOOLS_LOG_LEVEL: 'ERROR' } });
  try {
    const table = (prefix: string) => Object.entries(stack.resources.tables).find(([k]) => k.startsWith(prefix))![1].name;
    const run = (label: string, payments: number): DriverRun => ({
      phase: 'run',
      apiUrl: stack.apiUrl,
      dynamodb: stack.endpoints.dynamodb,
      paymentsTable: table('PaymentsTable'),
      auditTable: table('AuditLogTable'),
      payments,
      concurrency: args.concurrency,
      label,
    });
    const javaPid = childJavaPid();

    out.progress(`warm-up: ${args.warmup} payments`);
    worker.postMessage(run('warmup', args.warmup));
    for (const phase of ['sent', 'settled', 'audited']) if ((await next()).type !== phase) throw new Error('driver out of step');

    out.progress(`measuring: ${args.payments} payments`);
    const before = cpuByThread();
    const javaBefore = Number.isFinite(javaPid) ? processCpuMs(javaPid) : undefined;
    worker.postMessage(run('measured', args.payments));
    await next(); // sent
    const settled = (await next()) as Extract<FromDriver, { type: 'settled' }>;
    const atSettled = cpuByThread();
    const audited = (await next()) as Extract<FromDriver, { type: 'audited' }>;
    const atAudited = cpuByThread();
    const javaAfter = Number.isFinite(javaPid) ? processCpuMs(javaPid) : undefined;

    const threads = stack.functionThreads();
    const nameOf = new Map<number, string>([[process.pid, 'main thread (gateway, IAM proxies, pollers)']]);
    for (const [id, tid] of threads) nameOf.set(tid, `function ${id.replace(/Function[0-9A-F]{8}$/, '')}`);
    const spent = (at: Map<number, number>) => {
      const by = new Map<string, number>();
      for (const [tid, ms] of at) {
        if (tid === ready.tid) continue; // the driver and the simulator
        const name = nameOf.get(tid) ?? 'other threads (V8 helpers: GC, compiler; libuv pool)';
        by.set(name, (by.get(name) ?? 0) + ms - (before.get(tid) ?? 0));
      }
      return by;
    };
    const toSettled = spent(atSettled);
    const toAudited = spent(atAudited);
    const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
    const per = (ms: number) => ms / args.payments;
    const rows = [...toAudited.keys()].sort((a, b) => toAudited.get(b)! - toAudited.get(a)!);
    out.line(`\nNode CPU per payment, local pipeline, ${args.payments} payments at concurrency ${args.concurrency} (settled in ${(settled.ms / 1000).toFixed(1)} s, audited in ${(audited.ms / 1000).toFixed(1)} s)\n`);
    out.line(`${'thread'.padEnd(58)}${'to success'.padStart(12)}${'to audited'.padStart(12)}${'share'.padStart(8)}`);
    for (const r of rows) {
      out.line(`${r.padEnd(58)}${per(toSettled.get(r) ?? 0).toFixed(1).padStart(9)} ms${per(toAudited.get(r)!).toFixed(1).padStart(9)} ms${((100 * toAudited.get(r)!) / total(toAudited)).toFixed(0).padStart(7)}%`);
    }
    out.line(`${'total (Node)'.padEnd(58)}${per(total(toSettled)).toFixed(1).padStart(9)} ms${per(total(toAudited)).toFixed(1).padStart(9)} ms`);
    if (javaBefore !== undefined && javaAfter !== undefined) out.line(`${'DynamoDB Local (Java), to audited'.padEnd(70)}${per(javaAfter - javaBefore).toFixed(1).padStart(9)} ms`);
    out.report({
      payments: args.payments,
      concurrency: args.concurrency,
      settledMs: settled.ms,
      auditedMs: audited.ms,
      cpuMsPerPaymentToSuccess: Object.fromEntries([...toSettled].map(([k, v]) => [k, per(v)])),
      cpuMsPerPaymentToAudited: Object.fromEntries([...toAudited].map(([k, v]) => [k, per(v)])),
      totalToSuccess: per(total(toSettled)),
      totalToAudited: per(total(toAudited)),
    });
  } finally {
    worker.postMessage({ phase: 'stop' } satisfies ToDriver);
    await stack.stop();
    await new Promise((r) => setTimeout(r, 200));
    await worker.terminate();
  }
}

if (isMainThread) await main();
else if ((workerData as { role?: string })?.role === 'driver') await driver();
