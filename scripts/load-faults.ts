/**
 * Payments under provider faults, end to end on the local stack: N payments with good cards are sent
 * over HTTP while the provider simulator fails a share of charges (5xx without charging) and times out
 * a share (charging, then never answering). Waits until no payment is open and prints the outcome,
 * attempts, retries, and the ledger check: exactly one successful charge per payment.
 *
 *   npx tsx scripts/load-faults.ts [--n 1000] [--concurrency 20] [--error-rate 0.1] [--timeout-rate 0.01]
 */
import { randomUUID } from 'node:crypto';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import type { Payment } from '../functions/core/payment';
import { fastRecoveryEnv } from './drill-env';
import { startLocalStack } from '@idempotent-payments/local-stack';
import { startProviderSimulator } from '@idempotent-payments/provider-simulator';
import { numberArg } from './cli-args';

const N = numberArg('n', 1000);
const CONCURRENCY = numberArg('concurrency', 20);
const ERROR_RATE = numberArg('error-rate', 0.1);
const TIMEOUT_RATE = numberArg('timeout-rate', 0.01);
const MAX_WAIT_MS = numberArg('max-wait-seconds', 600) * 1000;

async function main() {
  const provider = await startProviderSimulator({ port: 0, timeoutMs: 1500, faults: { errorRate: ERROR_RATE, timeoutRate: TIMEOUT_RATE, seed: 7 } });
  const stack = await startLocalStack({
    apiPort: 0,
    scheduleScale: 30,
    log: false,
    extraEnv: { ...fastRecoveryEnv(provider.url), POWERTOOLS_LOG_LEVEL: 'ERROR' },
  });
  try {
    const ids: string[] = [];
    let rejected = 0;
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < N) {
          next++;
          const res = await fetch(`${stack.apiUrl}/api/payments/process`, {
            method: 'POST',
            headers: { 'x-api-key': 'local-key-1', 'content-type': 'application/json' },
            body: JSON.stringify({ idempotencyKey: `load-${randomUUID()}`, amount: 10, currency: 'USD', paymentMethod: { type: 'card', token: 'tok_success' } }),
          });
          const body = (await res.json()) as { id?: string };
          if (res.status === 201 && body.id) ids.push(body.id);
          else rejected++;
        }
      }),
    );
    const acceptSeconds = (performance.now() - t0) / 1000;
    console.log(`accepted ${ids.length} of ${N} in ${acceptSeconds.toFixed(1)} s (${(ids.length / acceptSeconds).toFixed(0)}/s), rejected ${rejected}`);

    const table = Object.entries(stack.resources.tables).find(([k]) => k.startsWith('PaymentsTable'))![1].name;
    const wanted = new Set(ids);
    let payments: Payment[] = [];
    for (;;) {
      payments = [];
      let start: Record<string, any> | undefined;
      do {
        const res = await stack.clients.dynamodb.send(new ScanCommand({ TableName: table, ExclusiveStartKey: start }));
        payments.push(...(res.Items ?? []).map((i) => unmarshall(i) as Payment).filter((p) => wanted.has(p.id)));
        start = res.LastEvaluatedKey;
      } while (start);
      const open = payments.filter((p) => ['pending', 'processing', 'retrying'].includes(p.status)).length;
      if (open === 0 || performance.now() - t0 > MAX_WAIT_MS) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    const seconds = (performance.now() - t0) / 1000;
    const byStatus: Record<string, number> = {};
    for (const p of payments) byStatus[p.status] = (byStatus[p.status] ?? 0) + 1;
    const attempts = payments.reduce((a, p) => a + p.attempt, 0);
    const retries = payments.reduce((a, p) => a + p.retryCount, 0);
    const maxRetry = Math.max(...payments.map((p) => p.retryCount));
    const ledger = provider.ledger().filter((e) => e.status === 'succeeded' && wanted.has(e.paymentId));
    const chargesPer = new Map<string, number>();
    for (const e of ledger) chargesPer.set(e.paymentId, (chargesPer.get(e.paymentId) ?? 0) + 1);
    const duplicates = [...chargesPer.values()].filter((c) => c > 1).length;
    const successWithoutCharge = payments.filter((p) => p.status === 'success' && !chargesPer.has(p.id)).length;
    const chargedNotSuccess = [...chargesPer.keys()].filter((id) => payments.find((p) => p.id === id)?.status !== 'success').length;
    const lost = ids.length - payments.length;
    console.log(`all settled after ${seconds.toFixed(1)} s: ${JSON.stringify(byStatus)}`);
    console.log(`attempts ${attempts}, retries ${retries} (max ${maxRetry} for one payment), success rate ${(((byStatus.success ?? 0) / ids.length) * 100).toFixed(2)}%`);
    console.log(
      `ledger: ${ledger.length} successful charges for ${ids.length} payments; duplicates ${duplicates}, ` +
        `success without charge ${successWithoutCharge}, charged but not success ${chargedNotSuccess}, lost ${lost}`,
    );
    if (duplicates || successWithoutCharge || chargedNotSuccess || lost) process.exitCode = 1;
  } finally {
    await stack.stop();
    await provider.stop();
  }
}

await main();
