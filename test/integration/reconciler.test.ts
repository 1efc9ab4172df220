import { randomUUID } from 'node:crypto';
import { DeleteMessageBatchCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { BatchGetCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countOpenByStatus } from '../../functions/adapters/dynamo/open-payments';
import { PaymentRepository } from '../../functions/adapters/dynamo/payment-repository';
import { RecoveryRunsRepository } from '../../functions/adapters/dynamo/recovery-runs';
import { RefundRepository } from '../../functions/adapters/dynamo/refund-repository';
import { withCrashAfterCharge } from '../../functions/adapters/provider/fault-injection';
import { createStripeProvider } from '../../functions/adapters/provider/stripe-provider';
import { SqsPaymentQueue } from '../../functions/adapters/sqs/payment-queue';
import { recoveryRoute } from '../../functions/api/recovery-api';
import { CircuitBreaker } from '../../functions/core/circuit-breaker';
import type { Payment } from '../../functions/core/payment';
import { PaymentsService } from '../../functions/core/payments-service';
import { silentLogger as silent } from '../../functions/core/ports';
import type { PaymentProvider } from '../../functions/core/ports/payment-provider';
import { PaymentProcessor } from '../../functions/core/processing/payment-processor';
import { Reconciler } from '../../functions/core/reconciler';
import { createReconcilerHandler } from '../../functions/recovery/reconciler';
import { apiHandler } from '../../functions/shared/http';
import { startProviderSimulator } from '@idempotent-payments/provider-simulator';
import { startBackends, type Backends } from '../helpers/backends';

let b: Backends;
let sim: Awaited<ReturnType<typeof startProviderSimulator>>;
let repo: PaymentRepository;
let queue: SqsPaymentQueue;
let queueUrl: string;
let recoveryTable: string;
let refunds: RefundRepository;
const HOUR = 3_600_000;
const TAG = { service: 'idempotent-payments', stage: 'integration' };

function provider(): PaymentProvider {
  const url = new URL(sim.url);
  return createStripeProvider({ apiKey: 'sk_test_reconciler', host: url.hostname, port: Number(url.port), protocol: 'http', timeoutMs: 2000, tag: TAG });
}

function processorAt(clock: () => Date, crashAfterCharge = false) {
  return new PaymentProcessor({
    store: repo,
    provider: crashAfterCharge ? withCrashAfterCharge(provider(), () => true) : provider(),
    queue,
    breaker: new CircuitBreaker('test', { minFailingPayments: 1_000_000 }),
    config: { retryBaseSeconds: 0.05, retryCapSeconds: 1, leaseSeconds: 60, providerTimeoutMs: 2000 },
    clock,
    logger: silent,
  });
}

function reconcilerAt(now: Date) {
  return new Reconciler({
    store: repo,
    queue,
    processor: processorAt(() => now),
    provider: provider(),
    refunds,
    logger: silent,
    config: { stuckAfterSeconds: 120, openDeadlineSeconds: 86_400, settleGraceMs: 1000, providerWindowMinutes: 60, tag: TAG },
    clock: () => now,
  });
}

async function createAt(at: Date, token = 'tok_success'): Promise<Payment> {
  const svc = new PaymentsService({ store: repo, queue, clock: () => at, idempotencyTtlSeconds: 86_400, maxRetries: 3, stuckAfterSeconds: 120 });
  const { payment } = await svc.create('tenant-r', {
    idempotencyKey: `rk-${randomUUID()}`,
    amountMinor: 1000,
    currency: 'USD',
    paymentMethod: { type: 'card', token },
    metadata: {},
  });
  return payment;
}

async function drain(): Promise<string[]> {
  const ids: string[] = [];
  for (;;) {
    const { Messages } = await b.sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10 }));
    if (!Messages?.length) return ids;
    ids.push(...Messages.map((m) => JSON.parse(m.Body!).paymentId));
    await b.sqs.send(new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries: Messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })) }));
  }
}

beforeAll(async () => {
  [b, sim] = await Promise.all([startBackends(), startProviderSimulator({ port: 0, timeoutMs: 3000 })]);
  const env = b.envOf('ReconcilerFunction');
  // The reconciler never touches idempotency keys; the test creates payments the way the API does.
  const idempotency = b.envOf('CreatePaymentFunction').IDEMPOTENCY_TABLE!;
  repo = new PaymentRepository(b.doc, { payments: env.PAYMENTS_TABLE!, idempotency, openPaymentsIndex: env.OPEN_PAYMENTS_INDEX! });
  queueUrl = env.PAYMENTS_QUEUE_URL!;
  queue = new SqsPaymentQueue(b.sqs, queueUrl);
  recoveryTable = env.RECOVERY_TABLE!;
  refunds = new RefundRepository(b.doc, { refunds: env.REFUNDS_TABLE!, openRefundsIndex: env.OPEN_REFUNDS_INDEX! });
});

afterAll(async () => {
  await b?.stop();
  await sim?.stop();
});

describe('reconciler', () => {
  it('re-queues a pending payment whose message was lost, as an audited new version', async () => {
    const now = new Date();
    const p = await createAt(new Date(now.getTime() - 10 * 60_000));
    await drain(); // the creation message is "lost"
    const result = await reconcilerAt(now).run();
    expect(result.counts.requeued_pending).toBeGreaterThanOrEqual(1);
    const after = (await repo.get(p.id))!;
    expect(after).toMatchObject({ status: 'pending', version: 2, lastChange: { action: 'requeued', actor: 'reconciler' } });
    expect(after.dueAt).toBeGreaterThan(now.getTime());
    expect(await drain()).toContain(p.id);
    // Not due any more: a second run leaves it alone.
    const again = await reconcilerAt(now).run();
    expect(again.counts.requeued_pending ?? 0).toBe(0);
  });

  it('finishes a payment whose worker crashed after the confirmation: settled from the intent, one capture', async () => {
    const then = new Date(Date.now() - 5 * 60_000);
    const p = await createAt(then);
    await drain();
    await expect(processorAt(() => then, true).process({ paymentId: p.id, reason: 'created' })).rejects.toThrow(/injected crash/);
    expect((await repo.get(p.id))!.status).toBe('processing');
    expect(sim.ledger(p.id).filter((e) => e.status === 'succeeded')).toHaveLength(1);
    const result = await reconcilerAt(new Date()).run();
    expect(result.counts.lease_resolved_success).toBeGreaterThanOrEqual(1);
    expect((await repo.get(p.id))!).toMatchObject({ status: 'success' });
    expect(sim.ledger(p.id).filter((e) => e.status === 'succeeded')).toHaveLength(1);
    await drain();
  });

  it('schedules a retry for an abandoned attempt that never reached the provider', async () => {
    const then = new Date(Date.now() - 5 * 60_000);
    const p = await createAt(then);
    await drain();
    // Claimed, then the worker died before calling the provider.
    await repo.transition(p, { to: 'processing', now: then, change: { action: 'attempt_started', actor: 'worker' }, set: { attempt: 1, leaseUntil: then.getTime() + 60_000 }, dueAt: then.getTime() + 60_000 });
    const result = await reconcilerAt(new Date()).run();
    expect(result.counts.lease_resolved_retrying).toBeGreaterThanOrEqual(1);
    const after = (await repo.get(p.id))!;
    expect(after).toMatchObject({ status: 'retrying', retryCount: 1 });
    expect(sim.ledger(p.id).filter((e) => e.status === 'succeeded')).toHaveLength(0);
    await drain();
  });

  it('expires payments open past their deadline', async () => {
    const p = await createAt(new Date(Date.now() - 25 * HOUR));
    await drain();
    const result = await reconcilerAt(new Date()).run();
    expect(result.counts.expired).toBeGreaterThanOrEqual(1);
    expect((await repo.get(p.id))!).toMatchObject({ status: 'expired', lastError: { code: 'PAYMENT_EXPIRED', retryable: false } });
    expect((await repo.get(p.id))!.openShard).toBeUndefined();
  });

  it('never double-applies when racing a worker on the same payments', async () => {
    const now = new Date();
    const ps = await Promise.all(Array.from({ length: 20 }, () => createAt(new Date(now.getTime() - 10 * 60_000))));
    await drain();
    const worker = processorAt(() => now);
    await Promise.all([reconcilerAt(now).run(), ...ps.map((p) => worker.process({ paymentId: p.id, reason: 'created' }))]);
    // Let the worker finish whatever the reconciler re-queued.
    for (const id of await drain()) await worker.process({ paymentId: id, reason: 'requeue' });
    for (const p of ps) {
      expect((await repo.get(p.id))!.status).toBe('success');
      expect(sim.ledger(p.id).filter((e) => e.status === 'succeeded')).toHaveLength(1);
    }
  });

  it('refunds a capture whose payment is failed, records the refund on the payment, and refunds it only once', async () => {
    const then = new Date(Date.now() - 10 * 60_000);
    const p = await createAt(then);
    await drain();
    // Captured at the provider, but our record ended failed (e.g. an operator error or a bug).
    const prov = provider();
    const intent = await prov.createIntent({ paymentId: p.id, amountMinor: 1000, currency: 'USD' });
    await prov.confirmIntent(intent.id, { paymentId: p.id, attempt: 1, paymentMethod: 'tok_success' });
    const claimed = await repo.transition(p, { to: 'processing', now: then, change: { action: 'attempt_started', actor: 'worker' }, set: { attempt: 1, leaseUntil: Date.now() + 60_000 } });
    await repo.transition(claimed, { to: 'failed', now: then, change: { action: 'failed', actor: 'test' } });
    await new Promise((r) => setTimeout(r, 1100)); // past the settle grace
    expect(sim.netCaptured(p.id)).toBe(1000);

    const result = await reconcilerAt(new Date()).run();
    expect(result.discrepancies).toContainEqual(
      expect.objectContaining({ kind: 'UNACCOUNTED_CAPTURE_REFUNDED', paymentId: p.id, intentId: intent.id, status: 'failed', amountMinor: 1000 }),
    );
    expect(result.refundsIssued).toBeGreaterThanOrEqual(1);
    expect(sim.netCaptured(p.id)).toBe(0);
    const after = (await repo.get(p.id))!;
    expect(after).toMatchObject({ status: 'failed', lastChange: { action: 'refund_issued', actor: 'reconciler' } });
    expect(after.refunds).toEqual([expect.objectContaining({ intentId: intent.id, amountMinor: 1000 })]);

    await reconcilerAt(new Date()).run();
    expect(sim.ledger(p.id).filter((e) => e.status === 'refunded')).toHaveLength(1);
  });
});

describe('recovery runs', () => {
  it('POST starts one run at a time and GET shows runs and open payments by status', async () => {
    const runs = new RecoveryRunsRepository(b.doc, recoveryTable);
    const started: string[] = [];
    const api = apiHandler(
      recoveryRoute({
        runs,
        startReconciler: async (run) => {
          started.push(run.runId);
        },
        openCounts: async () => ({ pending: 1, processing: 0, retrying: 0, total: 1 }),
        runLeaseMs: 60_000,
        logger: silent,
      }),
    );
    const ev = (method: string, resource: string) =>
      ({ httpMethod: method, resource, headers: {}, requestContext: { requestId: randomUUID(), identity: { apiKeyId: 'ops' } } }) as never;
    const first = await api(ev('POST', '/api/recovery/process'));
    expect(first.statusCode).toBe(202);
    const { runId } = JSON.parse(first.body);
    const second = await api(ev('POST', '/api/recovery/process'));
    expect(second.statusCode).toBe(200);
    expect(JSON.parse(second.body)).toMatchObject({ runId, alreadyRunning: true });
    expect(started).toEqual([runId]);

    // The reconciler finishes the API's run and releases the lock.
    const handler = createReconcilerHandler({ runs, reconciler: () => reconcilerAt(new Date()), runLeaseMs: 60_000, logger: silent });
    const out = await handler({ source: 'recovery-api', runId, startedAt: JSON.parse(first.body).startedAt });
    expect(out).toMatchObject({ runId });
    const status = JSON.parse((await api(ev('GET', '/api/recovery/status'))).body);
    expect(status.runs[0]).toMatchObject({ runId, status: 'completed' });
    expect(status.runs[0].counts).toBeTypeOf('object');
    expect(status.openPayments).toEqual({ pending: 1, processing: 0, retrying: 0, total: 1 });
    const next = await api(ev('POST', '/api/recovery/process'));
    expect(JSON.parse(next.body).runId).not.toBe(runId);
  });

  it("GET status counts open payments by status: the keys-only index names them, the payments' own statuses are counted; one that closed meanwhile is not", async () => {
    const env = b.envOf('RecoveryApiFunction');
    const count = (doc: Pick<typeof b.doc, 'send'>) => countOpenByStatus(doc, env.PAYMENTS_TABLE!, env.OPEN_PAYMENTS_INDEX!);
    // What the other tests left open; nothing moves those while this test runs.
    const before = await count(b.doc);
    expect(before.complete).toBe(true);
    // Due an hour from now: no reconciler run of this file touches them.
    const later = new Date(Date.now() + HOUR);
    const [pending, processing, closing] = await Promise.all([createAt(later), createAt(later), createAt(later)]);
    await drain();
    await repo.transition(processing, { to: 'processing', now: later, change: { action: 'attempt_started', actor: 'worker' }, set: { attempt: 1, leaseUntil: later.getTime() + 60_000 }, dueAt: processing.dueAt });
    // `closing` ends between the index query that names it and the read of its status.
    let closed = false;
    const doc = {
      send: async (cmd: Parameters<typeof b.doc.send>[0]) => {
        const keys = cmd instanceof BatchGetCommand ? Object.values(cmd.input.RequestItems ?? {})[0]?.Keys ?? [] : [];
        if (!closed && keys.some((k) => k.id === closing.id)) {
          closed = true;
          await repo.transition((await repo.get(closing.id))!, { to: 'expired', now: later, change: { action: 'expired', actor: 'test' } });
        }
        return b.doc.send(cmd as never);
      },
    };
    const counts = await count(doc);
    expect(closed).toBe(true);
    expect(counts).toEqual({ ...before, pending: before.pending + 1, processing: before.processing + 1, total: before.total + 2 });
    expect((await repo.get(pending.id))!.status).toBe('pending');
  });
});
