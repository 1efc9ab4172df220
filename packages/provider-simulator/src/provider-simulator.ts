/**
 * Payment provider simulator: a small HTTP service (node:http only, 127.0.0.1 only) that behaves like a
 * card provider with idempotency keys. Used by the local stack and by tests.
 *
 * Outcome by token:
 *
 *   token                    | HTTP | body error code       | recorded in ledger
 *   -------------------------+------+-----------------------+----------------------------------------------
 *   tok_success / any other  | 200  | -                     | succeeded (subject to fault injection)
 *   tok_decline              | 402  | CARD_DECLINED         | declined
 *   tok_insufficient_funds   | 402  | INSUFFICIENT_FUNDS    | declined
 *   tok_invalid              | 400  | INVALID_TOKEN         | declined
 *   tok_transient_<N>        | 503  | PROVIDER_UNAVAILABLE  | nothing for the first N distinct keys of a
 *                            |      |                       | paymentId; from key N+1 on behaves as success
 *   tok_fail_always          | 503  | PROVIDER_UNAVAILABLE  | nothing
 *   tok_timeout              | 200  | -                     | succeeded BEFORE hanging for timeoutMs
 *                            |      |                       | ("charged but the response was lost")
 *   tok_slow_<ms>            | 200  | -                     | succeeded after <ms> (then fault injection)
 *   tok_rate_limited         | 429  | RATE_LIMITED          | nothing; Retry-After: 1
 *
 * Fault injection (only for charges that would otherwise succeed, one RNG draw per charge):
 *   draw < errorRate                  → 503 PROVIDER_UNAVAILABLE, nothing charged
 *   draw < errorRate + timeoutRate    → charge recorded, then the response hangs for timeoutMs
 *   latencyMs                         → added before every POST /v1/charges is handled
 * The RNG is seedable (`seed` option, or `seed` in setFaults / POST /v1/faults) for deterministic tests.
 *
 * Idempotency: a charge is keyed by idempotencyKey. A repeated key (also concurrently in flight) gets the
 * first recorded result and never charges again; the same key with a different paymentId, amount,
 * currency or token gets 409 IDEMPOTENCY_MISMATCH. 503/429 answers are not recorded, so the key may be
 * retried. tok_transient_<N> attempt counters live in memory only and restart from zero after a restart.
 *
 * HTTP API:
 *   POST /v1/charges                {idempotencyKey, paymentId, amountMinor, currency, token, metadata?}
 *   GET  /v1/charges/:key           200 charge record | 404 {error:{code:'NOT_FOUND'}}
 *   GET  /v1/ledger[?paymentId=]    200 {entries: LedgerEntry[]}
 *   GET  /v1/faults                 200 {faults}
 *   POST /v1/faults                 {errorRate?, timeoutRate?, latencyMs?, seed?} (replaces; missing = 0)
 *   POST /v1/reset                  clears ledger, idempotency records and attempt counters (and the file)
 *   GET  /health                    200 {status:'ok'}
 *
 * Charge record (200 body, and `charge` inside 4xx decline bodies):
 *   {idempotencyKey, paymentId, chargeId, status:'succeeded'|'declined', amountMinor, currency, at, code?, message?}
 *
 * With `ledgerFile`, every ledger entry is appended as one JSON line (appendFileSync) and the file is
 * loaded at start, so charges survive kill -9 and a restart.
 *
 * CLI: npx tsx lib/local/provider-simulator.ts --port 4010 --ledger .local-data/ledger.jsonl
 *        [--timeout-ms 15000] [--error-rate 0] [--timeout-rate 0] [--latency-ms 0] [--seed N]
 *      prints "provider simulator listening on <url>" and stops cleanly on SIGINT/SIGTERM.
 */
import { createHash, randomUUID } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

export interface LedgerEntry {
  readonly idempotencyKey: string;
  readonly paymentId: string;
  readonly amountMinor: number;
  readonly currency: string;
  readonly chargeId: string;
  /** Only 'succeeded' entries moved money. */
  readonly status: 'succeeded' | 'declined';
  /** ISO-8601 time the charge was recorded. */
  readonly at: string;
  /** Decline code and message, for status 'declined'. */
  readonly code?: string;
  readonly message?: string;
  /** sha256 of paymentId, amount, currency and token: detects key reuse with a different request. */
  readonly fingerprint: string;
}

export interface FaultConfig {
  /** Probability [0,1] that an otherwise successful charge gets 503 without charging. */
  readonly errorRate?: number;
  /** Probability [0,1] that an otherwise successful charge is recorded and then hangs for timeoutMs. */
  readonly timeoutRate?: number;
  /** Delay added to every charge request. */
  readonly latencyMs?: number;
  /** Reseeds the fault RNG when given. */
  readonly seed?: number;
}

export type ActiveFaults = Required<Omit<FaultConfig, 'seed'>>;

export interface ProviderSimulatorOptions {
  /** 0 (default) picks a free port. */
  readonly port?: number;
  /** Only loopback is allowed. */
  readonly host?: '127.0.0.1';
  /** JSON-lines ledger file; loaded at start and appended to. */
  readonly ledgerFile?: string;
  readonly faults?: FaultConfig;
  /** How long a 'timeout' response hangs. Default 15000. */
  readonly timeoutMs?: number;
  /** Seed of the fault RNG; random when omitted. */
  readonly seed?: number;
}

export interface ProviderSimulator {
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
  /** A copy of the ledger, optionally for one payment. */
  ledger(paymentId?: string): LedgerEntry[];
  /** Replaces the fault configuration (missing fields become 0). */
  setFaults(f: FaultConfig): void;
  faults(): ActiveFaults;
  /** Clears ledger, idempotency records, attempt counters and the ledger file. */
  reset(): void;
}

const HOST = '127.0.0.1';
const MAX_BODY_BYTES = 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 15_000;

interface ValidCharge {
  readonly idempotencyKey: string;
  readonly paymentId: string;
  readonly amountMinor: number;
  readonly currency: string;
  readonly token: string;
}

interface Reply {
  readonly status: number;
  readonly body: unknown;
  readonly headers?: Record<string, string>;
  /** Hold the response this long before writing it (models a lost/late response). */
  readonly hangMs?: number;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export async function startProviderSimulator(opts: ProviderSimulatorOptions = {}): Promise<ProviderSimulator> {
  if (opts.host !== undefined && opts.host !== HOST) throw new Error(`provider simulator binds ${HOST} only`);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs < 0) throw new RangeError('timeoutMs must be >= 0');

  let rng = mulberry32(opts.seed ?? Math.floor(Math.random() * 2 ** 32));
  let faults: ActiveFaults = { errorRate: 0, timeoutRate: 0, latencyMs: 0 };
  const setFaults = (f: FaultConfig): void => {
    const next = validateFaults(f);
    faults = next;
    if (f.seed !== undefined) rng = mulberry32(f.seed);
  };
  if (opts.faults) setFaults(opts.faults);
  if (opts.faults?.seed === undefined && opts.seed !== undefined) rng = mulberry32(opts.seed);

  const entries: LedgerEntry[] = [];
  const records = new Map<string, LedgerEntry>();
  const inflight = new Map<string, { fingerprint: string; reply: Promise<Reply> }>();
  /** paymentId → distinct idempotency keys in first-seen order (for tok_transient_<N>). */
  const transientAttempts = new Map<string, string[]>();
  const timers = new Set<NodeJS.Timeout>();
  let stopped = false;

  const ledgerFile = opts.ledgerFile ? path.resolve(opts.ledgerFile) : undefined;
  if (ledgerFile) loadLedger(ledgerFile, entries, records);

  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
    });

  const record = (entry: LedgerEntry): LedgerEntry => {
    entries.push(entry);
    records.set(entry.idempotencyKey, entry);
    if (ledgerFile) appendFileSync(ledgerFile, `${JSON.stringify(entry)}\n`);
    return entry;
  };

  const newEntry = (c: ValidCharge, fingerprint: string, decline?: { code: string; message: string }): LedgerEntry => ({
    idempotencyKey: c.idempotencyKey,
    paymentId: c.paymentId,
    amountMinor: c.amountMinor,
    currency: c.currency,
    chargeId: `ch_${randomUUID().replaceAll('-', '')}`,
    status: decline ? 'declined' : 'succeeded',
    at: new Date().toISOString(),
    ...(decline ?? {}),
    fingerprint,
  });

  const unavailable = (message: string): Reply => ({
    status: 503,
    body: { error: { code: 'PROVIDER_UNAVAILABLE', message } },
  });

  /** Decides and records the outcome of a charge whose key has no record and nothing in flight. */
  async function decide(c: ValidCharge, fingerprint: string): Promise<Reply> {
    const t = c.token;
    const decline = (code: string, message: string): Reply => replyFor(record(newEntry(c, fingerprint, { code, message })));

    if (t === 'tok_decline') return decline('CARD_DECLINED', 'The card was declined');
    if (t === 'tok_insufficient_funds') return decline('INSUFFICIENT_FUNDS', 'The card has insufficient funds');
    if (t === 'tok_invalid') return decline('INVALID_TOKEN', 'The card token is not valid');
    if (t === 'tok_fail_always') return unavailable('Provider unavailable (tok_fail_always)');
    if (t === 'tok_rate_limited') {
      return { status: 429, headers: { 'retry-after': '1' }, body: { error: { code: 'RATE_LIMITED', message: 'Too many requests' } } };
    }
    if (t === 'tok_timeout') return { ...replyFor(record(newEntry(c, fingerprint))), hangMs: timeoutMs };

    const transient = /^tok_transient_(\d+)$/.exec(t);
    if (transient) {
      const failFirst = Number(transient[1]);
      let keys = transientAttempts.get(c.paymentId);
      if (!keys) transientAttempts.set(c.paymentId, (keys = []));
      let attempt = keys.indexOf(c.idempotencyKey);
      if (attempt < 0) attempt = keys.push(c.idempotencyKey) - 1;
      if (attempt < failFirst) return unavailable(`Provider unavailable (attempt ${attempt + 1} of ${failFirst} failing)`);
    }
    const slow = /^tok_slow_(\d+)$/.exec(t);
    if (slow) await sleep(Number(slow[1]));

    // An otherwise successful charge: apply fault injection.
    const { errorRate, timeoutRate } = faults;
    const draw = errorRate > 0 || timeoutRate > 0 ? rng() : 1;
    if (draw < errorRate) return unavailable('Provider unavailable (injected fault)');
    const reply = replyFor(record(newEntry(c, fingerprint)));
    return draw < errorRate + timeoutRate ? { ...reply, hangMs: timeoutMs } : reply;
  }

  async function charge(raw: unknown): Promise<Reply> {
    const c = validateCharge(raw);
    if (faults.latencyMs > 0) await sleep(faults.latencyMs);
    const fingerprint = fingerprintOf(c);
    const mismatch = (): Reply => ({
      status: 409,
      body: { error: { code: 'IDEMPOTENCY_MISMATCH', message: 'Idempotency key was already used with different parameters' } },
    });

    const recorded = records.get(c.idempotencyKey);
    if (recorded) {
      if (recorded.fingerprint !== fingerprint) return mismatch();
      const r = replyFor(recorded);
      return { ...r, headers: { ...r.headers, 'idempotent-replayed': 'true' } };
    }
    const pending = inflight.get(c.idempotencyKey);
    if (pending) {
      if (pending.fingerprint !== fingerprint) return mismatch();
      return pending.reply;
    }
    const reply = decide(c, fingerprint).finally(() => inflight.delete(c.idempotencyKey));
    inflight.set(c.idempotencyKey, { fingerprint, reply });
    return reply;
  }

  function reset(): void {
    entries.length = 0;
    records.clear();
    transientAttempts.clear();
    if (ledgerFile) writeFileSync(ledgerFile, '');
  }

  async function route(req: IncomingMessage): Promise<Reply> {
    const url = new URL(req.url ?? '/', `http://${HOST}`);
    const method = req.method ?? 'GET';
    const p = url.pathname.replace(/\/+$/, '') || '/';

    if (p === '/health' && method === 'GET') return { status: 200, body: { status: 'ok' } };
    if (p === '/v1/charges' && method === 'POST') return charge(await readJson(req));
    if (p.startsWith('/v1/charges/') && method === 'GET') {
      const key = decodeURIComponent(p.slice('/v1/charges/'.length));
      const rec = records.get(key);
      return rec
        ? { status: 200, body: chargeView(rec) }
        : { status: 404, body: { error: { code: 'NOT_FOUND', message: 'No charge recorded for this idempotency key' } } };
    }
    if (p === '/v1/ledger' && method === 'GET') {
      const paymentId = url.searchParams.get('paymentId');
      return { status: 200, body: { entries: paymentId === null ? entries : entries.filter((e) => e.paymentId === paymentId) } };
    }
    if (p === '/v1/faults' && method === 'GET') return { status: 200, body: { faults } };
    if (p === '/v1/faults' && method === 'POST') {
      const body = await readJson(req);
      try {
        setFaults((body ?? {}) as FaultConfig);
      } catch (err) {
        throw new HttpError(400, 'VALIDATION_ERROR', (err as Error).message);
      }
      return { status: 200, body: { faults } };
    }
    if (p === '/v1/reset' && method === 'POST') {
      reset();
      return { status: 200, body: { ok: true } };
    }
    return { status: 404, body: { error: { code: 'NOT_FOUND', message: `${method} ${url.pathname} is not a route` } } };
  }

  const send = (res: ServerResponse, reply: Reply): void => {
    const write = (): void => {
      if (res.destroyed || res.writableEnded) return;
      const payload = JSON.stringify(reply.body);
      res.writeHead(reply.status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(payload),
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
        const e = err instanceof HttpError ? err : new HttpError(500, 'INTERNAL', err instanceof Error ? err.message : String(err));
        send(res, { status: e.status, body: { error: { code: e.code, message: e.message } } });
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
    setFaults,
    faults: () => ({ ...faults }),
    reset,
  };
}

/** The public view of a recorded charge, as returned by the API. */
function chargeView(e: LedgerEntry): Record<string, unknown> {
  const { fingerprint: _omit, ...view } = e;
  return view;
}

function replyFor(e: LedgerEntry): Reply {
  if (e.status === 'succeeded') return { status: 200, body: chargeView(e) };
  return {
    status: e.code === 'INVALID_TOKEN' ? 400 : 402,
    body: { error: { code: e.code ?? 'CARD_DECLINED', message: e.message ?? 'declined' }, charge: chargeView(e) },
  };
}

function fingerprintOf(c: ValidCharge): string {
  return createHash('sha256')
    .update(JSON.stringify([c.paymentId, c.amountMinor, c.currency, c.token]))
    .digest('hex');
}

function validateCharge(raw: unknown): ValidCharge {
  const fail = (msg: string): never => {
    throw new HttpError(400, 'VALIDATION_ERROR', msg);
  };
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return fail('body must be a JSON object');
  const b = raw as Record<string, unknown>;
  const str = (k: string, max = 255): string => {
    const v = b[k];
    if (typeof v !== 'string' || v === '' || v.length > max) return fail(`${k} must be a non-empty string of at most ${max} characters`);
    return v;
  };
  const c: ValidCharge = {
    idempotencyKey: str('idempotencyKey'),
    paymentId: str('paymentId'),
    amountMinor: Number.isSafeInteger(b.amountMinor) && (b.amountMinor as number) > 0 ? (b.amountMinor as number) : fail('amountMinor must be a positive integer'),
    currency: typeof b.currency === 'string' && /^[A-Z]{3}$/.test(b.currency) ? b.currency : fail('currency must be a 3-letter upper-case code'),
    token: str('token'),
  };
  if (b.metadata !== undefined) {
    const m = b.metadata;
    if (m === null || typeof m !== 'object' || Array.isArray(m) || Object.values(m).some((v) => typeof v !== 'string')) {
      fail('metadata must be an object of strings');
    }
  }
  return c;
}

function validateFaults(f: FaultConfig): ActiveFaults {
  const rate = (v: unknown, name: string): number => {
    if (v === undefined) return 0;
    if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw new RangeError(`${name} must be a number in [0, 1]`);
    return v;
  };
  const errorRate = rate(f.errorRate, 'errorRate');
  const timeoutRate = rate(f.timeoutRate, 'timeoutRate');
  if (errorRate + timeoutRate > 1) throw new RangeError('errorRate + timeoutRate must be at most 1');
  const latencyMs = f.latencyMs ?? 0;
  if (typeof latencyMs !== 'number' || !Number.isFinite(latencyMs) || latencyMs < 0) throw new RangeError('latencyMs must be >= 0');
  if (f.seed !== undefined && !Number.isInteger(f.seed)) throw new RangeError('seed must be an integer');
  return { errorRate, timeoutRate, latencyMs };
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, 'PAYLOAD_TOO_LARGE', 'request body is too large');
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(400, 'INVALID_JSON', 'request body is not valid JSON');
  }
}

/** Loads a JSON-lines ledger; a torn last line (process killed mid-write) is skipped and terminated. */
function loadLedger(file: string, entries: LedgerEntry[], records: Map<string, LedgerEntry>): void {
  mkdirSync(path.dirname(file), { recursive: true });
  if (!existsSync(file)) return;
  const text = readFileSync(file, 'utf8');
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let e: LedgerEntry;
    try {
      e = JSON.parse(line) as LedgerEntry;
    } catch {
      continue;
    }
    if (typeof e?.idempotencyKey !== 'string' || records.has(e.idempotencyKey)) continue;
    entries.push(e);
    records.set(e.idempotencyKey, e);
  }
  if (text !== '' && !text.endsWith('\n')) appendFileSync(file, '\n');
}

/** Small, fast, seedable PRNG returning floats in [0, 1). */
function mulberry32(seed: number): () => number {
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
      'timeout-ms': { type: 'string' },
      'error-rate': { type: 'string' },
      'timeout-rate': { type: 'string' },
      'latency-ms': { type: 'string' },
      seed: { type: 'string' },
    },
    strict: true,
  });
  const num = (v: string | undefined): number | undefined => (v === undefined ? undefined : Number(v));
  const sim = await startProviderSimulator({
    port: num(values.port),
    ledgerFile: values.ledger,
    timeoutMs: num(values['timeout-ms']),
    seed: num(values.seed),
    faults: { errorRate: num(values['error-rate']), timeoutRate: num(values['timeout-rate']), latencyMs: num(values['latency-ms']) },
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
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));
}

if (isMain()) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
