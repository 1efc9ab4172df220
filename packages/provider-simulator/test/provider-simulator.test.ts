/**
 * The Stripe-compatible simulator, exercised mostly through the Stripe adapter, so the adapter meets every
 * failure the simulator can produce. Deterministic: rates are 0 or 1, the RNG is seeded, and timing checks
 * only ever wait (polls with generous deadlines), never race a tight budget.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createStripeProvider } from '../../../functions/adapters/provider/stripe-provider';
import { ProviderError, type PaymentProvider, type ProviderIntent } from '../../../functions/core/ports/payment-provider';
import { netCaptured, startProviderSimulator, type LedgerEntry, type ProviderSimulator } from '../src/provider-simulator';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const API_KEY = 'sk_test_simulator';
/** How long a simulated timeout hangs; the client gives up long before. */
const SIM_HANG_MS = 30_000;
/** The adapter's budget for one call: generous for a loaded machine, far below the hang. */
const CLIENT_TIMEOUT_MS = 2_000;

let sim: ProviderSimulator;
let provider: PaymentProvider;
const tmpDirs: string[] = [];
const extraSims: ProviderSimulator[] = [];
const children: ChildProcess[] = [];

const providerFor = (url: string, timeoutMs = CLIENT_TIMEOUT_MS, apiKey = API_KEY): PaymentProvider =>
  createStripeProvider({ apiKey, host: '127.0.0.1', port: Number(new URL(url).port), protocol: 'http', timeoutMs });

beforeAll(async () => {
  sim = await startProviderSimulator({ port: 0, timeoutMs: SIM_HANG_MS, seed: 1 });
  provider = providerFor(sim.url);
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

const newPaymentId = (): string => `pay_${randomUUID()}`;

async function newIntent(p: PaymentProvider = provider, paymentId = newPaymentId(), amountMinor = 4200): Promise<ProviderIntent> {
  return p.createIntent({ paymentId, amountMinor, currency: 'EUR' });
}

const confirm = (intent: ProviderIntent, paymentMethod: string, attempt = 1, p: PaymentProvider = provider) =>
  p.confirmIntent(intent.id, { paymentId: intent.paymentId, attempt, paymentMethod });

/** The ProviderError a call rejects with (fails the test if it resolves or throws something else). */
async function providerError(p: Promise<unknown>): Promise<ProviderError> {
  const r = await p.then(
    (v) => ({ ok: true as const, v }),
    (e: unknown) => ({ ok: false as const, e }),
  );
  if (r.ok) throw new Error(`expected a ProviderError, got ${JSON.stringify(r.v)}`);
  if (!(r.e instanceof ProviderError)) throw r.e;
  return r.e;
}

/** Polls until `check` passes; generous deadline, so a loaded machine only makes it slower. */
async function eventually<T>(fn: () => Promise<T>, check: (v: T) => boolean, deadlineMs = 20_000): Promise<T> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const v = await fn();
    if (check(v)) return v;
    if (Date.now() > until) throw new Error(`condition not met in ${deadlineMs} ms; last value ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The intent, or undefined while a lookup cannot see it yet. */
const retrieveOrNothing = (id: string): Promise<ProviderIntent | undefined> =>
  provider.retrieveIntent(id).catch((e: unknown) => {
    if (e instanceof ProviderError && e.code === 'resource_missing') return undefined;
    throw e;
  });

const captures = (paymentId: string, s: ProviderSimulator = sim): LedgerEntry[] => s.ledger(paymentId).filter((e) => e.status === 'succeeded');

describe('simulator basics', () => {
  it('answers /health on loopback only and refuses another host', async () => {
    expect((await fetch(`${sim.url}/health`)).status).toBe(200);
    expect(sim.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    await expect(startProviderSimulator({ host: '0.0.0.0' as '127.0.0.1' })).rejects.toThrow(/127\.0\.0\.1/);
  });

  it('speaks Stripe: form bodies in, Stripe error objects out', async () => {
    const res = await fetch(`${sim.url}/v1/payment_intents/pi_missing`, { headers: { authorization: `Bearer ${API_KEY}` } });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: expect.objectContaining({ type: 'invalid_request_error', code: 'resource_missing' }) });
    const created = await fetch(`${sim.url}/v1/payment_intents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'amount=150&currency=USD&metadata[payment_id]=pay_form&metadata[order]=o-1',
    });
    expect(await created.json()).toMatchObject({ object: 'payment_intent', amount: 150, currency: 'usd', metadata: { payment_id: 'pay_form', order: 'o-1' } });
  });

  it('the fault API replaces the set, shows every value, refuses unknown names and bad values', async () => {
    const post = (body: unknown) => fetch(`${sim.url}/v1/faults`, { method: 'POST', body: JSON.stringify(body) });
    const ok = await post({ commitThenErrorRate: 1, lookupLagMs: 10, seed: 3 });
    expect(ok.status).toBe(200);
    const shown = (await (await fetch(`${sim.url}/v1/faults`)).json()) as { faults: Record<string, unknown> };
    expect(shown.faults).toEqual({
      errorRate: 0,
      timeoutRate: 0,
      timeoutCommitRate: 0.5,
      commitThenErrorRate: 1,
      lateCommitRate: 0,
      lateCommitMs: 3000,
      resetAfterCommitRate: 0,
      createErrorRate: 0,
      cancelErrorRate: 0,
      refundErrorRate: 0,
      savedErrorCommitRate: 0.5,
      refundPendingMs: 0,
      refundFailureRate: 0,
      idempotencyTtlMs: 86_400_000,
      latencyMs: 0,
      lookupLagMs: 10,
      lookupErrorRate: 0,
      authFailure: false,
      webhookDelayMs: 0,
      webhookDuplicateRate: 0,
      webhookDropRate: 0,
    });
    expect((await post({ noSuchFault: 1 })).status).toBe(400);
    expect((await post({ webhookDropRate: 1.5 })).status).toBe(400);
    expect((await post({ errorRate: 2 })).status).toBe(400);
    expect((await post({ errorRate: 0.6, timeoutRate: 0.6 })).status).toBe(400);
    expect((await post({ authFailure: 'yes' })).status).toBe(400);
    expect(() => sim.setFaults({ latencyMs: -1 })).toThrow(RangeError);
  });
});

describe('intents through the Stripe adapter', () => {
  it('create is idempotent per payment: the same payment id gets the same intent', async () => {
    const paymentId = newPaymentId();
    const a = await newIntent(provider, paymentId);
    expect(a).toMatchObject({ paymentId, status: 'requires_payment_method', amountMinor: 4200, currency: 'EUR', amountReceived: 0 });
    expect(a.id).toMatch(/^pi_/);
    const b = await newIntent(provider, paymentId);
    expect(b.id).toBe(a.id);
    await expect(provider.findIntentsForPayment(paymentId)).resolves.toEqual([expect.objectContaining({ id: a.id })]);
    await expect(provider.findIntentsForPayment(newPaymentId())).resolves.toEqual([]);
  });

  it('the same create key with other parameters is rejected (a bug, not a retry)', async () => {
    const paymentId = newPaymentId();
    await newIntent(provider, paymentId, 100);
    const err = await providerError(newIntent(provider, paymentId, 200));
    expect(err).toMatchObject({ kind: 'rejected', code: 'idempotency_error', extra: { httpStatus: 400 } });
  });

  it('a key still in flight gets 409 idempotency_key_in_use → throttled; afterwards it replays', async () => {
    sim.setFaults({ latencyMs: 3_000 });
    const paymentId = newPaymentId();
    const patient = providerFor(sim.url, 30_000);
    const first = newIntent(patient, paymentId);
    await new Promise((r) => setTimeout(r, 500));
    const second = newIntent(patient, paymentId);
    // Whichever reached the simulator first holds the key; the other is refused without effect.
    const settled = await Promise.allSettled([first, second]);
    const created = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const refused = settled.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    expect(created).toHaveLength(1);
    expect(refused).toEqual([expect.objectContaining({ kind: 'throttled', code: 'idempotency_key_in_use', extra: { httpStatus: 409 } })]);
    sim.setFaults({});
    await expect(newIntent(provider, paymentId)).resolves.toMatchObject({ id: created[0]!.id });
  });

  it('confirm captures once; the intent shows the charge; a replayed attempt key moves no money', async () => {
    const intent = await newIntent();
    const done = await confirm(intent, 'pm_card_visa');
    expect(done).toMatchObject({ id: intent.id, status: 'succeeded', amountReceived: 4200 });
    expect(done.latestChargeId).toMatch(/^ch_/);
    await expect(confirm(intent, 'pm_card_visa')).resolves.toMatchObject({ status: 'succeeded', latestChargeId: done.latestChargeId });
    expect(captures(intent.paymentId)).toEqual([
      expect.objectContaining({ intentId: intent.id, amountMinor: 4200, currency: 'EUR', chargeId: done.latestChargeId, idempotencyKey: `confirm-${intent.paymentId}-1` }),
    ]);
  });

  it('an intent succeeds at most once: a second attempt gets payment_intent_unexpected_state with the intent', async () => {
    const intent = await newIntent();
    await confirm(intent, 'tok_success', 1);
    const err = await providerError(confirm(intent, 'tok_success', 2));
    expect(err).toMatchObject({ kind: 'rejected', code: 'payment_intent_unexpected_state', extra: { httpStatus: 400, intent: { status: 'succeeded' } } });
    expect(captures(intent.paymentId)).toHaveLength(1);
  });

  it('per-intent lock: a confirm or cancel while another confirm runs gets lock_timeout → throttled', async () => {
    const intent = await newIntent();
    // A patient client for the slow confirm: it holds the lock for 6 s and must not time out here.
    const slow = confirm(intent, 'tok_slow_6000', 1, providerFor(sim.url, 30_000));
    // Give it ample time to reach the simulator and take the lock; the window left is still seconds long.
    await new Promise((r) => setTimeout(r, 1_000));
    await expect(providerError(confirm(intent, 'tok_success', 2))).resolves.toMatchObject({ kind: 'throttled', code: 'lock_timeout', extra: { httpStatus: 429 } });
    await expect(providerError(provider.cancelIntent(intent.id, intent.paymentId))).resolves.toMatchObject({ kind: 'throttled', code: 'lock_timeout' });
    await expect(slow).resolves.toMatchObject({ status: 'succeeded' });
    expect(captures(intent.paymentId)).toHaveLength(1);
    // The refused requests saved nothing: attempt 2 now meets the succeeded intent.
    await expect(providerError(confirm(intent, 'tok_success', 2))).resolves.toMatchObject({ code: 'payment_intent_unexpected_state' });
  });

  it('a canceled intent never succeeds; a second cancel (its own key) says it is cancelled; cancel after success is refused', async () => {
    const intent = await newIntent();
    await expect(provider.cancelIntent(intent.id, intent.paymentId)).resolves.toMatchObject({ status: 'canceled' });
    const again = await providerError(provider.cancelIntent(intent.id, intent.paymentId));
    expect(again).toMatchObject({ kind: 'rejected', code: 'payment_intent_unexpected_state', extra: { intent: { status: 'canceled' } } });
    const err = await providerError(confirm(intent, 'tok_success'));
    expect(err).toMatchObject({ kind: 'rejected', code: 'payment_intent_unexpected_state', extra: { intent: { status: 'canceled' } } });
    expect(sim.ledger(intent.paymentId)).toEqual([]);

    const paid = await newIntent();
    await confirm(paid, 'tok_success');
    const refused = await providerError(provider.cancelIntent(paid.id, paid.paymentId));
    expect(refused).toMatchObject({ kind: 'rejected', code: 'payment_intent_unexpected_state', extra: { intent: { status: 'succeeded' } } });
  });

  it.each([
    ['tok_decline', 'generic_decline'],
    ['pm_card_chargeDeclined', 'generic_decline'],
    ['tok_insufficient_funds', 'insufficient_funds'],
    ['pm_card_chargeDeclinedInsufficientFunds', 'insufficient_funds'],
  ])('%s is declined (%s) with the intent, which a later attempt can still confirm', async (pm, declineCode) => {
    const intent = await newIntent();
    const err = await providerError(confirm(intent, pm, 1));
    expect(err).toMatchObject({
      kind: 'declined',
      code: 'card_declined',
      extra: { httpStatus: 402, declineCode, intent: { id: intent.id, status: 'requires_payment_method', lastError: { code: 'card_declined', declineCode } } },
    });
    await expect(provider.retrieveIntent(intent.id)).resolves.toMatchObject({ status: 'requires_payment_method', lastError: { declineCode } });
    // The saved decline is replayed for the same attempt key.
    await expect(providerError(confirm(intent, pm, 1))).resolves.toMatchObject({ kind: 'declined', code: 'card_declined' });
    await expect(confirm(intent, 'tok_success', 2)).resolves.toMatchObject({ status: 'succeeded' });
    expect(sim.ledger(intent.paymentId).map((e) => e.status)).toEqual(['declined', 'succeeded']);
  });

  it('tok_invalid is a payment method that does not exist: 400 resource_missing → rejected', async () => {
    const intent = await newIntent();
    await expect(providerError(confirm(intent, 'tok_invalid'))).resolves.toMatchObject({ kind: 'rejected', code: 'resource_missing', extra: { httpStatus: 400 } });
    expect(sim.ledger(intent.paymentId)).toEqual([]);
  });

  it('tok_transient_2 fails the first two confirms of the intent (500, saved per key), then captures', async () => {
    const intent = await newIntent();
    await expect(providerError(confirm(intent, 'tok_transient_2', 1))).resolves.toMatchObject({ kind: 'unknown', code: 'HTTP_500' });
    // Stripe replays a saved 500 for the same key: only a new attempt key runs again.
    await expect(providerError(confirm(intent, 'tok_transient_2', 1))).resolves.toMatchObject({ kind: 'unknown', code: 'HTTP_500' });
    await expect(providerError(confirm(intent, 'tok_transient_2', 2))).resolves.toMatchObject({ kind: 'unknown' });
    await expect(confirm(intent, 'tok_transient_2', 3)).resolves.toMatchObject({ status: 'succeeded' });
    expect(captures(intent.paymentId)).toHaveLength(1);
  });

  it('tok_fail_always never captures; tok_rate_limited is throttled with Retry-After', async () => {
    const intent = await newIntent();
    for (let attempt = 1; attempt <= 3; attempt++) {
      await expect(providerError(confirm(intent, 'tok_fail_always', attempt))).resolves.toMatchObject({ kind: 'unknown', code: 'HTTP_500' });
    }
    await expect(provider.retrieveIntent(intent.id)).resolves.toMatchObject({ status: 'requires_payment_method', amountReceived: 0 });
    await expect(providerError(confirm(intent, 'tok_rate_limited', 4))).resolves.toMatchObject({
      kind: 'throttled',
      code: 'rate_limit',
      extra: { retryAfterMs: 1000, httpStatus: 429 },
    });
    expect(sim.ledger(intent.paymentId)).toEqual([]);
  });

  it('tok_timeout captures and never answers in time: unknown, and retrieve shows the capture', async () => {
    const intent = await newIntent();
    await expect(providerError(confirm(intent, 'tok_timeout'))).resolves.toMatchObject({ kind: 'unknown', code: 'TIMEOUT' });
    await expect(provider.retrieveIntent(intent.id)).resolves.toMatchObject({ status: 'succeeded', amountReceived: 4200 });
    expect(captures(intent.paymentId)).toHaveLength(1);
  });

  it('retrieve of a missing intent is rejected resource_missing', async () => {
    await expect(providerError(provider.retrieveIntent('pi_nope'))).resolves.toMatchObject({ kind: 'rejected', code: 'resource_missing', extra: { httpStatus: 404 } });
  });
});

describe('honest faults', () => {
  it('errorRate: 500 without capturing', async () => {
    const intent = await newIntent();
    sim.setFaults({ errorRate: 1 });
    await expect(providerError(confirm(intent, 'tok_success'))).resolves.toMatchObject({ kind: 'unknown', code: 'HTTP_500' });
    await expect(provider.retrieveIntent(intent.id)).resolves.toMatchObject({ status: 'requires_payment_method' });
    expect(sim.ledger(intent.paymentId)).toEqual([]);
  });

  it('commitThenError: the adapter says unknown, retrieve shows succeeded, replays still say 500', async () => {
    const intent = await newIntent();
    sim.setFaults({ commitThenErrorRate: 1 });
    await expect(providerError(confirm(intent, 'tok_success'))).resolves.toMatchObject({ kind: 'unknown', code: 'HTTP_500' });
    sim.setFaults({});
    await expect(provider.retrieveIntent(intent.id)).resolves.toMatchObject({ status: 'succeeded' });
    await expect(providerError(confirm(intent, 'tok_success'))).resolves.toMatchObject({ kind: 'unknown', code: 'HTTP_500' });
    await expect(providerError(confirm(intent, 'tok_success', 2))).resolves.toMatchObject({ code: 'payment_intent_unexpected_state' });
    expect(captures(intent.paymentId)).toHaveLength(1);
  });

  it('timeoutRate with timeoutCommitRate 1: a timeout that captured', async () => {
    const intent = await newIntent();
    sim.setFaults({ timeoutRate: 1, timeoutCommitRate: 1, seed: 5 });
    await expect(providerError(confirm(intent, 'tok_success'))).resolves.toMatchObject({ kind: 'unknown', code: 'TIMEOUT' });
    sim.setFaults({});
    await expect(provider.retrieveIntent(intent.id)).resolves.toMatchObject({ status: 'succeeded' });
    // The capture was saved under the key: the same attempt replays it at once.
    await expect(confirm(intent, 'tok_success')).resolves.toMatchObject({ status: 'succeeded' });
    expect(captures(intent.paymentId)).toHaveLength(1);
  });

  it('timeoutRate with timeoutCommitRate 0: a timeout that did not capture', async () => {
    const intent = await newIntent();
    sim.setFaults({ timeoutRate: 1, timeoutCommitRate: 0, seed: 5 });
    await expect(providerError(confirm(intent, 'tok_success'))).resolves.toMatchObject({ kind: 'unknown', code: 'TIMEOUT' });
    sim.setFaults({});
    await expect(provider.retrieveIntent(intent.id)).resolves.toMatchObject({ status: 'requires_payment_method' });
    await expect(confirm(intent, 'tok_success')).resolves.toMatchObject({ status: 'succeeded' });
    expect(captures(intent.paymentId)).toHaveLength(1);
  });

  it('lateCommit: the client times out, the intent stays locked, then succeeds once; later attempts cannot capture', async () => {
    const intent = await newIntent();
    sim.setFaults({ lateCommitRate: 1, lateCommitMs: 6_000 });
    await expect(providerError(confirm(intent, 'tok_success', 1))).resolves.toMatchObject({ kind: 'unknown', code: 'TIMEOUT' });
    sim.setFaults({});
    // Still running on the provider: not captured yet, and the lock refuses another attempt or a cancel.
    await expect(provider.retrieveIntent(intent.id)).resolves.toMatchObject({ status: 'requires_payment_method' });
    await expect(providerError(confirm(intent, 'tok_success', 2))).resolves.toMatchObject({ kind: 'throttled', code: 'lock_timeout' });
    await expect(providerError(provider.cancelIntent(intent.id, intent.paymentId))).resolves.toMatchObject({ kind: 'throttled', code: 'lock_timeout' });
    await eventually(() => provider.retrieveIntent(intent.id), (i) => i.status === 'succeeded');
    await expect(providerError(confirm(intent, 'tok_success', 3))).resolves.toMatchObject({ code: 'payment_intent_unexpected_state' });
    expect(captures(intent.paymentId)).toHaveLength(1);
  }, 40_000);

  it('resetAfterCommit: the socket dies after the capture (also on the SDK reconnect retry); a later replay answers', async () => {
    const intent = await newIntent();
    sim.setFaults({ resetAfterCommitRate: 1 });
    await expect(providerError(confirm(intent, 'tok_success'))).resolves.toMatchObject({ kind: 'unknown', code: 'NETWORK_ERROR' });
    sim.setFaults({});
    const seen = await provider.retrieveIntent(intent.id);
    expect(seen).toMatchObject({ status: 'succeeded' });
    await expect(confirm(intent, 'tok_success')).resolves.toMatchObject({ status: 'succeeded', latestChargeId: seen.latestChargeId });
    expect(captures(intent.paymentId)).toHaveLength(1);
  });

  it('lookupLag: an intent younger than the lag is not found yet; the truth arrives later', async () => {
    sim.setFaults({ lookupLagMs: 4_000 });
    const intent = await newIntent();
    // Too young to be seen at all.
    await expect(providerError(provider.retrieveIntent(intent.id))).resolves.toMatchObject({ kind: 'rejected', code: 'resource_missing' });
    await expect(provider.findIntentsForPayment(intent.paymentId)).resolves.toEqual([]);
    // The confirm's own answer is current; lookups still show the old state until the lag passes.
    await expect(confirm(intent, 'tok_success')).resolves.toMatchObject({ status: 'succeeded' });
    await eventually(() => retrieveOrNothing(intent.id), (i) => i?.status === 'succeeded');
  }, 40_000);

  it('lookupLag: right after a confirm, retrieve still shows the state before it', async () => {
    const intent = await newIntent();
    sim.setFaults({ lookupLagMs: 4_000 });
    // The intent is older than nothing yet: wait until its creation is visible.
    await eventually(
      () => provider.findIntentsForPayment(intent.paymentId),
      (found) => found.length > 0,
    );
    await confirm(intent, 'tok_success');
    await expect(provider.retrieveIntent(intent.id)).resolves.toMatchObject({ status: 'requires_payment_method' });
    await eventually(() => provider.retrieveIntent(intent.id), (i) => i.status === 'succeeded');
  }, 40_000);

  it('lookupErrorRate: lookups answer 500 → unknown', async () => {
    const intent = await newIntent();
    sim.setFaults({ lookupErrorRate: 1 });
    await expect(providerError(provider.retrieveIntent(intent.id))).resolves.toMatchObject({ kind: 'unknown', code: 'HTTP_500' });
    await expect(providerError(provider.findIntentsForPayment(intent.paymentId))).resolves.toMatchObject({ kind: 'unknown' });
  });

  it('authFailure and a wrong key are an outage, never a decline', async () => {
    sim.setFaults({ authFailure: true });
    await expect(providerError(newIntent())).resolves.toMatchObject({ kind: 'outage', code: 'api_key_expired', extra: { httpStatus: 401 } });
    sim.setFaults({});
    await expect(providerError(newIntent(providerFor(sim.url, CLIENT_TIMEOUT_MS, 'sk_live_wrong')))).resolves.toMatchObject({ kind: 'outage', extra: { httpStatus: 401 } });
  });
});

describe('refunds, listing and the ledger', () => {
  it('refunds are idempotent per key; the ledger nets captures and refunds; the charge shows what was refunded', async () => {
    const intent = await newIntent(provider, newPaymentId(), 5000);
    await confirm(intent, 'tok_success');
    const part = { refundId: `rf_${randomUUID()}`, keyGeneration: 0, intentId: intent.id, paymentId: intent.paymentId, amountMinor: 1000, currency: 'EUR', reason: 'test' };
    const r1 = await provider.refund(part);
    expect(r1).toMatchObject({ intentId: intent.id, amountMinor: 1000, currency: 'EUR', status: 'succeeded', refundId: part.refundId });
    await expect(provider.refund(part)).resolves.toMatchObject({ id: r1.id });
    expect(sim.netCaptured(intent.paymentId)).toBe(4000);
    await expect(provider.retrieveIntent(intent.id)).resolves.toMatchObject({ amountReceived: 5000, amountRefunded: 1000 });
    await expect(providerError(provider.refund({ ...part, refundId: `rf_${randomUUID()}`, amountMinor: 9000 }))).resolves.toMatchObject({ kind: 'rejected', code: 'amount_too_large' });
    const rest = await provider.refund({ ...part, refundId: `rf_${randomUUID()}`, amountMinor: 4000 });
    expect(rest.amountMinor).toBe(4000);
    await expect(provider.listRefunds(intent.id)).resolves.toEqual([expect.objectContaining({ id: rest.id }), expect.objectContaining({ id: r1.id, refundId: part.refundId })]);
    expect(sim.ledger(intent.paymentId).map((e) => [e.status, e.amountMinor])).toEqual([
      ['succeeded', 5000],
      ['refunded', 1000],
      ['refunded', 4000],
    ]);
    expect(sim.netCaptured(intent.paymentId)).toBe(0);
    const http = (await (await fetch(`${sim.url}/v1/ledger?paymentId=${encodeURIComponent(intent.paymentId)}`)).json()) as { entries: LedgerEntry[] };
    expect(netCaptured(http.entries)).toBe(0);
    expect(http.entries).toHaveLength(3);
  });

  it('a refund of an intent that captured nothing is rejected', async () => {
    const intent = await newIntent();
    await expect(providerError(provider.refund({ refundId: 'rf_x', keyGeneration: 0, intentId: intent.id, paymentId: intent.paymentId, amountMinor: 4200, currency: 'EUR', reason: 'x' }))).resolves.toMatchObject({
      kind: 'rejected',
      code: 'payment_intent_unexpected_state',
    });
  });

  it('listIntents pages through a time window, newest first, with a cursor', async () => {
    const s = await startProviderSimulator({ port: 0, timeoutMs: SIM_HANG_MS });
    extraSims.push(s);
    const p = providerFor(s.url);
    const from = new Date(Date.now() - 1000);
    const made: string[] = [];
    for (let i = 0; i < 5; i++) made.push((await newIntent(p)).id);
    const to = new Date(Date.now() + 2000);
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await p.listIntents({ from, to, limit: 2, ...(cursor ? { startingAfter: cursor } : {}) });
      seen.push(...page.intents.map((i) => i.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor && pages < 10);
    expect(pages).toBe(3);
    expect(seen).toEqual([...made].reverse());
    await expect(p.listIntents({ from: new Date(Date.now() + 60_000), to: new Date(Date.now() + 120_000) })).resolves.toEqual({ intents: [] });
  });
});

describe('persistence', () => {
  it('intents, keys and the ledger survive a restart; a torn last line is skipped; reset empties them', async () => {
    const dir = newTmpDir();
    const ledgerFile = path.join(dir, 'nested', 'ledger.jsonl');
    const s1 = await startProviderSimulator({ ledgerFile, timeoutMs: SIM_HANG_MS });
    extraSims.push(s1);
    const p1 = providerFor(s1.url);
    const paid = await newIntent(p1);
    await confirm(paid, 'tok_success', 1, p1);
    const declined = await newIntent(p1);
    await providerError(confirm(declined, 'tok_decline', 1, p1));
    await s1.stop();
    expect(readFileSync(ledgerFile, 'utf8').trim().split('\n')).toHaveLength(2);

    appendFileSync(path.join(dir, 'nested', 'ledger.state.jsonl'), '{"at":1,"intent":{"seq":');
    const s2 = await startProviderSimulator({ ledgerFile, timeoutMs: SIM_HANG_MS });
    extraSims.push(s2);
    const p2 = providerFor(s2.url);
    expect(s2.ledger().map((e) => [e.intentId, e.status])).toEqual([
      [paid.id, 'succeeded'],
      [declined.id, 'declined'],
    ]);
    await expect(p2.retrieveIntent(paid.id)).resolves.toMatchObject({ status: 'succeeded' });
    await expect(newIntent(p2, paid.paymentId)).resolves.toMatchObject({ id: paid.id });
    await expect(confirm(paid, 'tok_success', 1, p2)).resolves.toMatchObject({ status: 'succeeded' });
    await expect(providerError(confirm(paid, 'tok_success', 2, p2))).resolves.toMatchObject({ code: 'payment_intent_unexpected_state' });
    await expect(confirm(declined, 'tok_success', 2, p2)).resolves.toMatchObject({ status: 'succeeded' });
    expect(readFileSync(ledgerFile, 'utf8').trim().split('\n')).toHaveLength(3);

    expect((await fetch(`${s2.url}/v1/reset`, { method: 'POST' })).status).toBe(200);
    expect(s2.ledger()).toEqual([]);
    await expect(providerError(p2.retrieveIntent(paid.id))).resolves.toMatchObject({ code: 'resource_missing' });
    expect(readFileSync(ledgerFile, 'utf8')).toBe('');
    await s2.stop();
  });

  /** Starts the CLI in a child process and resolves with its URL once it listens. */
  function startCli(ledgerFile: string): Promise<{ child: ChildProcess; url: string }> {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'packages/provider-simulator/src/provider-simulator.ts', '--port', '0', '--ledger', ledgerFile, '--timeout-ms', '30000'],
      { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(child);
    return new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`simulator CLI did not start: ${out}`)), 20_000);
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

  it('CLI: a capture whose answer was lost survives kill -9; the restarted CLI stops cleanly on SIGTERM', async () => {
    const ledgerFile = path.join(newTmpDir(), 'ledger.jsonl');
    const first = await startCli(ledgerFile);
    const p1 = providerFor(first.url);
    const intent = await newIntent(p1);
    await expect(providerError(confirm(intent, 'tok_timeout', 1, p1))).resolves.toMatchObject({ kind: 'unknown' });
    process.kill(first.child.pid!, 'SIGKILL');
    expect(await exited(first.child)).toMatchObject({ signal: 'SIGKILL' });

    const second = await startCli(ledgerFile);
    const p2 = providerFor(second.url);
    await expect(p2.retrieveIntent(intent.id)).resolves.toMatchObject({ status: 'succeeded' });
    await expect(p2.findIntentsForPayment(intent.paymentId)).resolves.toEqual([expect.objectContaining({ id: intent.id })]);
    await expect(providerError(confirm(intent, 'tok_success', 2, p2))).resolves.toMatchObject({ code: 'payment_intent_unexpected_state' });
    const lines = readFileSync(ledgerFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as LedgerEntry);
    expect(lines).toEqual([expect.objectContaining({ intentId: intent.id, status: 'succeeded' })]);
    process.kill(second.child.pid!, 'SIGTERM');
    expect(await exited(second.child)).toEqual({ code: 0, signal: null });
  }, 60_000);
});

describe('as hard as Stripe (issue 17)', () => {
  const post = (path: string, body: string, key?: string) =>
    fetch(`${sim.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/x-www-form-urlencoded', ...(key ? { 'idempotency-key': key } : {}) },
      body,
    });

  it('createErrorRate: a 500 saved under the key and replayed as such; the intent exists when the create acted first; past the retention the key runs again', async () => {
    sim.setFaults({ createErrorRate: 1, savedErrorCommitRate: 1 });
    const made = newPaymentId();
    const first = await providerError(newIntent(provider, made));
    expect(first).toMatchObject({ kind: 'unknown', code: 'HTTP_500' });
    expect(first.extra.replayed).toBeUndefined();
    sim.setFaults({ idempotencyTtlMs: 1500 });
    await expect(providerError(newIntent(provider, made))).resolves.toMatchObject({ kind: 'unknown', extra: { replayed: true } });
    await expect(provider.findIntentsForPayment(made)).resolves.toHaveLength(1);
    // The key is forgotten after its retention: the same create makes a second intent.
    await new Promise((r) => setTimeout(r, 1600));
    await expect(newIntent(provider, made)).resolves.toMatchObject({ paymentId: made });
    await expect(provider.findIntentsForPayment(made)).resolves.toHaveLength(2);

    sim.setFaults({ createErrorRate: 1, savedErrorCommitRate: 0 });
    const none = newPaymentId();
    await providerError(newIntent(provider, none));
    await expect(provider.findIntentsForPayment(none)).resolves.toEqual([]);
  });

  it('cancelErrorRate: a 500 saved under that call\'s key; the cancel may have acted first', async () => {
    const intent = await newIntent();
    sim.setFaults({ cancelErrorRate: 1, savedErrorCommitRate: 1 });
    await expect(providerError(provider.cancelIntent(intent.id, intent.paymentId))).resolves.toMatchObject({ kind: 'unknown', code: 'HTTP_500' });
    sim.setFaults({});
    await expect(provider.retrieveIntent(intent.id)).resolves.toMatchObject({ status: 'canceled' });
  });

  it('refunds can be pending, then succeed, or fail and give the amount back to the charge; refundErrorRate saves a 500 after acting or not', async () => {
    const intent = await newIntent(provider, newPaymentId(), 5000);
    await confirm(intent, 'tok_success');
    const refund = (amountMinor: number) => ({ refundId: `rf_${randomUUID()}`, keyGeneration: 0, intentId: intent.id, paymentId: intent.paymentId, amountMinor, currency: 'EUR', reason: 't' });
    sim.setFaults({ refundPendingMs: 200 });
    const ok = await provider.refund(refund(1000));
    expect(ok.status).toBe('pending');
    await expect(provider.retrieveIntent(intent.id)).resolves.toMatchObject({ amountRefunded: 1000 });
    expect(sim.netCaptured(intent.paymentId)).toBe(5000);
    await eventually(() => provider.retrieveRefund(ok.id), (r) => r.status === 'succeeded');
    expect(sim.netCaptured(intent.paymentId)).toBe(4000);

    sim.setFaults({ refundPendingMs: 200, refundFailureRate: 1 });
    const bad = await provider.refund(refund(2000));
    await eventually(() => provider.retrieveRefund(bad.id), (r) => r.status === 'failed');
    await expect(provider.retrieveRefund(bad.id)).resolves.toMatchObject({ failureReason: 'expired_or_canceled_card' });
    await expect(provider.retrieveIntent(intent.id)).resolves.toMatchObject({ amountRefunded: 1000 });
    expect(sim.netCaptured(intent.paymentId)).toBe(4000);

    sim.setFaults({ refundErrorRate: 1, savedErrorCommitRate: 1 });
    const req = refund(500);
    await expect(providerError(provider.refund(req))).resolves.toMatchObject({ kind: 'unknown' });
    await expect(providerError(provider.refund(req))).resolves.toMatchObject({ kind: 'unknown', extra: { replayed: true } });
    sim.setFaults({});
    const listed = await provider.listRefunds(intent.id);
    expect(listed.filter((r) => r.refundId === req.refundId)).toHaveLength(1);
  });

  it.each(['pm_card_authenticationRequired', 'tok_3ds_required'])('%s leaves the intent in requires_action on every server-side confirm; it can be cancelled', async (pm) => {
    const intent = await newIntent();
    await expect(confirm(intent, pm, 1)).resolves.toMatchObject({ status: 'requires_action' });
    await expect(confirm(intent, pm, 2)).resolves.toMatchObject({ status: 'requires_action' });
    await expect(provider.cancelIntent(intent.id, intent.paymentId)).resolves.toMatchObject({ status: 'canceled' });
    expect(sim.ledger(intent.paymentId)).toEqual([]);
  });

  it('tok_processing_<ms> sits in processing (no cancel meanwhile), then succeeds on its own; tok_processing_fail_<ms> then fails', async () => {
    const ok = await newIntent();
    await expect(confirm(ok, 'tok_processing_300')).resolves.toMatchObject({ status: 'processing' });
    await expect(providerError(provider.cancelIntent(ok.id, ok.paymentId))).resolves.toMatchObject({ code: 'payment_intent_unexpected_state', extra: { intent: { status: 'processing' } } });
    await eventually(() => provider.retrieveIntent(ok.id), (i) => i.status === 'succeeded');
    expect(captures(ok.paymentId)).toHaveLength(1);

    const bad = await newIntent();
    await confirm(bad, 'tok_processing_fail_200');
    await eventually(() => provider.retrieveIntent(bad.id), (i) => i.status === 'requires_payment_method' && i.lastError !== undefined);
    expect(captures(bad.paymentId)).toHaveLength(0);
  });

  it("Stripe's amount rules and metadata limits, answered with Stripe's error objects", async () => {
    const create = (body: string) => post('/v1/payment_intents', body).then(async (r) => ({ status: r.status, body: (await r.json()) as { error?: { code?: string; param?: string } } }));
    expect(await create('amount=150&currency=isk')).toMatchObject({ status: 400, body: { error: { code: 'invalid_charge_amount', param: 'amount' } } });
    expect(await create('amount=15000&currency=isk')).toMatchObject({ status: 200 });
    expect(await create('amount=1005&currency=kwd')).toMatchObject({ status: 400, body: { error: { code: 'invalid_charge_amount' } } });
    expect(await create('amount=49&currency=usd')).toMatchObject({ status: 400, body: { error: { code: 'amount_too_small' } } });
    expect(await create('amount=100000000&currency=usd')).toMatchObject({ status: 400, body: { error: { code: 'amount_too_large' } } });
    expect(await create('amount=100000000&currency=idr')).toMatchObject({ status: 200 });
    expect(await create('amount=1000&currency=iqd')).toMatchObject({ status: 400, body: { error: { param: 'currency' } } });
    const keys = (n: number) => Array.from({ length: n }, (_, i) => `metadata[k${i}]=v`).join('&');
    expect(await create(`amount=500&currency=usd&${keys(50)}`)).toMatchObject({ status: 200 });
    expect(await create(`amount=500&currency=usd&${keys(51)}`)).toMatchObject({ status: 400, body: { error: { param: 'metadata' } } });
    expect(await create(`amount=500&currency=usd&metadata[${'k'.repeat(41)}]=v`)).toMatchObject({ status: 400 });
    expect(await create(`amount=500&currency=usd&metadata[k]=${'v'.repeat(501)}`)).toMatchObject({ status: 400 });
  });

  it('other integrations on the account: an intent without our metadata is stored, listed (charge expanded) and captured like any other', async () => {
    const s = await startProviderSimulator({ port: 0, timeoutMs: SIM_HANG_MS });
    extraSims.push(s);
    const p = providerFor(s.url);
    const from = new Date(Date.now() - 1000);
    const res = await fetch(`${s.url}/v1/payment_intents`, { method: 'POST', headers: { authorization: `Bearer ${API_KEY}` }, body: new URLSearchParams({ amount: '2500', currency: 'usd' }) });
    const foreign = (await res.json()) as { id: string };
    await p.confirmIntent(foreign.id, { paymentId: 'checkout', attempt: 1, paymentMethod: 'tok_success' });
    const ours = await newIntent(p);
    const page = await p.listIntents({ from, to: new Date(Date.now() + 2000) });
    expect(page.intents.map((i) => [i.id, i.paymentId, i.amountReceived, i.amountRefunded])).toEqual([
      [ours.id, ours.paymentId, 0, undefined],
      [foreign.id, '', 2500, 0],
    ]);
    expect(s.ledger()).toEqual([expect.objectContaining({ intentId: foreign.id, paymentId: '', status: 'succeeded' })]);
  });
});
