/**
 * Stripe-compatible payment provider simulator: the subset of Stripe's REST API that the Stripe adapter
 * (functions/adapters/provider/stripe-provider.ts) uses, served by node:http on 127.0.0.1 only, with faults
 * that a real provider produces. Used by the local stack and by tests.
 *
 * Model (the facts the product relies on):
 *   - A payment intent succeeds AT MOST ONCE; a canceled intent never succeeds. Confirm is allowed from
 *     requires_payment_method / requires_confirmation / requires_action; confirm on succeeded, canceled or
 *     processing is 400 payment_intent_unexpected_state (with the intent). Cancel is allowed from every
 *     status but succeeded and canceled (400 payment_intent_unexpected_state otherwise).
 *   - A declined confirm is 402 card_error/card_declined (decline_code on the error), and leaves the intent
 *     in requires_payment_method with last_payment_error; it can be confirmed again.
 *   - Idempotency-Key (POST only): the first response is saved with a fingerprint of method, path and
 *     parameters, and replayed for the same key and parameters (header Idempotent-Replayed: true), including
 *     saved 402/400/500 answers. Same key with other parameters: 400 idempotency_error. Same key while the
 *     first request is in flight: 409 idempotency_error/idempotency_key_in_use. Nothing is saved for answers
 *     given before the endpoint runs (401, 404 of the path's intent, parameter errors, 409, 429), so those may
 *     be retried. Keys are forgotten after `idempotencyTtlMs` (24 h, as Stripe), so a create after that makes
 *     a second intent: the reason the port can find an intent by its payment id.
 *   - Confirm and cancel take a per-intent lock for as long as they run (latency, slow tokens, late commits);
 *     another confirm/cancel of that intent meanwhile gets 429 invalid_request_error/lock_timeout.
 *   - Requests need `Authorization: Bearer sk_test_...`; otherwise 401.
 *
 * Confirm outcome by payment_method (tokens kept from the old simulator, plus Stripe's test methods):
 *
 *   payment_method                                   | answer                          | effect
 *   -------------------------------------------------+---------------------------------+----------------------------
 *   tok_success, pm_card_visa, tok_crash_after_charge| 200 succeeded intent            | captured (subject to faults)
 *     and any other value                            |                                 |
 *   tok_decline, pm_card_chargeDeclined              | 402 card_declined/generic_decline | declined entry, intent back
 *   tok_insufficient_funds,                          | 402 card_declined/              |   to requires_payment_method
 *     pm_card_chargeDeclinedInsufficientFunds        |   insufficient_funds            |   with last_payment_error
 *   tok_invalid                                      | 400 resource_missing, param     | nothing (Stripe's answer to a
 *                                                    |   payment_method                |   payment method that does not exist)
 *   tok_transient_<N>                                | 500 api_error for the first N   | nothing, then captured
 *                                                    |   confirms of the intent        |
 *   tok_fail_always                                  | 500 api_error                   | nothing
 *   tok_rate_limited                                 | 429 rate_limit, Retry-After: 1  | nothing, not saved
 *   tok_timeout                                      | captured, then the response     | captured
 *                                                    |   hangs for timeoutMs           |
 *   tok_slow_<ms>                                    | 200 after <ms> (lock held)      | captured
 *
 * Faults (POST /v1/faults replaces the set; GET shows every value). One RNG draw per confirm that would
 * capture, compared against the rates in this order (their sum must be <= 1):
 *   errorRate             500 api_error, nothing captured (the 500 is saved under the key, as Stripe does)
 *   timeoutRate           the response hangs for timeoutMs; a second draw < timeoutCommitRate (default 0.5)
 *                         decides whether it captured (a real timeout does not tell you)
 *   commitThenErrorRate   captured, then 500 api_error (saved: a replay of the key says 500 too)
 *   lateCommitRate        holds the key and the intent's lock for lateCommitMs, then captures and answers
 *                         (the client has given up long before)
 *   resetAfterCommitRate  captured, then the socket is destroyed. Also drawn for replays of a confirm key, so
 *                         the SDK's one automatic reconnect retry can be reset too.
 *   latencyMs             added to every POST while it holds its key and lock
 *   lookupLagMs           GET retrieve/search/list show each intent as it was lookupLagMs ago (an intent
 *                         younger than that is not found yet)
 *   lookupErrorRate       GET retrieve/search/list answer 500 api_error (own draw)
 *   authFailure           every Stripe route answers 401 (expired key), to exercise the outage path
 *   seed                  reseeds the RNG (deterministic tests)
 * Tokens with a fixed outcome (decline, invalid, transient, fail_always, rate_limited, timeout) are not
 * subject to the draw.
 *
 * Ledger: one entry per money movement: status succeeded (capture), declined (refused confirm), refunded
 * (refund). Net captured per payment = sum(succeeded) - sum(refunded).
 *
 * Persistence: with `ledgerFile`, every change is appended as one JSON line to `stateFile` (default: the
 * ledger file name with `.state.jsonl`): intent snapshots, saved idempotent responses and ledger entries.
 * At start it is replayed (a torn last line from kill -9 is skipped) and the ledger file, which holds one
 * ledger entry per line, is rewritten from it, then appended to. tok_transient_<N> counters are part of the
 * intent and survive too. In-flight requests and locks do not survive (the process that held them is gone).
 * A capture and the response saved under its key are two lines written in the same tick; a kill between
 * them loses only the saved response, so a retry of that key meets the succeeded intent (400
 * payment_intent_unexpected_state), never a second capture.
 *
 * HTTP API (Stripe shapes, form-encoded bodies with bracket notation, JSON answers):
 *   POST /v1/payment_intents                 amount, currency, metadata[...], confirm=false
 *   GET  /v1/payment_intents/:id             expand[]=latest_charge gives the charge (amount_refunded)
 *   POST /v1/payment_intents/:id/confirm     payment_method
 *   POST /v1/payment_intents/:id/cancel      cancellation_reason?
 *   GET  /v1/payment_intents/search          query=metadata['payment_id']:'<id>', limit
 *   GET  /v1/payment_intents                 created[gte|gt|lt|lte], limit (1..100, default 10), starting_after;
 *                                            newest first, as Stripe
 *   POST /v1/refunds                         payment_intent, amount?, metadata[...]
 * The simulator's own (JSON, no auth):
 *   GET  /v1/ledger[?paymentId=]             {entries}
 *   GET  /v1/faults, POST /v1/faults         {faults}; unknown fault or bad value → 400
 *   POST /v1/reset                           forgets everything (and empties the files)
 *   GET  /health                             {status:'ok'}
 *
 * CLI: npx tsx packages/provider-simulator/src/provider-simulator.ts --port 4010 --ledger .local-data/ledger.jsonl
 *        [--state file] [--timeout-ms 15000] [--faults '{"errorRate":0.1}'] [--error-rate 0] [--timeout-rate 0]
 *        [--latency-ms 0] [--seed N]
 *      prints "provider simulator listening on <url>" and stops cleanly on SIGINT/SIGTERM.
 */
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

export interface LedgerEntry {
  /** Our payment id, from the intent's metadata.payment_id ('' when the intent has none). */
  readonly paymentId: string;
  /** succeeded: money captured; refunded: money returned; declined: a refused confirm (no money). */
  readonly status: 'succeeded' | 'declined' | 'refunded';
  readonly amountMinor: number;
  /** Upper case. */
  readonly currency: string;
  readonly intentId: string;
  readonly chargeId?: string;
  readonly refundId?: string;
  /** The Idempotency-Key of the request that moved the money, when it had one. */
  readonly idempotencyKey?: string;
  /** Decline code and message, for status 'declined'. */
  readonly code?: string;
  readonly declineCode?: string;
  readonly message?: string;
  /** ISO-8601. */
  readonly at: string;
}

export interface FaultConfig {
  readonly errorRate?: number;
  readonly timeoutRate?: number;
  /** Probability that a timed-out confirm captured. Default 0.5. */
  readonly timeoutCommitRate?: number;
  readonly commitThenErrorRate?: number;
  readonly lateCommitRate?: number;
  /** How long a late commit waits. Default 3000. */
  readonly lateCommitMs?: number;
  readonly resetAfterCommitRate?: number;
  readonly latencyMs?: number;
  readonly lookupLagMs?: number;
  readonly lookupErrorRate?: number;
  readonly authFailure?: boolean;
  /** Reseeds the fault RNG when given. */
  readonly seed?: number;
}

export type ActiveFaults = Required<Omit<FaultConfig, 'seed'>>;

const NO_FAULTS: ActiveFaults = {
  errorRate: 0,
  timeoutRate: 0,
  timeoutCommitRate: 0.5,
  commitThenErrorRate: 0,
  lateCommitRate: 0,
  lateCommitMs: 3000,
  resetAfterCommitRate: 0,
  latencyMs: 0,
  lookupLagMs: 0,
  lookupErrorRate: 0,
  authFailure: false,
};

export interface ProviderSimulatorOptions {
  /** 0 (default) picks a free port. */
  readonly port?: number;
  /** Only loopback is allowed. */
  readonly host?: '127.0.0.1';
  /** JSON-lines ledger (one entry per line); enables persistence. */
  readonly ledgerFile?: string;
  /** JSON-lines event log replayed at start. Default: next to the ledger file. */
  readonly stateFile?: string;
  readonly faults?: FaultConfig;
  /** How long a timed-out response hangs. Default 15000. */
  readonly timeoutMs?: number;
  /** Seed of the fault RNG; random when omitted. */
  readonly seed?: number;
  /** How long idempotency keys are remembered. Default 24 h. */
  readonly idempotencyTtlMs?: number;
}

export interface ProviderSimulator {
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
  /** A copy of the ledger, optionally for one payment. */
  ledger(paymentId?: string): LedgerEntry[];
  /** Net captured minor units of a payment: succeeded minus refunded. */
  netCaptured(paymentId: string): number;
  /** Replaces the fault configuration (missing fields take their defaults). Throws RangeError when invalid. */
  setFaults(f: FaultConfig): void;
  faults(): ActiveFaults;
  /** Forgets intents, keys, refunds and the ledger, and empties the files. */
  reset(): void;
}

// ---- Stripe-shaped objects -------------------------------------------------------------------------------

type IntentStatus = 'requires_payment_method' | 'requires_confirmation' | 'requires_action' | 'processing' | 'requires_capture' | 'canceled' | 'succeeded';

interface LastPaymentError {
  type: 'card_error' | 'invalid_request_error';
  code: string;
  decline_code?: string;
  message: string;
}

interface IntentJson {
  id: string;
  object: 'payment_intent';
  amount: number;
  amount_capturable: number;
  amount_received: number;
  currency: string;
  status: IntentStatus;
  metadata: Record<string, string>;
  created: number;
  latest_charge: string | null;
  last_payment_error: LastPaymentError | null;
  payment_method: string | null;
  canceled_at: number | null;
  cancellation_reason: string | null;
  capture_method: 'automatic';
  confirmation_method: 'automatic';
  client_secret: string;
  livemode: false;
}

interface IntentRecord {
  /** Insertion order: ties on `created` are listed newest first by it. */
  seq: number;
  intent: IntentJson;
  /** Confirms that failed on tok_transient_<N> so far. */
  transientFailures: number;
  refunded: number;
  /** Every state the intent had, with the time it began (ms): lookups with lag read from it. */
  history: Array<{ at: number; intent: IntentJson; refunded: number }>;
}

interface RefundJson {
  id: string;
  object: 'refund';
  amount: number;
  currency: string;
  payment_intent: string;
  charge: string | null;
  status: 'succeeded';
  metadata: Record<string, string>;
  created: number;
}

interface SavedResponse {
  fingerprint: string;
  status: number;
  body: unknown;
  at: number;
  /** A confirm's key: its replays draw resetAfterCommit too. */
  confirm?: boolean;
}

/** One line of the state file. */
interface StateEvent {
  at: number;
  intent?: { seq: number; intent: IntentJson; transientFailures: number; refunded: number };
  key?: { key: string } & SavedResponse;
  ledger?: LedgerEntry;
}

interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  /** Hold the response this long before writing it. */
  hangMs?: number;
  /** Destroy the socket instead of answering. */
  reset?: boolean;
  /** Save under the request's idempotency key (the endpoint ran). */
  save?: boolean;
}

interface StripeErrorBody {
  type: 'invalid_request_error' | 'card_error' | 'api_error' | 'idempotency_error';
  message: string;
  code?: string;
  decline_code?: string;
  param?: string;
  payment_intent?: IntentJson;
}

const stripeError = (status: number, e: StripeErrorBody, extra: Partial<Reply> = {}): Reply => ({ status, body: { error: e }, ...extra });

const HOST = '127.0.0.1';
const MAX_BODY_BYTES = 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 15_000;
const DAY_MS = 24 * 3600 * 1000;
const CONFIRMABLE: ReadonlySet<IntentStatus> = new Set(['requires_payment_method', 'requires_confirmation', 'requires_action']);
const CANCELABLE: ReadonlySet<IntentStatus> = new Set([
  'requires_payment_method',
  'requires_confirmation',
  'requires_action',
  'processing',
  'requires_capture',
]);

export async function startProviderSimulator(opts: ProviderSimulatorOptions = {}): Promise<ProviderSimulator> {
  if (opts.host !== undefined && opts.host !== HOST) throw new Error(`provider simulator binds ${HOST} only`);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs < 0) throw new RangeError('timeoutMs must be >= 0');
  const keyTtlMs = opts.idempotencyTtlMs ?? DAY_MS;

  let rng = mulberry32(opts.seed ?? Math.floor(Math.random() * 2 ** 32));
  let faults: ActiveFaults = { ...NO_FAULTS };
  const setFaults = (f: FaultConfig): void => {
    faults = validateFaults(f);
    if (f.seed !== undefined) rng = mulberry32(f.seed);
  };
  if (opts.faults) setFaults(opts.faults);
  if (opts.faults?.seed === undefined && opts.seed !== undefined) rng = mulberry32(opts.seed);

  const intents = new Map<string, IntentRecord>();
  const keys = new Map<string, SavedResponse>();
  const inflight = new Map<string, string>();
  const locks = new Set<string>();
  const entries: LedgerEntry[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let seq = 0;
  let stopped = false;

  const ledgerFile = opts.ledgerFile ? path.resolve(opts.ledgerFile) : undefined;
  const stateFile = opts.stateFile
    ? path.resolve(opts.stateFile)
    : ledgerFile
      ? ledgerFile.replace(/(\.jsonl)?$/, '.state.jsonl')
      : undefined;

  // ---- persistence ---------------------------------------------------------------------------------------

  const persist = (ev: StateEvent): void => {
    if (stateFile) appendFileSync(stateFile, `${JSON.stringify(ev)}\n`);
    if (ev.ledger && ledgerFile) appendFileSync(ledgerFile, `${JSON.stringify(ev.ledger)}\n`);
  };

  function load(): void {
    if (!stateFile) return;
    mkdirSync(path.dirname(stateFile), { recursive: true });
    if (ledgerFile) mkdirSync(path.dirname(ledgerFile), { recursive: true });
    if (existsSync(stateFile)) {
      const text = readFileSync(stateFile, 'utf8');
      for (const line of text.split('\n')) {
        if (line.trim() === '') continue;
        let ev: StateEvent;
        try {
          ev = JSON.parse(line) as StateEvent;
        } catch {
          continue; // torn by a kill -9 mid-write
        }
        if (ev.intent) {
          const { seq: s, intent, transientFailures, refunded } = ev.intent;
          const rec = intents.get(intent.id);
          if (rec) {
            Object.assign(rec, { intent, transientFailures, refunded });
            rec.history.push({ at: ev.at, intent, refunded });
          } else {
            intents.set(intent.id, { seq: s, intent, transientFailures, refunded, history: [{ at: ev.at, intent, refunded }] });
          }
          seq = Math.max(seq, s);
        }
        if (ev.key) {
          const { key, ...saved } = ev.key;
          keys.set(key, saved);
        }
        if (ev.ledger) entries.push(ev.ledger);
      }
      if (text !== '' && !text.endsWith('\n')) appendFileSync(stateFile, '\n');
    }
    // The ledger file is a view of the state file: rewrite it so both agree after any crash.
    if (ledgerFile) writeFileSync(ledgerFile, entries.map((e) => `${JSON.stringify(e)}\n`).join(''));
  }
  load();

  // ---- helpers -------------------------------------------------------------------------------------------

  const sleep = (ms: number): Promise<void> =>
    ms <= 0
      ? Promise.resolve()
      : new Promise((resolve) => {
          const t = setTimeout(() => {
            timers.delete(t);
            resolve();
          }, ms);
          timers.add(t);
        });

  /** Stores a new state of an intent (and the ledger entry it produced) in memory and on disk, as one event. */
  function commit(rec: IntentRecord, intent: IntentJson, ledger?: LedgerEntry): void {
    const at = Date.now();
    rec.intent = intent;
    rec.history.push({ at, intent, refunded: rec.refunded });
    if (ledger) entries.push(ledger);
    persist({ at, intent: { seq: rec.seq, intent, transientFailures: rec.transientFailures, refunded: rec.refunded }, ...(ledger ? { ledger } : {}) });
  }

  const ledgerEntry = (intent: IntentJson, e: Omit<LedgerEntry, 'paymentId' | 'currency' | 'intentId' | 'at'>): LedgerEntry => ({
    paymentId: intent.metadata.payment_id ?? '',
    currency: intent.currency.toUpperCase(),
    intentId: intent.id,
    at: new Date().toISOString(),
    ...e,
  });

  /** The intent as a lookup sees it now: its state lookupLagMs ago. */
  function visible(rec: IntentRecord): { intent: IntentJson; refunded: number } | undefined {
    if (faults.lookupLagMs <= 0) return { intent: rec.intent, refunded: rec.refunded };
    const horizon = Date.now() - faults.lookupLagMs;
    let seen: { intent: IntentJson; refunded: number } | undefined;
    for (const h of rec.history) {
      if (h.at > horizon) break;
      seen = h;
    }
    return seen;
  }

  const noSuchIntent = (id: string, param = 'intent'): Reply =>
    stripeError(404, { type: 'invalid_request_error', code: 'resource_missing', param, message: `No such payment_intent: '${id}'` });

  const unexpectedState = (intent: IntentJson, action: 'confirm' | 'cancel'): Reply =>
    stripeError(
      400,
      {
        type: 'invalid_request_error',
        code: 'payment_intent_unexpected_state',
        message: `You cannot ${action} this PaymentIntent because it has a status of ${intent.status}.`,
        payment_intent: intent,
      },
      { save: true },
    );

  const apiError = (message: string, extra: Partial<Reply> = {}): Reply =>
    stripeError(500, { type: 'api_error', message }, { save: true, ...extra });

  const paramError = (param: string, message: string): Reply =>
    stripeError(400, { type: 'invalid_request_error', code: 'parameter_invalid', param, message });

  // ---- endpoints -----------------------------------------------------------------------------------------

  function createIntent(p: Params): Reply {
    const amount = intParam(p.amount);
    if (amount === undefined || amount < 1) return paramError('amount', 'amount must be a positive integer');
    const currency = typeof p.currency === 'string' ? p.currency.toLowerCase() : '';
    if (!/^[a-z]{3}$/.test(currency)) return paramError('currency', 'currency must be a three-letter ISO code');
    const metadata = stringMap(p.metadata);
    if (!metadata) return paramError('metadata', 'metadata must be a map of strings');
    if (p.confirm !== undefined && p.confirm !== 'false') return paramError('confirm', 'the simulator supports confirm=false only');
    const id = `pi_${randomId(24)}`;
    const intent: IntentJson = {
      id,
      object: 'payment_intent',
      amount,
      amount_capturable: 0,
      amount_received: 0,
      currency,
      status: 'requires_payment_method',
      metadata,
      created: Math.floor(Date.now() / 1000),
      latest_charge: null,
      last_payment_error: null,
      payment_method: null,
      canceled_at: null,
      cancellation_reason: null,
      capture_method: 'automatic',
      confirmation_method: 'automatic',
      client_secret: `${id}_secret_${randomId(24)}`,
      livemode: false,
    };
    const rec: IntentRecord = { seq: ++seq, intent, transientFailures: 0, refunded: 0, history: [] };
    intents.set(id, rec);
    commit(rec, intent);
    return { status: 200, body: intent, save: true };
  }

  async function confirmIntent(rec: IntentRecord, p: Params, key: string | undefined): Promise<Reply> {
    const pm = p.payment_method;
    if (typeof pm !== 'string' || pm === '') {
      return stripeError(400, { type: 'invalid_request_error', code: 'parameter_missing', param: 'payment_method', message: 'Missing required param: payment_method.' });
    }
    if (!CONFIRMABLE.has(rec.intent.status)) return unexpectedState(rec.intent, 'confirm');

    const capture = (): IntentJson => {
      const chargeId = `ch_${randomId(24)}`;
      const next: IntentJson = { ...rec.intent, status: 'succeeded', amount_received: rec.intent.amount, latest_charge: chargeId, last_payment_error: null, payment_method: pm };
      commit(rec, next, ledgerEntry(next, { status: 'succeeded', amountMinor: next.amount, chargeId, ...(key ? { idempotencyKey: key } : {}) }));
      return next;
    };
    const decline = (declineCode: string, message: string): Reply => {
      const lpe: LastPaymentError = { type: 'card_error', code: 'card_declined', decline_code: declineCode, message };
      const next: IntentJson = { ...rec.intent, status: 'requires_payment_method', last_payment_error: lpe, payment_method: null };
      const chargeId = `ch_${randomId(24)}`;
      commit(rec, { ...next, latest_charge: chargeId }, ledgerEntry(next, { status: 'declined', amountMinor: next.amount, chargeId, code: 'card_declined', declineCode, message, ...(key ? { idempotencyKey: key } : {}) }));
      return stripeError(402, { type: 'card_error', code: 'card_declined', decline_code: declineCode, message, payment_intent: rec.intent }, { save: true });
    };

    if (pm === 'tok_decline' || pm === 'pm_card_chargeDeclined') return decline('generic_decline', 'Your card was declined.');
    if (pm === 'tok_insufficient_funds' || pm === 'pm_card_chargeDeclinedInsufficientFunds') {
      return decline('insufficient_funds', 'Your card has insufficient funds.');
    }
    if (pm === 'tok_invalid') {
      return stripeError(
        400,
        { type: 'invalid_request_error', code: 'resource_missing', param: 'payment_method', message: `No such PaymentMethod: '${pm}'`, payment_intent: rec.intent },
        { save: true },
      );
    }
    if (pm === 'tok_fail_always') return apiError('An unknown error occurred (tok_fail_always).');
    if (pm === 'tok_rate_limited') {
      return stripeError(429, { type: 'invalid_request_error', code: 'rate_limit', message: 'Too many requests hit the API too quickly.' }, { headers: { 'retry-after': '1' } });
    }
    if (pm === 'tok_timeout') {
      capture();
      return { status: 200, body: rec.intent, save: true, hangMs: timeoutMs };
    }
    const transient = /^tok_transient_(\d+)$/.exec(pm);
    if (transient && rec.transientFailures < Number(transient[1])) {
      rec.transientFailures++;
      commit(rec, rec.intent);
      return apiError(`An unknown error occurred (tok_transient, failure ${rec.transientFailures} of ${transient[1]}).`);
    }
    const slow = /^tok_slow_(\d+)$/.exec(pm);
    if (slow) await sleep(Number(slow[1]));

    // A confirm that would capture: one draw decides the fault.
    const f = faults;
    const anyFault = f.errorRate + f.timeoutRate + f.commitThenErrorRate + f.lateCommitRate + f.resetAfterCommitRate > 0;
    let d = anyFault ? rng() : 1;
    if ((d -= f.errorRate) < 0) return apiError('An unknown error occurred (injected).');
    if ((d -= f.timeoutRate) < 0) {
      if (rng() < f.timeoutCommitRate) {
        capture();
        return { status: 200, body: rec.intent, save: true, hangMs: timeoutMs };
      }
      return { status: 500, body: { error: { type: 'api_error', message: 'timed out (injected)' } }, hangMs: timeoutMs };
    }
    if ((d -= f.commitThenErrorRate) < 0) {
      capture();
      return apiError('An unknown error occurred after the payment was processed (injected).');
    }
    if ((d -= f.lateCommitRate) < 0) {
      await sleep(f.lateCommitMs);
      if (stopped) return apiError('stopped');
      if (!CONFIRMABLE.has(rec.intent.status)) return unexpectedState(rec.intent, 'confirm');
      return { status: 200, body: capture(), save: true };
    }
    if ((d -= f.resetAfterCommitRate) < 0) {
      return { status: 200, body: capture(), save: true, reset: true };
    }
    return { status: 200, body: capture(), save: true };
  }

  function cancelIntent(rec: IntentRecord, p: Params): Reply {
    if (!CANCELABLE.has(rec.intent.status)) return unexpectedState(rec.intent, 'cancel');
    const reason = typeof p.cancellation_reason === 'string' ? p.cancellation_reason : null;
    const next: IntentJson = { ...rec.intent, status: 'canceled', canceled_at: Math.floor(Date.now() / 1000), cancellation_reason: reason };
    commit(rec, next);
    return { status: 200, body: next, save: true };
  }

  function createRefund(p: Params, key: string | undefined): Reply {
    const id = p.payment_intent;
    if (typeof id !== 'string' || id === '') {
      return stripeError(400, { type: 'invalid_request_error', code: 'parameter_missing', param: 'payment_intent', message: 'Missing required param: payment_intent.' });
    }
    const rec = intents.get(id);
    if (!rec) return noSuchIntent(id, 'payment_intent');
    const metadata = stringMap(p.metadata);
    if (!metadata) return paramError('metadata', 'metadata must be a map of strings');
    const intent = rec.intent;
    if (intent.status !== 'succeeded') {
      return stripeError(
        400,
        { type: 'invalid_request_error', code: 'payment_intent_unexpected_state', message: `This PaymentIntent (${id}) does not have a successful charge to refund.` },
        { save: true },
      );
    }
    const remaining = intent.amount_received - rec.refunded;
    if (remaining <= 0) {
      return stripeError(400, { type: 'invalid_request_error', code: 'charge_already_refunded', message: `Charge ${intent.latest_charge} has already been refunded.` }, { save: true });
    }
    const amount = p.amount === undefined ? remaining : intParam(p.amount);
    if (amount === undefined || amount < 1) return paramError('amount', 'amount must be a positive integer');
    if (amount > remaining) {
      return stripeError(
        400,
        { type: 'invalid_request_error', code: 'amount_too_large', param: 'amount', message: `Refund amount (${amount}) is greater than unrefunded amount on charge (${remaining}).` },
        { save: true },
      );
    }
    const refund: RefundJson = {
      id: `re_${randomId(24)}`,
      object: 'refund',
      amount,
      currency: intent.currency,
      payment_intent: id,
      charge: intent.latest_charge,
      status: 'succeeded',
      metadata,
      created: Math.floor(Date.now() / 1000),
    };
    rec.refunded += amount;
    commit(rec, intent, ledgerEntry(intent, { status: 'refunded', amountMinor: amount, refundId: refund.id, ...(intent.latest_charge ? { chargeId: intent.latest_charge } : {}), ...(key ? { idempotencyKey: key } : {}) }));
    return { status: 200, body: refund, save: true };
  }

  /** The intent JSON a lookup returns, with latest_charge expanded when asked. */
  function render(v: { intent: IntentJson; refunded: number }, expand: string[]): IntentJson | Record<string, unknown> {
    if (!expand.includes('latest_charge') || !v.intent.latest_charge) return v.intent;
    const i = v.intent;
    const succeeded = i.status === 'succeeded';
    return {
      ...i,
      latest_charge: {
        id: i.latest_charge,
        object: 'charge',
        amount: i.amount,
        amount_captured: succeeded ? i.amount : 0,
        amount_refunded: v.refunded,
        refunded: succeeded && v.refunded >= i.amount,
        currency: i.currency,
        payment_intent: i.id,
        status: succeeded ? 'succeeded' : 'failed',
        created: i.created,
      },
    };
  }

  function lookupFault(): Reply | undefined {
    if (faults.lookupErrorRate > 0 && rng() < faults.lookupErrorRate) return apiError('An unknown error occurred (injected lookup fault).', { save: false });
    return undefined;
  }

  function retrieve(id: string, q: Params): Reply {
    const rec = intents.get(id);
    const v = rec && visible(rec);
    if (!v) return noSuchIntent(id);
    return { status: 200, body: render(v, listParam(q.expand)) };
  }

  function search(q: Params): Reply {
    const query = typeof q.query === 'string' ? q.query : '';
    const m = /^\s*metadata\[\s*(['"])([^'"]+)\1\s*\]\s*:\s*(['"])((?:\\.|(?!\3).)*)\3\s*$/.exec(query);
    if (!m) {
      return stripeError(400, { type: 'invalid_request_error', code: 'parameter_invalid', param: 'query', message: "The simulator supports queries of the form metadata['key']:'value' only." });
    }
    const field = m[2]!;
    const value = m[4]!.replace(/\\(.)/g, '$1');
    const limit = intParam(q.limit) ?? 10;
    const found: IntentJson[] = [];
    for (const rec of [...intents.values()].sort(newestFirst)) {
      const v = visible(rec);
      if (v && v.intent.metadata[field] === value) found.push(v.intent);
    }
    return {
      status: 200,
      body: { object: 'search_result', url: '/v1/payment_intents/search', data: found.slice(0, limit), has_more: found.length > limit, next_page: null },
    };
  }

  function list(q: Params): Reply {
    const created = (q.created ?? {}) as Params;
    if (typeof created !== 'object') return paramError('created', 'created must be a range');
    const bound = (k: string): number | undefined => intParam(created[k]);
    const gte = bound('gte');
    const gt = bound('gt');
    const lt = bound('lt');
    const lte = bound('lte');
    const limit = q.limit === undefined ? 10 : intParam(q.limit);
    if (limit === undefined || limit < 1 || limit > 100) return paramError('limit', 'limit must be an integer between 1 and 100');
    const all: Array<{ rec: IntentRecord; intent: IntentJson }> = [];
    for (const rec of [...intents.values()].sort(newestFirst)) {
      const v = visible(rec);
      if (!v) continue;
      const c = v.intent.created;
      if ((gte !== undefined && c < gte) || (gt !== undefined && c <= gt) || (lt !== undefined && c >= lt) || (lte !== undefined && c > lte)) continue;
      all.push({ rec, intent: v.intent });
    }
    let start = 0;
    if (typeof q.starting_after === 'string') {
      const cursor = intents.get(q.starting_after);
      if (!cursor) return noSuchIntent(q.starting_after, 'starting_after');
      // Everything listed after the cursor: older, or as old and inserted before it.
      start = all.findIndex((x) => newestFirst(cursor, x.rec) < 0);
      if (start < 0) start = all.length;
    }
    const page = all.slice(start, start + limit);
    return { status: 200, body: { object: 'list', url: '/v1/payment_intents', data: page.map((x) => x.intent), has_more: start + limit < all.length } };
  }

  // ---- idempotency, locks, routing -----------------------------------------------------------------------

  /** Runs a POST under Stripe's idempotency rules. */
  async function idempotent(req: IncomingMessage, route: string, p: Params, run: (key: string | undefined) => Promise<Reply>, opts: { confirm?: boolean } = {}): Promise<Reply> {
    const header = req.headers['idempotency-key'];
    const key = typeof header === 'string' && header !== '' ? header : undefined;
    if (!key) return run(undefined);
    const fingerprint = createHash('sha256').update(JSON.stringify([route, canonical(p)])).digest('hex');
    const saved = keys.get(key);
    if (saved && Date.now() - saved.at < keyTtlMs) {
      if (saved.fingerprint !== fingerprint) return keyReused(key);
      const replay: Reply = { status: saved.status, body: saved.body, headers: { 'idempotent-replayed': 'true' } };
      if (saved.confirm && faults.resetAfterCommitRate > 0 && rng() < faults.resetAfterCommitRate) replay.reset = true;
      return replay;
    }
    const running = inflight.get(key);
    if (running !== undefined) {
      if (running !== fingerprint) return keyReused(key);
      return stripeError(409, {
        type: 'idempotency_error',
        code: 'idempotency_key_in_use',
        message: `There is currently another in-progress request using this idempotency key ('${key}'). Try again later.`,
      });
    }
    inflight.set(key, fingerprint);
    try {
      const reply = await run(key);
      if (reply.save && !stopped) {
        const rec: SavedResponse = { fingerprint, status: reply.status, body: reply.body, at: Date.now(), ...(opts.confirm ? { confirm: true } : {}) };
        keys.set(key, rec);
        persist({ at: rec.at, key: { key, ...rec } });
      }
      return reply;
    } finally {
      inflight.delete(key);
    }
  }

  const keyReused = (key: string): Reply =>
    stripeError(400, {
      type: 'idempotency_error',
      message: `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.`,
    });

  /** Runs a confirm/cancel holding the intent's lock; a second one meanwhile gets lock_timeout. */
  async function locked(id: string, run: () => Promise<Reply>): Promise<Reply> {
    if (locks.has(id)) {
      return stripeError(429, {
        type: 'invalid_request_error',
        code: 'lock_timeout',
        message: 'This object cannot be accessed right now because another API request or Stripe process is currently accessing it.',
      });
    }
    locks.add(id);
    try {
      return await run();
    } finally {
      locks.delete(id);
    }
  }

  function authorized(req: IncomingMessage): Reply | undefined {
    if (faults.authFailure) {
      return stripeError(401, { type: 'invalid_request_error', code: 'api_key_expired', message: 'Expired API Key provided (injected authFailure).' });
    }
    const auth = req.headers.authorization ?? '';
    const m = /^Bearer (\S+)$/.exec(auth);
    if (!m) return stripeError(401, { type: 'invalid_request_error', message: 'You did not provide an API key.' });
    if (!m[1]!.startsWith('sk_test_')) return stripeError(401, { type: 'invalid_request_error', message: 'Invalid API Key provided.' });
    return undefined;
  }

  async function stripeRoute(req: IncomingMessage, method: string, p: string, url: URL): Promise<Reply> {
    const denied = authorized(req);
    if (denied) return denied;
    const query = parseForm(url.search.slice(1));

    if (method === 'GET') {
      if (p === '/v1/payment_intents/search') return lookupFault() ?? search(query);
      if (p === '/v1/payment_intents') return lookupFault() ?? list(query);
      const m = /^\/v1\/payment_intents\/([^/]+)$/.exec(p);
      if (m) return lookupFault() ?? retrieve(decodeURIComponent(m[1]!), query);
    }
    if (method === 'POST') {
      const body = parseForm(await readBody(req));
      const withLatency = async <T>(fn: () => T | Promise<T>): Promise<T> => {
        await sleep(faults.latencyMs);
        return fn();
      };
      if (p === '/v1/payment_intents') return idempotent(req, p, body, () => withLatency(() => createIntent(body)));
      if (p === '/v1/refunds') return idempotent(req, p, body, (key) => withLatency(() => createRefund(body, key)));
      const m = /^\/v1\/payment_intents\/([^/]+)\/(confirm|cancel)$/.exec(p);
      if (m) {
        const id = decodeURIComponent(m[1]!);
        const action = m[2]!;
        const rec = intents.get(id);
        if (!rec) return noSuchIntent(id);
        return idempotent(
          req,
          p,
          body,
          (key) => locked(id, () => withLatency(() => (action === 'confirm' ? confirmIntent(rec, body, key) : cancelIntent(rec, body)))),
          { confirm: action === 'confirm' },
        );
      }
    }
    return stripeError(404, { type: 'invalid_request_error', message: `Unrecognized request URL (${method}: ${p}).` });
  }

  function reset(): void {
    intents.clear();
    keys.clear();
    entries.length = 0;
    seq = 0;
    if (stateFile) writeFileSync(stateFile, '');
    if (ledgerFile) writeFileSync(ledgerFile, '');
  }

  async function route(req: IncomingMessage): Promise<Reply> {
    const url = new URL(req.url ?? '/', `http://${HOST}`);
    const method = req.method ?? 'GET';
    const p = url.pathname.replace(/\/+$/, '') || '/';

    if (p === '/health' && method === 'GET') return { status: 200, body: { status: 'ok' } };
    if (p === '/v1/ledger' && method === 'GET') {
      const paymentId = url.searchParams.get('paymentId');
      return { status: 200, body: { entries: paymentId === null ? entries : entries.filter((e) => e.paymentId === paymentId) } };
    }
    if (p === '/v1/faults' && method === 'GET') return { status: 200, body: { faults } };
    if (p === '/v1/faults' && method === 'POST') {
      let body: unknown;
      try {
        const text = await readBody(req);
        body = text.trim() === '' ? {} : JSON.parse(text);
        setFaults(body as FaultConfig);
      } catch (err) {
        return stripeError(400, { type: 'invalid_request_error', code: 'parameter_invalid', message: err instanceof Error ? err.message : String(err) });
      }
      return { status: 200, body: { faults } };
    }
    if (p === '/v1/reset' && method === 'POST') {
      reset();
      return { status: 200, body: { ok: true } };
    }
    return stripeRoute(req, method, p, url);
  }

  const send = (res: ServerResponse, reply: Reply): void => {
    const write = (): void => {
      if (res.destroyed || res.writableEnded) return;
      if (reply.reset) {
        res.socket?.destroy();
        return;
      }
      const payload = JSON.stringify(reply.body);
      res.writeHead(reply.status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(payload),
        'request-id': `req_${randomId(14)}`,
        ...reply.headers,
      });
      res.end(payload);
    };
    if (!reply.hangMs) return write();
    const t = setTimeout(() => {
      timers.delete(t);
      write();
    }, reply.hangMs);
    timers.add(t);
  };

  const server = createServer((req, res) => {
    route(req).then(
      (reply) => send(res, reply),
      (err: unknown) => {
        const status = err instanceof BodyError ? err.status : 500;
        send(res, stripeError(status, { type: status === 500 ? 'api_error' : 'invalid_request_error', message: err instanceof Error ? err.message : String(err) }));
      },
    );
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, HOST, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://${HOST}:${port}`,
    port,
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
    ledger: (paymentId) => (paymentId === undefined ? [...entries] : entries.filter((e) => e.paymentId === paymentId)),
    netCaptured: (paymentId) => netCaptured(entries.filter((e) => e.paymentId === paymentId)),
    setFaults,
    faults: () => ({ ...faults }),
    reset,
  };
}

/** Captured minus refunded, in minor units, over ledger entries. */
export function netCaptured(entries: readonly LedgerEntry[]): number {
  let net = 0;
  for (const e of entries) {
    if (e.status === 'succeeded') net += e.amountMinor;
    else if (e.status === 'refunded') net -= e.amountMinor;
  }
  return net;
}

/** Newest first: by `created` descending, then insertion descending (Stripe's list order). */
function newestFirst(a: IntentRecord, b: IntentRecord): number {
  return b.intent.created - a.intent.created || b.seq - a.seq;
}

// ---- request parsing -------------------------------------------------------------------------------------

type Params = { [k: string]: string | Params | Array<string | Params> | undefined };

class BodyError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new BodyError(413, 'request body is too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Parses Stripe's form encoding: `a=1&metadata[k]=v&created[gte]=5&expand[0]=x&expand[]=y` into nested
 * objects; `[]` appends to an array, numeric indices become object keys (listParam reads both).
 */
export function parseForm(text: string): Params {
  const out: Params = {};
  if (text === '') return out;
  for (const [rawKey, value] of new URLSearchParams(text)) {
    const m = /^([^[\]]+)((?:\[[^[\]]*\])*)$/.exec(rawKey);
    if (!m) continue;
    const segments = [m[1]!, ...[...m[2]!.matchAll(/\[([^[\]]*)\]/g)].map((x) => x[1]!)];
    let node: Params = out;
    for (let i = 0; i < segments.length; i++) {
      const seg = segments[i]!;
      const last = i === segments.length - 1;
      const next = segments[i + 1];
      if (last) {
        if (seg === '') continue;
        node[seg] = value;
        break;
      }
      if (next === '' && i + 1 === segments.length - 1) {
        const arr = Array.isArray(node[seg]) ? (node[seg] as string[]) : (node[seg] = []);
        (arr as string[]).push(value);
        break;
      }
      const child = node[seg];
      if (!child || typeof child !== 'object' || Array.isArray(child)) node[seg] = {};
      node = node[seg] as Params;
    }
  }
  return out;
}

function intParam(v: unknown): number | undefined {
  if (typeof v !== 'string' || !/^-?\d+$/.test(v)) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : undefined;
}

function stringMap(v: unknown): Record<string, string> | undefined {
  if (v === undefined || v === '') return {};
  if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== 'string') return undefined;
    out[k] = x;
  }
  return out;
}

function listParam(v: unknown): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
  if (v && typeof v === 'object') return Object.values(v).filter((x): x is string => typeof x === 'string');
  return [];
}

/** Parameters in a stable order, for the idempotency fingerprint. */
function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object') {
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
    );
  }
  return v;
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
function randomId(n: number): string {
  const bytes = randomBytes(n);
  let s = '';
  for (let i = 0; i < n; i++) s += ALPHABET[bytes[i]! % ALPHABET.length];
  return s;
}

function validateFaults(raw: unknown): ActiveFaults {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new RangeError('faults must be an object');
  const f = raw as Record<string, unknown>;
  const known = new Set([...Object.keys(NO_FAULTS), 'seed']);
  for (const k of Object.keys(f)) if (!known.has(k)) throw new RangeError(`unknown fault: ${k}`);
  const rate = (name: keyof ActiveFaults): number => {
    const v = f[name] ?? NO_FAULTS[name];
    if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw new RangeError(`${name} must be a number in [0, 1]`);
    return v;
  };
  const ms = (name: keyof ActiveFaults): number => {
    const v = f[name] ?? NO_FAULTS[name];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new RangeError(`${name} must be a number >= 0`);
    return v;
  };
  const out: ActiveFaults = {
    errorRate: rate('errorRate'),
    timeoutRate: rate('timeoutRate'),
    timeoutCommitRate: rate('timeoutCommitRate'),
    commitThenErrorRate: rate('commitThenErrorRate'),
    lateCommitRate: rate('lateCommitRate'),
    lateCommitMs: ms('lateCommitMs'),
    resetAfterCommitRate: rate('resetAfterCommitRate'),
    latencyMs: ms('latencyMs'),
    lookupLagMs: ms('lookupLagMs'),
    lookupErrorRate: rate('lookupErrorRate'),
    authFailure: (() => {
      const v = f.authFailure ?? false;
      if (typeof v !== 'boolean') throw new RangeError('authFailure must be a boolean');
      return v;
    })(),
  };
  const sum = out.errorRate + out.timeoutRate + out.commitThenErrorRate + out.lateCommitRate + out.resetAfterCommitRate;
  if (sum > 1 + 1e-9) throw new RangeError('errorRate + timeoutRate + commitThenErrorRate + lateCommitRate + resetAfterCommitRate must be at most 1');
  if (f.seed !== undefined && !Number.isInteger(f.seed)) throw new RangeError('seed must be an integer');
  return out;
}

/** Small, fast, seedable PRNG returning floats in [0, 1) (also used by load scripts for repeatable mixes). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---- CLI -------------------------------------------------------------------------------------------------

function isMain(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '4010' },
      ledger: { type: 'string' },
      state: { type: 'string' },
      'timeout-ms': { type: 'string' },
      faults: { type: 'string' },
      'error-rate': { type: 'string' },
      'timeout-rate': { type: 'string' },
      'latency-ms': { type: 'string' },
      seed: { type: 'string' },
    },
    strict: true,
  });
  const num = (v: string | undefined): number | undefined => (v === undefined ? undefined : Number(v));
  const fromJson = values.faults ? (JSON.parse(values.faults) as FaultConfig) : {};
  const sim = await startProviderSimulator({
    port: num(values.port),
    ledgerFile: values.ledger,
    stateFile: values.state,
    timeoutMs: num(values['timeout-ms']),
    seed: num(values.seed),
    faults: {
      ...fromJson,
      ...(values['error-rate'] !== undefined ? { errorRate: num(values['error-rate']) } : {}),
      ...(values['timeout-rate'] !== undefined ? { timeoutRate: num(values['timeout-rate']) } : {}),
      ...(values['latency-ms'] !== undefined ? { latencyMs: num(values['latency-ms']) } : {}),
    },
  });
  console.log(`provider simulator listening on ${sim.url}`);
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    sim.stop().then(
      () => {
        console.log(`provider simulator stopped (${signal})`);
        process.exit(0);
      },
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

if (isMain()) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
