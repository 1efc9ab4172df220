/**
 * The worker against DynamoDB Local, fauxqs and the provider simulator. Payments are created through
 * PaymentsService with the real repository and queue; a small driver plays the Lambda SQS event source:
 * it receives batches, runs the worker handler, deletes the records it did not report as failed and
 * lets the failed ones come back after a visibility timeout (longer than the lease, as in the stack).
 */
import { randomUUID } from 'node:crypto';
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  PurgeQueueCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type Message,
} from '@aws-sdk/client-sqs';
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPEN_SHARDS, PaymentRepository } from '../../functions/adapters/dynamo/payment-repository';
import { withCrashAfterCharge } from '../../functions/adapters/provider/fault-injection';
import { createStripeProvider } from '../../functions/adapters/provider/stripe-provider';
import { SqsPaymentQueue } from '../../functions/adapters/sqs/payment-queue';
import { CircuitBreaker } from '../../functions/core/circuit-breaker';
import type { Payment } from '../../functions/core/payment';
import { PaymentsService } from '../../functions/core/payments-service';
import { silentLogger as silent, type TransitionRequest } from '../../functions/core/ports';
import { ProviderError, type PaymentProvider } from '../../functions/core/ports/payment-provider';
import { PaymentProcessor } from '../../functions/core/processing/payment-processor';
import { loadConfig, type PaymentsConfig } from '../../functions/shared/env';
import { createWorkerHandler, type WorkerHandler } from '../../functions/worker/payment-worker';
import { startProviderSimulator, type ProviderSimulator } from '@idempotent-payments/provider-simulator';
import { startBackends, type Backends } from '../helpers/backends';

let b: Backends | undefined;
let sim: ProviderSimulator | undefined;
let config: PaymentsConfig;
let repo: PaymentRepository;
let queue: SqsPaymentQueue;
let dlqUrl: string;
let handler: WorkerHandler;

/** Payments whose first successful confirmation makes the worker crash before it writes the result. */
const crashOnce = new Set<string>();
/** Every transition the worker asked for, per payment. */
const transitions = new Map<string, TransitionRequest[]>();
const counts = { calls: new Map<string, number>() };

const LEASE_SECONDS = 5;

/** Counts provider calls by operation and outcome (`confirm:succeeded`, `confirm:unknown`, `retrieve:ok`, ...). */
function counting(p: PaymentProvider): PaymentProvider {
  const count = (k: string) => counts.calls.set(k, (counts.calls.get(k) ?? 0) + 1);
  const wrap =
    <A extends unknown[], R>(op: string, f: (...a: A) => Promise<R>) =>
    async (...a: A): Promise<R> => {
      try {
        const r = await f(...a);
        count(`${op}:${(r as { status?: string })?.status ?? 'ok'}`);
        return r;
      } catch (err) {
        count(`${op}:${err instanceof ProviderError ? err.kind : 'error'}`);
        throw err;
      }
    };
  return {
    createIntent: wrap('create', (r) => p.createIntent(r)),
    confirmIntent: wrap('confirm', (id, r) => p.confirmIntent(id, r)),
    retrieveIntent: wrap('retrieve', (id) => p.retrieveIntent(id)),
    findIntentsForPayment: wrap('find', (id) => p.findIntentsForPayment(id)),
    cancelIntent: wrap('cancel', (id, pid) => p.cancelIntent(id, pid)),
    refund: wrap('refund', (r) => p.refund(r)),
    retrieveRefund: wrap('retrieve_refund', (id) => p.retrieveRefund(id)),
    listRefunds: wrap('list_refunds', (id) => p.listRefunds(id)),
    listIntents: wrap('list', (q) => p.listIntents(q)),
  };
}

beforeAll(async () => {
  try {
    b = await startBackends();
    // Hung confirmations answer after 2 s; the provider adapter gives up after 1 s (room for a loaded machine).
    sim = await startProviderSimulator({ port: 0, timeoutMs: 2000, seed: 42 });
    const env = b.envOf('PaymentWorkerFunction');
    config = loadConfig({
      ...env,
      RETRY_BASE_SECONDS: '0.05',
      RETRY_CAP_SECONDS: '1',
      MAX_RETRIES: '3',
      LEASE_SECONDS: String(LEASE_SECONDS),
      PROVIDER_TIMEOUT_MS: '1000',
    });
    dlqUrl = Object.entries(b.resources.queues).find(([id]) => id.startsWith('PaymentsDlq'))![1].url;
    const real = new PaymentRepository(b.doc, {
      payments: config.paymentsTable,
      // Payments are seeded through PaymentsService (its create: the first payment carries its key).
      idempotency: b.envOf('CreatePaymentFunction').IDEMPOTENCY_TABLE!,
      openPaymentsIndex: config.openPaymentsIndex,
    });
    repo = real;
    queue = new SqsPaymentQueue(b.sqs, config.queueUrl);

    const url = new URL(sim.url);
    const stripe = createStripeProvider({ apiKey: 'sk_test_worker', host: url.hostname, port: Number(url.port), protocol: 'http', timeoutMs: config.providerTimeoutMs });
    const provider = withCrashAfterCharge(counting(stripe), (req) => crashOnce.delete(req.paymentId));
    const processor = new PaymentProcessor({
      store: {
        get: (id) => real.get(id),
        postpone: (p, dueAt) => real.postpone(p, dueAt),
        recordIntent: (p, intentId) => real.recordIntent(p, intentId),
        transition: (p, req) => {
          transitions.set(p.id, [...(transitions.get(p.id) ?? []), req]);
          return real.transition(p, req);
        },
      },
      provider,
      queue,
      breaker: new CircuitBreaker('provider', { minFailingPayments: 10, failureRateThreshold: 0.6, openMs: 500 }),
      config,
      logger: silent,
    });
    handler = createWorkerHandler({ processor, logger: silent });
  } catch (err) {
    await stopAll();
    throw err;
  }
});

async function stopAll(): Promise<void> {
  const errors: unknown[] = [];
  await sim?.stop().catch((e: unknown) => errors.push(e));
  await b?.stop().catch((e: unknown) => errors.push(e));
  sim = undefined;
  b = undefined;
  if (errors.length) throw errors[0];
}

afterAll(stopAll);

// ---- helpers ------------------------------------------------------------------------------------------

function service(maxRetries = config.maxRetries): PaymentsService {
  return new PaymentsService({
    store: repo,
    queue,
    idempotencyTtlSeconds: config.idempotencyTtlSeconds,
    maxRetries,
    stuckAfterSeconds: config.stuckAfterSeconds,
  });
}

async function createPayments(tokens: string[], opts: { maxRetries?: number; concurrency?: number } = {}): Promise<Payment[]> {
  const svc = service(opts.maxRetries);
  const out: Payment[] = new Array(tokens.length);
  let next = 0;
  const run = async () => {
    while (next < tokens.length) {
      const i = next++;
      const { payment } = await svc.create('tenant-1', {
        idempotencyKey: `wk-${randomUUID()}`,
        amountMinor: 1000 + i,
        currency: 'EUR',
        paymentMethod: { type: 'card', token: tokens[i]! },
        metadata: { n: String(i) },
      });
      out[i] = payment;
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency ?? 8 }, run));
  return out;
}

async function openPaymentCount(): Promise<number> {
  let n = 0;
  for (let s = 0; s < OPEN_SHARDS; s++) {
    const shard = `open#${String(s).padStart(2, '0')}`;
    let start: Record<string, unknown> | undefined;
    do {
      const page = await repo.openDue(shard, Number.MAX_SAFE_INTEGER, start, 500);
      n += page.items.length;
      start = page.next;
    } while (start);
  }
  return n;
}

const toRecord = (m: Message): SQSRecord =>
  ({
    messageId: m.MessageId!,
    receiptHandle: m.ReceiptHandle!,
    body: m.Body ?? '',
    attributes: { ApproximateReceiveCount: m.Attributes?.ApproximateReceiveCount ?? '1' },
    messageAttributes: {},
    md5OfBody: m.MD5OfBody ?? '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:local:000000000000:PaymentsQueue',
    awsRegion: 'us-east-1',
  }) as unknown as SQSRecord;

interface LoopStats {
  batches: number;
  records: number;
  failures: number;
  ms: number;
}

/**
 * Plays the SQS event source with `pollers` concurrent "Lambda instances" until `done()` holds.
 * Failed records become visible again after `failVisibilitySeconds` (the stack's 180 s, scaled down but
 * still longer than the lease, so a crashed attempt's redelivery finds the lease expired).
 */
async function runWorker(
  done: () => Promise<boolean>,
  opts: { pollers?: number; timeoutMs?: number; failVisibilitySeconds?: number } = {},
): Promise<LoopStats> {
  const stats: LoopStats = { batches: 0, records: 0, failures: 0, ms: 0 };
  const started = Date.now();
  const deadline = started + (opts.timeoutMs ?? 45_000);
  const failVisibility = opts.failVisibilitySeconds ?? LEASE_SECONDS + 1;
  let stop = false;
  const poller = async () => {
    while (!stop) {
      const { Messages } = await b!.sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: config.queueUrl,
          MaxNumberOfMessages: 10,
          WaitTimeSeconds: 1,
          VisibilityTimeout: 30,
          MessageSystemAttributeNames: ['ApproximateReceiveCount'],
        }),
      );
      if (!Messages?.length) continue;
      const event: SQSEvent = { Records: Messages.map(toRecord) };
      const res = await handler(event);
      const failed = new Set(res.batchItemFailures.map((f) => f.itemIdentifier));
      stats.batches++;
      stats.records += Messages.length;
      stats.failures += failed.size;
      const ok = Messages.filter((m) => !failed.has(m.MessageId!));
      const bad = Messages.filter((m) => failed.has(m.MessageId!));
      if (ok.length) {
        await b!.sqs.send(
          new DeleteMessageBatchCommand({ QueueUrl: config.queueUrl, Entries: ok.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })) }),
        );
      }
      if (bad.length) {
        await b!.sqs.send(
          new ChangeMessageVisibilityBatchCommand({
            QueueUrl: config.queueUrl,
            Entries: bad.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle!, VisibilityTimeout: failVisibility })),
          }),
        );
      }
    }
  };
  const checker = async () => {
    try {
      while (!(await done())) {
        if (Date.now() > deadline) throw new Error(`worker loop did not finish within ${opts.timeoutMs ?? 45_000} ms`);
        await new Promise((r) => setTimeout(r, 250));
      }
    } finally {
      stop = true;
    }
  };
  await Promise.all([checker(), ...Array.from({ length: opts.pollers ?? 3 }, poller)]);
  stats.ms = Date.now() - started;
  return stats;
}

const allClosed = async () => (await openPaymentCount()) === 0;

async function reload(ps: Payment[]): Promise<Payment[]> {
  return Promise.all(ps.map(async (p) => (await repo.get(p.id))!));
}

const succeededCharges = (paymentId: string) => sim!.ledger(paymentId).filter((e) => e.status === 'succeeded');

async function intentStatus(intentId: string): Promise<string> {
  const res = await fetch(`${sim!.url}/v1/payment_intents/${intentId}`, { headers: { authorization: 'Bearer sk_test_worker' } });
  return ((await res.json()) as { status: string }).status;
}

// ---- tests ----------------------------------------------------------------------------------------------

describe('worker with DynamoDB Local, fauxqs and the provider simulator', () => {
  it('good card → success; declines → failed after one attempt, not retryable', async () => {
    const created = await createPayments(['tok_success', 'tok_decline', 'tok_insufficient_funds', 'tok_invalid']);
    await runWorker(allClosed);
    const [good, decline, funds, invalid] = await reload(created);

    expect(good).toMatchObject({ status: 'success', attempt: 1, retryCount: 0 });
    expect(good!.providerChargeId).toMatch(/^ch_/);
    expect(good!.intentId).toMatch(/^pi_/);
    expect(good!.processedAt).toBeDefined();
    expect(good!.openShard).toBeUndefined();
    expect(succeededCharges(good!.id)).toHaveLength(1);
    expect(succeededCharges(good!.id)[0]!.idempotencyKey).toBe(`confirm-${good!.id}-1`);

    for (const [p, code] of [
      [decline, 'CARD_DECLINED'],
      [funds, 'INSUFFICIENT_FUNDS'],
      [invalid, 'INVALID_TOKEN'],
    ] as const) {
      expect(p).toMatchObject({ status: 'failed', attempt: 1, retryCount: 0, lastError: { code, retryable: false } });
      expect(succeededCharges(p!.id)).toHaveLength(0);
      // Failed only after its intent was cancelled: nothing can capture it later.
      expect(await intentStatus(p!.intentId!)).toBe('canceled');
    }
  });

  it('tok_transient_2 → success on the third attempt with retryCount 2, one capture on the one intent', async () => {
    const [created] = await createPayments(['tok_transient_2']);
    await runWorker(allClosed);
    const [p] = await reload([created!]);
    expect(p).toMatchObject({ status: 'success', attempt: 3, retryCount: 2 });
    expect(p!.lastError).toBeUndefined();
    expect(succeededCharges(p!.id).map((e) => e.idempotencyKey)).toEqual([`confirm-${p!.id}-3`]);
    expect(new Set(sim!.ledger(p!.id).map((e) => e.intentId)).size).toBe(1);
    const actions = transitions.get(p!.id)!.map((t) => t.change.action);
    expect(actions).toEqual(['attempt_started', 'retry_scheduled', 'attempt_started', 'retry_scheduled', 'attempt_started', 'charge_succeeded']);
  });

  it('tok_fail_always → failed after maxRetries with a retryable lastError and non-decreasing backoff caps', async () => {
    const [created] = await createPayments(['tok_fail_always']);
    await runWorker(allClosed);
    const [p] = await reload([created!]);
    expect(p).toMatchObject({
      status: 'failed',
      attempt: 4,
      retryCount: 3,
      maxRetries: 3,
      // The card's last answer is a 503; on a loaded machine the 1 s client timeout may end that attempt
      // first, which is as retryable and fails the payment the same way.
      lastError: { code: expect.stringMatching(/^PROVIDER_(UNAVAILABLE|TIMEOUT)$/), retryable: true },
    });
    const retries = transitions.get(p!.id)!.filter((t) => t.to === 'retrying');
    const caps = retries.map((t) => t.set!.lastError!.details!.backoffCapMs as number);
    const delays = retries.map((t) => t.set!.lastError!.details!.delayMs as number);
    expect(caps).toEqual([50, 100, 200]);
    for (let i = 0; i < caps.length; i++) expect(delays[i]).toBeLessThanOrEqual(caps[i]!);
    expect(succeededCharges(p!.id)).toHaveLength(0);
    expect(await intentStatus(p!.intentId!)).toBe('canceled');
  });

  it('a crash right after the confirmation is settled from the intent on redelivery: exactly one capture', async () => {
    const [created] = await createPayments(['tok_success']);
    crashOnce.add(created!.id);
    const stats = await runWorker(allClosed);
    const [p] = await reload([created!]);
    expect(crashOnce.has(created!.id)).toBe(false); // the hook fired
    expect(stats.failures).toBeGreaterThanOrEqual(1);
    expect(p).toMatchObject({ status: 'success', attempt: 1, retryCount: 0 });
    expect(succeededCharges(p!.id)).toHaveLength(1);
    expect(p!.providerChargeId).toBe(succeededCharges(p!.id)[0]!.chargeId);
    expect(transitions.get(p!.id)!.map((t) => t.change.action)).toEqual(['attempt_started', 'charge_succeeded']);
    expect(transitions.get(p!.id)![1]!.change.reason).toMatch(/lease lapsed; the intent had succeeded/);
  });

  it('poison messages are reported as failures and end up in the DLQ after maxReceiveCount', async () => {
    await b!.sqs.send(new PurgeQueueCommand({ QueueUrl: dlqUrl }));
    await b!.sqs.send(new SendMessageCommand({ QueueUrl: config.queueUrl, MessageBody: 'this is not json' }));
    await b!.sqs.send(new SendMessageCommand({ QueueUrl: config.queueUrl, MessageBody: JSON.stringify({ reason: 'created' }) }));
    const dlqDepth = async () => {
      const { Attributes } = await b!.sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ['ApproximateNumberOfMessages'] }));
      return Number(Attributes?.ApproximateNumberOfMessages ?? 0);
    };
    const stats = await runWorker(async () => (await dlqDepth()) >= 2, { failVisibilitySeconds: 0, pollers: 1, timeoutMs: 20_000 });
    expect(await dlqDepth()).toBe(2);
    expect(stats.failures).toBe(2 * 5); // maxReceiveCount receives each, all reported failed
  });

  it('300 good-card payments under every provider fault at once: all succeed with exactly one capture each', async () => {
    counts.calls.clear();
    // Every fault the simulator can produce, at once: outright errors, timeouts that did or did not
    // commit, commits answered with a 500, late commits that land after the client gave up, resets after
    // commit, and reads that lag behind.
    sim!.setFaults({
      errorRate: 0.1,
      timeoutRate: 0.05,
      commitThenErrorRate: 0.05,
      lateCommitRate: 0.05,
      lateCommitMs: 1500,
      resetAfterCommitRate: 0.02,
      lookupLagMs: 500,
      seed: 7,
    });
    const t0 = Date.now();
    // A larger retry budget: with ~27% of confirmations unclear, 3 retries would fail a few good cards.
    const created = await createPayments(Array.from({ length: 300 }, () => 'tok_success'), { maxRetries: 8, concurrency: 10 });
    const createMs = Date.now() - t0;
    // A legitimately long wait: ~400 attempts with backoff and 500 ms read lag; 20-40 s on idle cores,
    // past the suite's 60 s test timeout with one core busy and other runs on the machine.
    const stats = await runWorker(allClosed, { pollers: 4, timeoutMs: 150_000 });
    sim!.setFaults({});
    const ps = await reload(created);

    expect(ps.filter((p) => p.status !== 'success').map((p) => [p.id, p.status, p.lastError?.code])).toEqual([]);
    const ids = new Set(ps.map((p) => p.id));
    const ledger = sim!.ledger().filter((e) => ids.has(e.paymentId));
    const byPayment = new Map<string, number>();
    for (const e of ledger.filter((x) => x.status === 'succeeded')) byPayment.set(e.paymentId, (byPayment.get(e.paymentId) ?? 0) + 1);
    expect(byPayment.size).toBe(300);
    expect([...byPayment.values()].every((n) => n === 1)).toBe(true);
    for (const p of ps) {
      const capture = ledger.find((e) => e.paymentId === p.id && e.status === 'succeeded')!;
      expect(p.intentId).toBe(capture.intentId);
      expect(p.providerChargeId).toBe(capture.chargeId);
    }

    const attempts = ps.reduce((n, p) => n + p.attempt, 0);
    const retries = ps.reduce((n, p) => n + p.retryCount, 0);
    const summary = {
      payments: ps.length,
      attempts,
      retries,
      maxRetryCount: Math.max(...ps.map((p) => p.retryCount)),
      providerCalls: Object.fromEntries(counts.calls),
      captures: ledger.filter((e) => e.status === 'succeeded').length,
      batches: stats.batches,
      records: stats.records,
      failedRecords: stats.failures,
      createMs,
      workerMs: stats.ms,
    };
    if (process.env.TEST_VERBOSE) console.log(`300-payment run: ${JSON.stringify(summary)}`);
    expect(attempts).toBeGreaterThanOrEqual(300);
  }, 180_000);
});
