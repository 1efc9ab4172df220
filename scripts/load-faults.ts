/**
 * Payments under provider faults, end to end on the local stack: N payments with good cards are sent
 * over HTTP while the provider simulator fails a share of charges (5xx without charging) and times out
 * a share (charging, then never answering). Waits until no payment is open and prints the outcome,
 * attempts, retries, and the ledger check: exactly one successful charge per payment.
 *
 *   npm run load:faults -- [--n 1000] [--concurrency 20] [--error-rate 0.1] [--timeout-rate 0.01] [--json]
 */
import { randomUUID } from 'node:crypto';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import type { Payment } from '../functions/core/payment';
import { fastRecoveryEnv } from './drill-env';
import { startLocalStack } from '@idempotent-payments/local-stack';
import { startProviderSimulator } from '@idempotent-payments/provider-simulator';
import { cliOrExit, reporter } from './cli-args';

const args = cliOrExit('load-faults', {
  n: { type: 'number', default: 1000, min: 1, integer: true, doc: 'payments to send' },
  concurrency: { type: 'number', default: 20, min: 1, max: 500, integer: true, doc: 'requests in flight' },
  'error-rate': { type: 'number', default: 0.1, min: 0, max: 1, doc: 'share of charges the provider fails with 503' },
  'timeout-rate': { type: 'number', default: 0.01, min: 0, max: 1, doc: 'share of charges the provider commits, then never answers' },
  'max-wait-seconds': { type: 'number', default: 600, min: 1, doc: 'give up waiting for payments to settle after this long' },
});
const N = args.n;
const CONCURRENCY = args.concurrency;
const ERROR_RATE = args['error-rate'];
const TIMEOUT_RATE = args['timeout-rate'];
const MAX_WAIT_MS = args['max-wait-seconds'] * 1000;
const out = reporter(args.json);

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
          if ((ids.length + rejected) % 100 === 0) out.progress(`sent ${ids.length + rejected} of ${N}`);
        }
      }),
    );
    const acceptSeconds = (performance.now() - t0) / 1000;
    out.progress(`accepted ${ids.length} of ${N} in ${acceptSeconds.toFixed(1)} s (${(ids.length / acceptSeconds).toFixed(0)}/s), rejected ${rejected}`);

    const table = Object.entries(stack.resources.tables).find(([k]) => k.startsWith('PaymentsTable'))![1].name;
    const wanted = new Set(ids);
    let payments: Payment[] = [];
    let polls = 0;
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
      if (++polls % 5 === 0) out.progress(`waiting: ${open} of ${ids.length} payments still open`);
      await new Promise((r) => setTimeout(r, 1000));
    }
    const seconds = (performance.now() - t0) / 1000;
    const byStatus: Record<string, number> = {};
    for (const p of payments) byStatus[p.status] = (byStatus[p.status] ?? 0) + 1;
    const attempts = payments.reduce((a, p) => a + p.attempt, 0);
    const retries = payments.reduce((a, p) => a + p.retryCount, 0);
    const maxRetry = Math.max(0, ...payments.map((p) => p.retryCount));
    const ledger = provider.ledger().filter((e) => e.status === 'succeeded' && wanted.has(e.paymentId));
    const chargesPer = new Map<string, number>();
    for (const e of ledger) chargesPer.set(e.paymentId, (chargesPer.get(e.paymentId) ?? 0) + 1);
    const duplicates = [...chargesPer.values()].filter((c) => c > 1).length;
    const successWithoutCharge = payments.filter((p) => p.status === 'success' && !chargesPer.has(p.id)).length;
    const chargedNotSuccess = [...chargesPer.keys()].filter((id) => payments.find((p) => p.id === id)?.status !== 'success').length;
    const lost = ids.length - payments.length;
    out.line(`all settled after ${seconds.toFixed(1)} s: ${JSON.stringify(byStatus)}`);
    out.line(`attempts ${attempts}, retries ${retries} (max ${maxRetry} for one payment), success rate ${(((byStatus.success ?? 0) / Math.max(1, ids.length)) * 100).toFixed(2)}%`);
    out.line(
      `ledger: ${ledger.length} successful charges for ${ids.length} payments; duplicates ${duplicates}, ` +
        `success without charge ${successWithoutCharge}, charged but not success ${chargedNotSuccess}, lost ${lost}`,
    );
    out.report({
      payments: N,
      accepted: ids.length,
      rejected,
      acceptSeconds,
      settledSeconds: seconds,
      byStatus,
      attempts,
      retries,
      maxRetriesForOnePayment: maxRetry,
      successfulCharges: ledger.length,
      duplicates,
      successWithoutCharge,
      chargedNotSuccess,
      lost,
    });
    if (duplicates || successWithoutCharge || chargedNotSuccess || lost) process.exitCode = 1;
  } finally {
    await stack.stop();
    await provider.stop();
  }
}

await main();
