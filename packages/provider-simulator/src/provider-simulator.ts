/**
 * Stripe-compatible payment provider simulator: the part of Stripe's REST API that the Stripe adapter
 * (functions/adapters/provider/stripe-provider.ts) uses, served by node:http on 127.0.0.1 only, with the
 * failures a real provider produces. Used by the local stack, the soak and tests. What it models, its test
 * payment methods, its faults and what it does not model: packages/provider-simulator/README.md.
 *
 * By concern:
 *   intents.ts            payment intents: confirm outcomes by payment method, 3-D Secure, processing, locks
 *   refunds.ts            refunds: pending, succeeded, failed; listed per intent
 *   idempotency-store.ts  saved answers (5xx included) replayed per key for the key's retention
 *   currency-rules.ts     Stripe's amount representation, minimums and metadata limits
 *   faults.ts             the fault settings and their seeded RNG
 *   state.ts              persistence (state file) and the ledger
 *   http-server.ts        routes, auth, delivery of held or reset answers
 *
 * Ledger: one entry per money movement: status succeeded (capture), declined (refused confirm), refunded
 * (a refund that succeeded). Net captured per payment = sum(succeeded) - sum(refunded).
 *
 * CLI: npx tsx packages/provider-simulator/src/provider-simulator.ts --port 4010 --ledger .local-data/ledger.jsonl
 *        [--state file] [--timeout-ms 15000] [--faults '{"errorRate":0.1}'] [--error-rate 0] [--timeout-rate 0]
 *        [--latency-ms 0] [--seed N]
 *      prints "provider simulator listening on <url>" and stops cleanly on SIGINT/SIGTERM.
 */
import { realpathSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DAY_MS, Faults, NO_FAULTS, type ActiveFaults, type FaultConfig } from './faults';
import { createSimulatorServer } from './http-server';
import { IdempotencyStore } from './idempotency-store';
import { IntentBook } from './intents';
import { RefundBook } from './refunds';
import type { Runtime } from './runtime';
import { StateLog } from './state';
import { netCaptured, type LedgerEntry } from './stripe-objects';
import { WebhookSender, type WebhookEndpoint, type WebhookStats } from './webhooks';

export { mulberry32, type ActiveFaults, type FaultConfig } from './faults';
export { parseForm } from './form';
export { netCaptured, type LedgerEntry } from './stripe-objects';
export { signatureHeader, type WebhookEndpoint, type WebhookStats } from './webhooks';

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
  /** How long idempotency keys are remembered unless the faults say otherwise. Default 24 h, as Stripe. */
  readonly idempotencyTtlMs?: number;
  /** Where webhook events go, signed with its secret (or later: setWebhookEndpoint). None: no events. */
  readonly webhook?: WebhookEndpoint;
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
  /** Sends webhook events there from now on (undefined: stop sending). */
  setWebhookEndpoint(endpoint: WebhookEndpoint | undefined): void;
  /** Counts of webhook events made, delivered, failed, dropped and duplicated. */
  webhookStats(): WebhookStats;
  /** Resolves when no webhook delivery is under way (events still waiting out their delay are not counted). */
  webhooksSettled(): Promise<void>;
}

const HOST = '127.0.0.1';
const DEFAULT_TIMEOUT_MS = 15_000;

export async function startProviderSimulator(opts: ProviderSimulatorOptions = {}): Promise<ProviderSimulator> {
  if (opts.host !== undefined && opts.host !== HOST) throw new Error(`provider simulator binds ${HOST} only`);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs < 0) throw new RangeError('timeoutMs must be >= 0');

  const faults = new Faults({ ...NO_FAULTS, idempotencyTtlMs: opts.idempotencyTtlMs ?? DAY_MS }, opts.faults?.seed ?? opts.seed);
  if (opts.faults) faults.set(opts.faults);
  const timers = new Set<NodeJS.Timeout>();
  let stopped = false;
  const later = (ms: number, fn: () => void): void => {
    if (stopped) return;
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };
  const state = new StateLog(opts);
  const rt: Runtime = {
    faults,
    state,
    timeoutMs,
    sleep: (ms) => (ms <= 0 ? Promise.resolve() : new Promise((resolve) => later(ms, resolve))),
    later,
    stopped: () => stopped,
  };
  // Every intent and refund change goes through the state log: the webhook sender turns it into events.
  const webhooks = new WebhookSender(rt, opts.webhook, opts.faults?.seed ?? opts.seed);
  const append = state.append.bind(state);
  state.append = (ev) => {
    append(ev);
    webhooks.observe(ev);
  };
  const intents = new IntentBook(rt);
  const refunds = new RefundBook(rt, intents);
  const keys = new IdempotencyStore(
    () => faults.now.idempotencyTtlMs,
    (key, saved) => state.append({ at: saved.at, key: { key, ...saved } }),
  );
  state.load((ev) => {
    webhooks.remember(ev);
    if (ev.intent) intents.restore(ev.at, ev.intent);
    if (ev.refund) refunds.restore(ev.refund);
    if (ev.key) {
      const { key, ...saved } = ev.key;
      keys.restore(key, saved);
    }
  });
  intents.resumeProcessing();
  refunds.resumePending();

  const reset = (): void => {
    intents.clear();
    refunds.clear();
    keys.clear();
    state.reset();
  };
  const server = createSimulatorServer({ rt, intents, refunds, keys, ledger: () => state.entries, reset, hold: later });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, HOST, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const entries = (paymentId?: string) => (paymentId === undefined ? [...state.entries] : state.entries.filter((e) => e.paymentId === paymentId));

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
    ledger: entries,
    netCaptured: (paymentId) => netCaptured(entries(paymentId)),
    setFaults: (f) => faults.set(f),
    faults: () => ({ ...faults.now }),
    reset,
    setWebhookEndpoint: (endpoint) => webhooks.setEndpoint(endpoint),
    webhookStats: () => ({ ...webhooks.stats }),
    webhooksSettled: () => webhooks.settled(),
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
