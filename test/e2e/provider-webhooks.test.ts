/**
 * Provider webhooks over HTTP on the local stack: the simulator signs its events like Stripe and posts them
 * to /webhooks/provider; the worker resolves what they name. An event can only make a payment end sooner:
 * with events delayed, duplicated, reordered and dropped, every payment ends where its card says, with one
 * capture at most and one audit entry per version.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fastRecoveryEnv, startLocalRun } from '../../scripts/drill-env';
import { testLog } from '../helpers/test-log';
import { until } from '../helpers/until';

const output = testLog();
let run: Awaited<ReturnType<typeof startLocalRun>> | undefined;

/**
 * The worker gives up on a confirm after this long; the webhook must beat it. Long enough that the event's
 * path (simulator → webhook function → a queue message delayed 2 s while the attempt runs → worker) fits
 * on a loaded machine (4 s did not, at load average 15); without the event the payment would still be
 * processing when the test stops waiting.
 */
const PROVIDER_TIMEOUT_MS = 12_000;

// The simulator's URL and key come from startLocalRun; take only the recovery timings.
const { PROVIDER_URL: _url, PROVIDER_API_KEY: _key, ...fast } = fastRecoveryEnv('');

beforeAll(async () => {
  run = await startLocalRun({
    log: output.log,
    extraEnv: {
      ...fast,
      PROVIDER_TIMEOUT_MS: String(PROVIDER_TIMEOUT_MS),
      LEASE_SECONDS: '40',
      RETRY_BASE_SECONDS: '1',
      RETRY_CAP_SECONDS: '3',
      // No reconciler run within the test: only the worker and the webhooks move payments.
      STUCK_AFTER_SECONDS: '3600',
      BREAKER_MIN_FAILING_PAYMENTS: '1000',
      BREAKER_FAILURE_RATE: '1',
      // Not the account's rate budget under test: dev's 25 operations/s, booked more than its 5 s wait
      // ahead by the retrieves of duplicated events on a loaded machine, refused a decline's cancel, and
      // that payment then waited for its message's visibility timeout, past this test's wait.
      PROVIDER_OPS_PER_SECOND: '400',
    },
  });
}, 120_000);

afterAll(async () => {
  await run?.stop();
});

async function call(method: string, path: string, body?: unknown) {
  const res = await fetch(`${run!.stack.apiUrl}${path}`, {
    method,
    headers: { 'x-api-key': 'local-key-1', 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as any };
}

async function pay(token: string, amount = 12.34) {
  const res = await call('POST', '/api/payments/process', { idempotencyKey: `wh-${randomUUID()}`, amount, currency: 'EUR', paymentMethod: { type: 'card', token } });
  expect(res.status).toBe(201);
  return res.json.id as string;
}


const final = (id: string, timeoutMs?: number) =>
  until(() => call('GET', `/api/payments/${id}`), (r) => ['success', 'failed', 'expired', 'canceled'].includes(r.json.status), timeoutMs).then((r) => r.json);

const auditOf = (id: string, version: number) =>
  until(() => call('GET', `/api/audit/payments?paymentID=${id}&verify=true&limit=1000`), (r) => r.status === 200 && r.json.entries.length === version).then((r) => r.json);

describe('provider webhooks in, on the local stack', () => {
  it('a payment whose worker hangs on a confirm that captured is settled by the event before the worker gives up', async () => {
    run!.provider.setFaults({});
    const started = Date.now();
    const id = await pay('tok_timeout');
    // The reconciler is out of play and the worker waits PROVIDER_TIMEOUT_MS, then schedules a retry:
    // only the payment_intent.succeeded event can end it sooner.
    const p = await final(id, PROVIDER_TIMEOUT_MS - 500);
    expect(Date.now() - started).toBeLessThan(PROVIDER_TIMEOUT_MS);
    expect(p).toMatchObject({ status: 'success', retryCount: 0 });
    const audit = await auditOf(id, p.version);
    expect(audit.entries.map((e: any) => e.toStatus)).toEqual(['pending', 'processing', 'success']);
    expect(run!.provider.ledger(id).filter((e) => e.status === 'succeeded')).toHaveLength(1);
    // The worker's own late write lost the version race: nothing more was written.
    await new Promise((r) => setTimeout(r, PROVIDER_TIMEOUT_MS + 500));
    expect((await call('GET', `/api/payments/${id}`)).json.version).toBe(p.version);
  }, 60_000);

  it('events delayed, duplicated, reordered and dropped change nothing but speed', async () => {
    run!.provider.setFaults({ webhookDelayMs: 1500, webhookDuplicateRate: 0.5, webhookDropRate: 0.3, seed: 7 });
    const before = run!.provider.webhookStats();
    const cards: Array<[string, 'success' | 'failed']> = [
      ['tok_success', 'success'],
      ['tok_decline', 'failed'],
      ['tok_timeout', 'success'],
      ['tok_processing_800', 'success'],
      ['tok_processing_fail_800', 'failed'],
      ['tok_transient_1', 'success'],
    ];
    const batch = cards.flatMap((c) => [c, c]);
    const ids = await Promise.all(batch.map(([token]) => pay(token, 20)));
    const finals = await Promise.all(ids.map((id) => final(id, 60_000)));
    expect(finals.map((p) => p.status)).toEqual(batch.map(([, status]) => status));
    for (const [i, p] of finals.entries()) {
      // The provider ledger: one capture for a success, none otherwise.
      const captures = run!.provider.ledger(ids[i]).filter((e) => e.status === 'succeeded');
      expect(captures, `${batch[i]![0]}`).toHaveLength(p.status === 'success' ? 1 : 0);
      // The audit trail: versions 1..N, each status entered once (no double transition).
      const audit = await auditOf(p.id, p.version);
      expect(audit.verification.ok).toBe(true);
      expect(audit.entries.map((e: any) => e.version)).toEqual(Array.from({ length: p.version }, (_, v) => v + 1));
      const terminal = audit.entries.filter((e: any) => ['success', 'failed'].includes(e.toStatus));
      expect(terminal, `${batch[i]![0]}`).toHaveLength(1);
    }
    // The faults really ran, and every event that was sent got a 2xx (none for other reasons refused).
    await new Promise((r) => setTimeout(r, 1600));
    await run!.provider.webhooksSettled();
    const after = run!.provider.webhookStats();
    expect(after.dropped - before.dropped).toBeGreaterThan(0);
    expect(after.duplicated - before.duplicated).toBeGreaterThan(0);
    expect(after.delivered - before.delivered).toBeGreaterThan(0);
    expect(after.failed - before.failed).toBe(0);
  }, 90_000);

  it("events about another integration's intents are acknowledged and ignored", async () => {
    run!.provider.setFaults({});
    const before = run!.provider.webhookStats();
    const form = (o: Record<string, string>) => new URLSearchParams(o).toString();
    const headers = { authorization: 'Bearer sk_test_local', 'content-type': 'application/x-www-form-urlencoded' };
    const created = await fetch(`${run!.provider.url}/v1/payment_intents`, { method: 'POST', headers, body: form({ amount: '1000', currency: 'eur', 'metadata[payment_id]': 'pay_not_ours' }) });
    const intent = (await created.json()) as { id: string };
    await fetch(`${run!.provider.url}/v1/payment_intents/${intent.id}/confirm`, { method: 'POST', headers, body: form({ payment_method: 'tok_success' }) });
    await until(async () => run!.provider.webhookStats(), (s) => s.delivered - before.delivered >= 2, 10_000);
    expect(run!.provider.webhookStats().failed - before.failed).toBe(0);
  }, 30_000);
});
