/**
 * Payments under provider faults, end to end on the local stack: N payments with good cards are sent
 * over HTTP while the provider simulator fails a share of charges (5xx without charging) and times out
 * a share (charging, then never answering). Waits until no payment is open and prints the outcome,
 * attempts, retries, and the ledger check: exactly one successful charge per payment. Liveness too:
 * drain time, the longest stretch with work open and nothing settling, the longest time one payment
 * stayed open, and how many breaker log lines the functions wrote.
 *
 *   npm run load:faults -- [--n 1000] [--concurrency 20] [--error-rate 0.1] [--timeout-rate 0.01] [--json]
 *
 * Noisy neighbour: tenant-2 sends --noisy-n always-failing cards (tok_fail_always) while tenant-1
 * sends --n good ones; prints tenant-1's time to success (p50/p99). `--noisy-n 0` is tenant-1's solo run.
 *
 *   npm run load:faults -- --noisy --n 200 --noisy-n 100 --error-rate 0 --timeout-rate 0
 */
import { randomUUID } from 'node:crypto';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import type { Payment } from '../functions/core/payment';
import { fastRecoveryEnv } from './drill-env';
import { startLocalStack } from '@idempotent-payments/local-stack';
import { startProviderSimulator } from '@idempotent-payments/provider-simulator';
import { cliOrExit } from './cli-args';

const args = cliOrExit('load-faults', {
  n: { type: 'number', default: 1000, min: 1, integer: true, doc: 'payments to send (tenant-1)' },
  concurrency: { type: 'number', default: 20, min: 1, max: 500, integer: true, doc: 'requests in flight' },
  'error-rate': { type: 'number', default: 0.1, min: 0, max: 1, doc: 'share of confirmations the provider fails with a 500' },
  'timeout-rate': { type: 'number', default: 0.01, min: 0, max: 1, doc: 'share of confirmations that hang past the client timeout (committed or not)' },
  'max-wait-seconds': { type: 'number', default: 600, min: 1, doc: 'give up waiting for payments to settle after this long' },
  noisy: { type: 'boolean', doc: 'noisy neighbour: tenant-2 sends --noisy-n always-failing cards meanwhile' },
  'noisy-n': { type: 'number', default: 100, min: 0, integer: true, doc: 'always-failing cards of tenant-2 with --noisy' },
});
const NOISY = args.noisy;
const N = args.n;
const NOISY_N = NOISY ? args['noisy-n'] : 0;
const CONCURRENCY = args.concurrency;
const ERROR_RATE = args['error-rate'];
const TIMEOUT_RATE = args['timeout-rate'];
const MAX_WAIT_MS = args['max-wait-seconds'] * 1000;
const STALL_MS = 15_000;
/** Human lines: stdout, or stderr when --json owns stdout. */
const say = (line: string) => (args.json ? process.stderr : process.stdout).write(`${line}\n`);

const OPEN = new Set(['pending', 'processing', 'retrying']);
const quantile = (xs: number[], q: number) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
};

async function main() {
  const provider = await startProviderSimulator({ port: 0, timeoutMs: 1500, faults: { errorRate: ERROR_RATE, timeoutRate: TIMEOUT_RATE, seed: 7 } });
  const logLines = { total: 0, breaker: 0, deferred: 0 };
  const stack = await startLocalStack({
    apiPort: 0,
    scheduleScale: 30,
    // Function output is counted, not printed: the breaker must not write a line per message.
    log: (line: string) => {
      logLines.total++;
      if (line.includes('circuit breaker')) logLines.breaker++;
      if (line.includes('deferred')) logLines.deferred++;
    },
    extraEnv: { ...fastRecoveryEnv(provider.url), POWERTOOLS_LOG_LEVEL: 'WARN' },
  });
  try {
    const ids: string[] = [];
    const noisyIds: string[] = [];
    let rejected = 0;
    const work = [
      ...Array.from({ length: N }, () => ({ key: 'local-key-1', token: 'tok_success', into: ids })),
      ...Array.from({ length: NOISY_N }, () => ({ key: 'local-key-2', token: 'tok_fail_always', into: noisyIds })),
    ];
    // Interleave the two tenants so the noisy one is sending while the other is.
    if (NOISY_N > 0) work.sort(() => Math.random() - 0.5);
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < work.length) {
          const w = work[next++]!;
          const res = await fetch(`${stack.apiUrl}/api/payments/process`, {
            method: 'POST',
            headers: { 'x-api-key': w.key, 'content-type': 'application/json' },
            body: JSON.stringify({ idempotencyKey: `load-${randomUUID()}`, amount: 10, currency: 'USD', paymentMethod: { type: 'card', token: w.token } }),
          });
          const body = (await res.json()) as { id?: string };
          if (res.status === 201 && body.id) w.into.push(body.id);
          else rejected++;
        }
      }),
    );
    const acceptSeconds = (performance.now() - t0) / 1000;
    say(`accepted ${ids.length + noisyIds.length} of ${work.length} in ${acceptSeconds.toFixed(1)} s (${((ids.length + noisyIds.length) / acceptSeconds).toFixed(0)}/s), rejected ${rejected}`);

    const table = Object.entries(stack.resources.tables).find(([k]) => k.startsWith('PaymentsTable'))![1].name;
    const wanted = new Set([...ids, ...noisyIds]);
    let payments: Payment[] = [];
    // Liveness: settled count over time; a stall is a stretch with open work and no payment settling.
    let lastFinal = -1;
    let lastProgressAt = performance.now();
    let longestStallMs = 0;
    const stalls: number[] = [];
    for (;;) {
      payments = [];
      let start: Record<string, any> | undefined;
      do {
        const res = await stack.clients.dynamodb.send(new ScanCommand({ TableName: table, ExclusiveStartKey: start }));
        payments.push(...(res.Items ?? []).map((i) => unmarshall(i) as Payment).filter((p) => wanted.has(p.id)));
        start = res.LastEvaluatedKey;
      } while (start);
      const open = payments.filter((p) => OPEN.has(p.status)).length;
      const final = payments.length - open;
      const now = performance.now();
      if (final !== lastFinal) {
        const stalled = now - lastProgressAt;
        if (stalled >= STALL_MS) stalls.push(stalled);
        longestStallMs = Math.max(longestStallMs, stalled);
        lastFinal = final;
        lastProgressAt = now;
      }
      if (open === 0 || now - t0 > MAX_WAIT_MS) {
        if (open > 0) longestStallMs = Math.max(longestStallMs, now - lastProgressAt);
        break;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    const seconds = (performance.now() - t0) / 1000;
    const byStatus: Record<string, number> = {};
    for (const p of payments) byStatus[p.status] = (byStatus[p.status] ?? 0) + 1;
    const attempts = payments.reduce((a, p) => a + p.attempt, 0);
    const retries = payments.reduce((a, p) => a + p.retryCount, 0);
    const maxRetry = Math.max(...payments.map((p) => p.retryCount));
    const openMs = payments.map((p) => Date.parse(p.updatedAt) - Date.parse(p.createdAt));
    const ledger = provider.ledger().filter((e) => e.status === 'succeeded' && wanted.has(e.paymentId));
    const chargesPer = new Map<string, number>();
    for (const e of ledger) chargesPer.set(e.paymentId, (chargesPer.get(e.paymentId) ?? 0) + 1);
    const duplicates = [...chargesPer.values()].filter((c) => c > 1).length;
    const successWithoutCharge = payments.filter((p) => p.status === 'success' && !chargesPer.has(p.id)).length;
    const chargedNotSuccess = [...chargesPer.keys()].filter((id) => payments.find((p) => p.id === id)?.status !== 'success').length;
    const lost = wanted.size - payments.length;
    const stillOpen = payments.filter((p) => OPEN.has(p.status)).length;
    say(`${stillOpen === 0 ? 'all settled' : `${stillOpen} STILL OPEN`} after ${seconds.toFixed(1)} s: ${JSON.stringify(byStatus)}`);
    say(`attempts ${attempts}, retries ${retries} (max ${maxRetry} for one payment), success rate ${(((byStatus.success ?? 0) / wanted.size) * 100).toFixed(2)}%`);
    say(
      `ledger: ${ledger.length} successful charges for ${wanted.size} payments; duplicates ${duplicates}, ` +
        `success without charge ${successWithoutCharge}, charged but not success ${chargedNotSuccess}, lost ${lost}`,
    );
    say(
      `liveness: drain ${seconds.toFixed(1)} s, longest stretch without a payment settling ${(longestStallMs / 1000).toFixed(1)} s ` +
        `(stretches >= ${STALL_MS / 1000} s: ${stalls.length}), longest open ${(Math.max(...openMs) / 1000).toFixed(1)} s, p99 open ${(quantile(openMs, 0.99) / 1000).toFixed(1)} s`,
    );
    say(`logs: ${logLines.total} lines from the local stack and its functions (WARN+), ${logLines.breaker} breaker state-change lines, ${logLines.deferred} mentioning deferral`);
    if (NOISY) {
      const mine = new Set(ids);
      const t1 = payments.filter((p) => mine.has(p.id) && p.status === 'success').map((p) => Date.parse(p.processedAt ?? p.updatedAt) - Date.parse(p.createdAt));
      say(
        `noisy neighbour (tenant-2: ${NOISY_N} x tok_fail_always): tenant-1 ${t1.length}/${ids.length} succeeded, time to success ` +
          `p50 ${(quantile(t1, 0.5) / 1000).toFixed(2)} s, p99 ${(quantile(t1, 0.99) / 1000).toFixed(2)} s, max ${(Math.max(...t1) / 1000).toFixed(2)} s`,
      );
    }
    if (args.json) {
      process.stdout.write(
        `${JSON.stringify({ payments: N, noisy: NOISY_N, byStatus, attempts, retries, maxRetryForOnePayment: maxRetry, successfulCharges: ledger.length, duplicates, successWithoutCharge, chargedNotSuccess, lost, stillOpen, drainSeconds: seconds, longestStallSeconds: longestStallMs / 1000, stallsOver15s: stalls.length, longestOpenSeconds: Math.max(...openMs) / 1000, breakerLogLines: logLines.breaker })}\n`,
      );
    }
    if (duplicates || successWithoutCharge || chargedNotSuccess || lost || stillOpen) process.exitCode = 1;
  } finally {
    await stack.stop();
    await provider.stop();
  }
}

await main();
