/**
 * The money promise under every provider fault at once, end to end over HTTP on the local stack.
 *
 * Payments with a mix of cards (3-D Secure and processing ones included) are sent while the provider
 * simulator times out (committed or not), commits and then fails, commits late after the client gave up,
 * resets connections after committing, lags on reads, fails outright, saves 5xx answers under create,
 * cancel and refund keys (after acting or not), keeps refunds pending and fails some of them, and forgets
 * its idempotency keys after a short retention (the run crosses it many times; the functions are told
 * the same retention). Meanwhile a share of requests is replayed (sometimes concurrently), duplicate
 * queue messages are injected, workers crash right after a successful confirmation, operators retry
 * payments, recovery runs are started, and other integrations on the same provider account capture
 * money: intents with no tag (Checkout), with another stage's tag, and orphans with our tag that no
 * payment accounts for. Tenants cancel a share of their payments right after creating them (some cancels
 * asked twice with one key), and once the payments have ended they refund a share of the successful
 * ones: in full (asked again with the same key), in two parts, or in five concurrent parts of 30% each
 * with distinct keys (at most three fit). Then the run waits for every payment and every refund to end.
 *
 * The verdict comes from the simulator's ledger (money that moved), not from our own records:
 *   - payments with more than one charge captured (net of refunds): must be 0
 *   - successful payments without a net capture: must be 0
 *   - failed or expired payments with a net capture: must be 0
 *   - captures of other integrations refunded: must be 0
 *   - orphan captures of ours neither refunded nor reported as a failed refund: must be 0
 *   - payments still open after the drain window: must be 0
 *   - successful payments whose net at the provider is not the capture minus their succeeded refunds,
 *     or whose `amountRefundedMinor` says otherwise: must be 0
 *   - payments whose accepted refunds add up to more than the capture, refunds still pending: must be 0
 *   - a replayed refund or cancel answered differently from the first time: must be 0
 * and liveness: time to drain, the longest any payment stayed open, the longest stretch with work open
 * and no payment finishing.
 *
 * Used by `npm run soak` (10,000 payments) and by a smaller integration test.
 */
import { randomUUID } from 'node:crypto';
import { GetItemCommand, ScanCommand } from '@aws-sdk/client-dynamodb';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { startLocalStack } from '@idempotent-payments/local-stack';
import { mulberry32, startProviderSimulator, type FaultConfig, type LedgerEntry } from '@idempotent-payments/provider-simulator';
import { fastRecoveryEnv } from './drill-env';

/** The provider keeps idempotency keys this long in the soak (Stripe: 24 h), so the run crosses it. */
export const SOAK_KEY_RETENTION_SECONDS = 60;

/** Every fault mode on at once; late commits land up to 3x the client's 1 s timeout later. */
export const SOAK_FAULTS: FaultConfig = {
  errorRate: 0.1,
  timeoutRate: 0.05,
  commitThenErrorRate: 0.05,
  lateCommitRate: 0.05,
  lateCommitMs: 3000,
  resetAfterCommitRate: 0.02,
  lookupLagMs: 2000,
  createErrorRate: 0.05,
  cancelErrorRate: 0.1,
  refundErrorRate: 0.2,
  savedErrorCommitRate: 0.5,
  refundPendingMs: 2000,
  refundFailureRate: 0.1,
  idempotencyTtlMs: SOAK_KEY_RETENTION_SECONDS * 1000,
};

export interface SoakOptions {
  readonly payments: number;
  /** Concurrent clients. */
  readonly concurrency: number;
  readonly faults: FaultConfig;
  /** Share of creates sent again with the same key (a fifth of those twice at once). */
  readonly replayShare: number;
  /** Share of payments that get an extra copy of their queue message. */
  readonly duplicateShare: number;
  /** Share of successful confirmations after which the worker crashes before writing. */
  readonly crashShare: number;
  /** How often an operator retries some payment, and how often a recovery run is requested. */
  readonly operatorRetryEveryMs: number;
  readonly recoveryEveryMs: number;
  /** How often another integration captures money on the account (a Checkout intent, another stage's, an orphan of ours). */
  readonly foreignEveryMs?: number;
  /** The provider's key retention told to the functions (the simulator's `idempotencyTtlMs` fault must match). */
  readonly keyRetentionSeconds?: number;
  /** Share of payments cancelled by their tenant right after the create (0: none). */
  readonly cancelShare?: number;
  /** Share of successful payments refunded by their tenant once payments have ended (0: none). */
  readonly refundShare?: number;
  /** How long to wait, after the last create, for every payment to end. */
  readonly drainTimeoutMs: number;
  readonly seed?: number;
  /** Progress lines (default: none). */
  readonly progress?: (line: string) => void;
  /** Stops the run early (sending and draining end; the stack is stopped as usual). */
  readonly signal?: AbortSignal;
}

export interface SoakReport {
  readonly payments: number;
  readonly accepted: number;
  readonly rejected: number;
  readonly replays: number;
  readonly replayMismatches: number;
  readonly duplicatesInjected: number;
  readonly operatorRetries: number;
  readonly recoveryRuns: number;
  readonly byStatus: Record<string, number>;
  readonly attempts: number;
  readonly captures: number;
  readonly refunds: number;
  readonly moreThanOneCharge: number;
  readonly successWithoutCapture: number;
  readonly notPaidWithCapture: number;
  readonly notFinal: number;
  /** Captures other integrations made (no tag, another stage) and how many of them were refunded (must be 0). */
  readonly foreignCaptures: number;
  readonly foreignRefunded: number;
  /** Orphan captures with our tag: refunded, reported failed (the provider failed the refund), neither (must be 0). */
  readonly orphans: number;
  readonly orphansRefunded: number;
  readonly orphansReportedFailed: number;
  readonly orphansUnsettled: number;
  /** Refunds owed still pending at the end. */
  readonly refundsPending: number;
  /** Tenant cancels: asked, answered 200 canceled, answered 409; replays of a 200 answered otherwise (must be 0). */
  readonly cancels: { readonly asked: number; readonly canceled: number; readonly refused: number; readonly replays: number; readonly replayMismatches: number };
  /** Tenant refunds as the API answered them, and as they ended. */
  readonly tenantRefunds: {
    readonly payments: number;
    readonly asked: number;
    readonly accepted: number;
    readonly exceeding: number;
    readonly otherAnswers: number;
    readonly replays: number;
    readonly replayMismatches: number;
    readonly succeeded: number;
    readonly failed: number;
    readonly pending: number;
  };
  /** Payments whose accepted refunds add up to more than the capture (must be 0). */
  readonly overRefunded: number;
  /** Successful payments whose net at the provider is not the capture minus their succeeded refunds (must be 0). */
  readonly refundLedgerMismatch: number;
  /** Payments whose `amountRefundedMinor` is not the sum of their succeeded refunds (must be 0). */
  readonly refundedFieldMismatch: number;
  readonly sendSeconds: number;
  readonly drainSeconds: number;
  readonly longestOpenSeconds: number;
  readonly longestStallSeconds: number;
  readonly faults: FaultConfig;
  /** Up to 10 payments still open at the end, as stored, for diagnosis. */
  readonly openSample: Array<Record<string, unknown>>;
}

/** The money invariants of a report: every count must be zero. */
export const violations = (r: SoakReport) => ({
  moreThanOneCharge: r.moreThanOneCharge,
  successWithoutCapture: r.successWithoutCapture,
  notPaidWithCapture: r.notPaidWithCapture,
  foreignRefunded: r.foreignRefunded,
  orphansUnsettled: r.orphansUnsettled,
  notFinal: r.notFinal,
  replayMismatches: r.replayMismatches,
  cancelReplayMismatches: r.cancels.replayMismatches,
  refundReplayMismatches: r.tenantRefunds.replayMismatches,
  overRefunded: r.overRefunded,
  refundLedgerMismatch: r.refundLedgerMismatch,
  refundedFieldMismatch: r.refundedFieldMismatch,
  refundsPending: r.tenantRefunds.pending,
  lost: r.accepted - Object.values(r.byStatus).reduce((a, b) => a + b, 0),
});

const TOKENS: Array<[string, number]> = [
  ['tok_success', 0.46],
  ['pm_card_visa', 0.36],
  ['pm_card_authenticationRequired', 0.02],
  ['tok_processing_3000', 0.02],
  ['tok_processing_fail_2000', 0.01],
  ['tok_decline', 0.04],
  ['pm_card_chargeDeclinedInsufficientFunds', 0.02],
  ['tok_transient_2', 0.04],
  ['tok_fail_always', 0.01],
  ['tok_rate_limited', 0.01],
  ['tok_invalid', 0.01],
];

interface Sent {
  readonly id: string;
  readonly amountMinor: number;
  readonly createdAt: number;
}

interface Row {
  readonly id: string;
  readonly status: string;
  readonly attempt: number;
  readonly amountMinor: number;
  readonly amountRefundedMinor?: number;
  readonly createdAt: string;
  readonly updatedAt: string;
}

const FINAL = new Set(['success', 'failed', 'expired', 'canceled']);
/** The stage the local stack's functions run in (their tag on intents). */
const OUR_TAG = { service: 'idempotent-payments', stage: 'dev' };
/** The local stack's default operator key: re-opens and recovery runs are operator actions. */
const OPERATOR_KEY = 'local-operator-key';

export async function runSoak(o: SoakOptions): Promise<SoakReport> {
  const log = o.progress ?? (() => {});
  const rnd = mulberry32(o.seed ?? 42);
  const retention = o.keyRetentionSeconds ?? SOAK_KEY_RETENTION_SECONDS;
  const provider = await startProviderSimulator({ port: 0, timeoutMs: 4000, faults: o.faults, seed: o.seed ?? 42, idempotencyTtlMs: retention * 1000 });
  const stack = await startLocalStack({
    apiPort: 0,
    scheduleScale: 30,
    log: false,
    extraEnv: {
      ...fastRecoveryEnv(provider.url),
      POWERTOOLS_LOG_LEVEL: 'ERROR',
      FAULT_CRASH_AFTER_CHARGE: o.crashShare > 0 ? `rate:${o.crashShare}` : '',
      PROVIDER_KEY_RETENTION_SECONDS: String(retention),
    },
  });
  const api = stack.apiUrl;
  const table = Object.entries(stack.resources.tables).find(([k]) => k.startsWith('PaymentsTable'))![1].name;
  const refundsTable = Object.entries(stack.resources.tables).find(([k]) => k.startsWith('RefundsTable'))![1].name;
  const foreign = { checkout: [] as string[], otherStage: [] as string[], orphans: [] as string[] };
  const queueUrl = Object.entries(stack.resources.queues).find(([k]) => k.startsWith('PaymentsQueue'))![1].url;
  const sent = new Map<string, Sent>();
  let rejected = 0;
  let replays = 0;
  let replayMismatches = 0;
  let duplicatesInjected = 0;
  let operatorRetries = 0;
  let recoveryRuns = 0;
  const post = (path: string, body: unknown, key = 'local-key-1', idempotencyKey?: string) =>
    fetch(`${api}${path}`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/json', ...(idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}) },
      body: JSON.stringify(body),
    });
  /** A POST answered with its status and JSON body; a network failure is status 0. */
  const ask = async (path: string, body: unknown, idempotencyKey: string) => {
    const res = await post(path, body, 'local-key-1', idempotencyKey).catch(() => undefined);
    return { status: res?.status ?? 0, json: ((await res?.json().catch(() => ({}))) ?? {}) as Record<string, any> };
  };
  const cancels = { asked: 0, canceled: 0, refused: 0, replays: 0, replayMismatches: 0 };
  const tenantRefunds = { payments: 0, asked: 0, accepted: 0, exceeding: 0, otherAnswers: 0, replays: 0, replayMismatches: 0, succeeded: 0, failed: 0, pending: 0 };
  /** Minor units of the refunds the API accepted, per payment. */
  const acceptedRefunds = new Map<string, number>();

  try {
    // ---- Other integrations on the same provider account -----------------------------------------
    let stopForeign = false;
    const others = (async () => {
      if (!o.foreignEveryMs) return;
      for (let n = 0; !stopForeign && !o.signal?.aborted; n++) {
        await sleep(o.foreignEveryMs);
        const kind = (['checkout', 'otherStage', 'orphans'] as const)[n % 3]!;
        const metadata: Record<string, string> =
          kind === 'checkout' ? {} : kind === 'otherStage' ? { payment_id: `pay_other_${n}`, service: OUR_TAG.service, stage: 'staging' } : { payment_id: `pay_orphan_${n}`, intent_seq: '0', ...OUR_TAG };
        const id = await captureAtProvider(provider.url, 700 + n, metadata).catch(() => undefined);
        if (id) foreign[kind].push(id);
      }
    })();

    // ---- Background chaos: operator retries and recovery runs while payments flow -------------------
    let stopChaos = false;
    const chaos = (async () => {
      let lastRecovery = 0;
      while (!stopChaos && !o.signal?.aborted) {
        await sleep(o.operatorRetryEveryMs);
        const ids = [...sent.keys()];
        if (ids.length > 0) {
          const id = ids[Math.floor(rnd() * ids.length)]!;
          const res = await post(`/api/payments/${id}/retry`, { reason: 'soak operator' }, OPERATOR_KEY).catch(() => undefined);
          if (res && (res.status === 202 || res.status === 409)) operatorRetries++;
          await res?.text().catch(() => undefined);
        }
        if (Date.now() - lastRecovery >= o.recoveryEveryMs) {
          lastRecovery = Date.now();
          const res = await fetch(`${api}/api/recovery/process`, { method: 'POST', headers: { 'x-api-key': 'local-operator-key' } }).catch(() => undefined);
          if (res && res.status < 300) recoveryRuns++;
          await res?.text().catch(() => undefined);
        }
      }
    })();

    // ---- Liveness sampler ---------------------------------------------------------------------------
    let rows = new Map<string, Row>();
    let finals = 0;
    let lastProgressAt = Date.now();
    let longestStallMs = 0;
    const sample = async () => {
      rows = await scanPayments(stack.clients.dynamodb, table, sent);
      const nowFinal = [...rows.values()].filter((r) => FINAL.has(r.status)).length;
      const open = sent.size - nowFinal;
      if (nowFinal > finals || open === 0) lastProgressAt = Date.now();
      else longestStallMs = Math.max(longestStallMs, Date.now() - lastProgressAt);
      finals = nowFinal;
      return open;
    };

    // ---- Send ---------------------------------------------------------------------------------------
    const t0 = Date.now();
    let next = 0;
    let lastLine = 0;
    await Promise.all(
      Array.from({ length: o.concurrency }, async () => {
        while (next < o.payments && !o.signal?.aborted) {
          next++;
          const body = {
            idempotencyKey: `soak-${randomUUID()}`,
            amount: Math.round(100 + rnd() * 49_900) / 100,
            currency: 'USD',
            paymentMethod: { type: 'card', token: pick(TOKENS, rnd()) },
          };
          const res = await post('/api/payments/process', body).catch(() => undefined);
          const json = res ? ((await res.json().catch(() => ({}))) as { id?: string; amountMinor?: number }) : {};
          if (res?.status !== 201 || !json.id) {
            rejected++;
            continue;
          }
          sent.set(json.id, { id: json.id, amountMinor: Math.round(body.amount * 100), createdAt: Date.now() });
          if (rnd() < o.replayShare) {
            const copies = rnd() < 0.2 ? 2 : 1;
            const answers = await Promise.all(Array.from({ length: copies }, () => post('/api/payments/process', body).then(async (r) => ({ status: r.status, json: (await r.json()) as { id?: string } }))));
            for (const a of answers) {
              replays++;
              if (a.status !== 201 || a.json.id !== json.id) replayMismatches++;
            }
          }
          if (rnd() < (o.cancelShare ?? 0)) {
            // The tenant changes its mind at once: the payment may still be pending (canceled), already
            // processing (409, retry later) or ended (409). A 200 asked again with its key is the same 200.
            const key = `soak-cancel-${randomUUID()}`;
            const first = await ask(`/api/payments/${json.id}/cancel`, { reason: 'soak' }, key);
            cancels.asked++;
            if (first.status === 200) cancels.canceled++;
            else if (first.status === 409) cancels.refused++;
            if (first.status === 200 && rnd() < 0.5) {
              const again = await ask(`/api/payments/${json.id}/cancel`, { reason: 'soak' }, key);
              cancels.replays++;
              if (again.status !== 200 || again.json.status !== first.json.status || again.json.version !== first.json.version) cancels.replayMismatches++;
            }
          }
          if (rnd() < o.duplicateShare) {
            await stack.clients.sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify({ paymentId: json.id, reason: 'soak_duplicate' }) }));
            duplicatesInjected++;
          }
          if (Date.now() - lastLine > 5000) {
            lastLine = Date.now();
            log(`sent ${sent.size}/${o.payments} (${((sent.size / (Date.now() - t0)) * 1000).toFixed(0)}/s)`);
          }
        }
      }),
    );
    const sendSeconds = (Date.now() - t0) / 1000;
    // Operators stop with the traffic: a re-open gives a failed payment a new budget, so endless
    // re-opens would keep it open forever by design. The drain measures the system on its own.
    stopChaos = true;
    stopForeign = true;
    await Promise.all([chaos, others]);
    log(`all ${sent.size} accepted in ${sendSeconds.toFixed(1)} s; draining`);

    // ---- Drain --------------------------------------------------------------------------------------
    const drainStart = Date.now();
    lastProgressAt = Date.now();
    for (;;) {
      const open = await sample();
      if (Date.now() - lastLine > 5000) {
        lastLine = Date.now();
        log(`open ${open}, final ${finals}, longest stall ${(longestStallMs / 1000).toFixed(1)} s`);
      }
      if (open === 0 || Date.now() - drainStart > o.drainTimeoutMs || o.signal?.aborted) break;
      // Each sample scans the table: keep the measuring from loading DynamoDB Local on large runs.
      await sleep(Math.max(1000, o.payments / 2));
    }
    // ---- Tenant refunds of a share of the successful payments --------------------------------------
    const refundable = [...rows.values()].filter((r) => r.status === 'success' && rnd() < (o.refundShare ?? 0));
    const refundOne = async (id: string, body: Record<string, unknown>, key: string) => {
      tenantRefunds.asked++;
      const a = await ask(`/api/payments/${id}/refunds`, body, key);
      if (a.status === 201) {
        tenantRefunds.accepted++;
        acceptedRefunds.set(id, (acceptedRefunds.get(id) ?? 0) + Number(a.json.amountMinor));
      } else if (a.status === 409 && a.json.error?.code === 'REFUND_EXCEEDS_CAPTURED') tenantRefunds.exceeding++;
      else tenantRefunds.otherAnswers++;
      return a;
    };
    let nextRefund = 0;
    await Promise.all(
      Array.from({ length: o.concurrency }, async () => {
        while (nextRefund < refundable.length && !o.signal?.aborted) {
          const p = refundable[nextRefund++]!;
          tenantRefunds.payments++;
          const scenario = rnd();
          if (scenario < 0.4) {
            // In full, then the same request again: the same refund, replayed.
            const key = `soak-refund-${randomUUID()}`;
            const first = await refundOne(p.id, { reason: 'soak full' }, key);
            if (first.status === 201) {
              const again = await ask(`/api/payments/${p.id}/refunds`, { reason: 'soak full' }, key);
              tenantRefunds.replays++;
              if (again.status !== 201 || again.json.id !== first.json.id || again.json.amountMinor !== first.json.amountMinor) tenantRefunds.replayMismatches++;
            }
          } else if (scenario < 0.7) {
            // Two parts, one after the other.
            const part = Math.floor(p.amountMinor / 3) / 100;
            await refundOne(p.id, { amount: part, reason: 'soak part 1' }, `soak-refund-${randomUUID()}`);
            await refundOne(p.id, { amount: part, reason: 'soak part 2' }, `soak-refund-${randomUUID()}`);
          } else {
            // Five parts of 30% at once with distinct keys: three fit in the capture, two must be refused.
            const part = Math.floor(p.amountMinor * 0.3) / 100;
            await Promise.all(Array.from({ length: 5 }, (_, i) => refundOne(p.id, { amount: part, reason: `soak race ${i}` }, `soak-refund-${randomUUID()}`)));
          }
        }
      }),
    );
    if (refundable.length > 0) log(`${tenantRefunds.accepted} tenant refunds accepted on ${refundable.length} payments; waiting for them to end`);

    // Refunds owed (the orphan captures) and tenant refunds are followed until the provider ends them.
    let owed = await scanRefunds(stack.clients.dynamodb, refundsTable);
    while (owed.some((r) => r.status === 'pending') && Date.now() - drainStart < o.drainTimeoutMs && !o.signal?.aborted) {
      await sleep(2000);
      owed = await scanRefunds(stack.clients.dynamodb, refundsTable);
    }
    const drainSeconds = (Date.now() - t0) / 1000;
    // Recovery runs may still be writing; give the last one a moment, then read the final state.
    await sleep(3000);
    await sample();
    owed = await scanRefunds(stack.clients.dynamodb, refundsTable);

    // ---- Verdict from the ledger ---------------------------------------------------------------------
    const ledger = provider.ledger();
    const net = new Map<string, number>();
    const captureCount = new Map<string, number>();
    let captures = 0;
    let refunds = 0;
    for (const e of ledger as LedgerEntry[]) {
      if (!sent.has(e.paymentId)) continue;
      if (e.status === 'succeeded') {
        captures++;
        captureCount.set(e.paymentId, (captureCount.get(e.paymentId) ?? 0) + 1);
        net.set(e.paymentId, (net.get(e.paymentId) ?? 0) + e.amountMinor);
      } else if (e.status === 'refunded') {
        refunds++;
        net.set(e.paymentId, (net.get(e.paymentId) ?? 0) - e.amountMinor);
      }
    }
    const openIds = [...sent.keys()].filter((id) => !FINAL.has(rows.get(id)?.status ?? '')).slice(0, 10);
    const openSample: Array<Record<string, unknown>> = [];
    for (const id of openIds) {
      const res = await stack.clients.dynamodb.send(new GetItemCommand({ TableName: table, Key: { id: { S: id } } }));
      const p = res.Item ? unmarshall(res.Item) : { id, missing: true };
      openSample.push({
        id,
        status: p.status,
        attempt: p.attempt,
        retryCount: p.retryCount,
        maxRetries: p.maxRetries,
        intentId: p.intentId,
        token: String(p.paymentMethod?.token ?? '').slice(0, 12),
        lastError: p.lastError ? { code: p.lastError.code, details: p.lastError.details } : undefined,
        lastChange: p.lastChange,
        dueInMs: typeof p.dueAt === 'number' ? p.dueAt - Date.now() : undefined,
        leaseInMs: typeof p.leaseUntil === 'number' ? p.leaseUntil - Date.now() : undefined,
        ledger: provider.ledger(id).map((e) => `${e.status}:${e.intentId}`),
      });
    }
    // Other integrations' captures must be untouched; our orphans refunded, or their refund reported failed.
    const byIntent = new Map<string, number>();
    const capturedIntents = new Set<string>();
    let foreignRefunded = 0;
    const foreignAll = new Set([...foreign.checkout, ...foreign.otherStage]);
    for (const e of ledger as LedgerEntry[]) {
      byIntent.set(e.intentId, (byIntent.get(e.intentId) ?? 0) + (e.status === 'succeeded' ? e.amountMinor : e.status === 'refunded' ? -e.amountMinor : 0));
      if (e.status === 'succeeded') capturedIntents.add(e.intentId);
      if (e.status === 'refunded' && foreignAll.has(e.intentId)) foreignRefunded++;
    }
    // Only captures count (a confirm the simulator's faults refused moved no money).
    const foreignIds = [...foreignAll].filter((id) => capturedIntents.has(id));
    const orphans = foreign.orphans.filter((id) => capturedIntents.has(id));
    const failedRefund = new Set(owed.filter((r) => r.status === 'failed').map((r) => r.intentId));
    const orphansRefunded = orphans.filter((id) => (byIntent.get(id) ?? 0) === 0).length;
    const orphansReportedFailed = orphans.filter((id) => (byIntent.get(id) ?? 0) > 0 && failedRefund.has(id)).length;

    const byStatus: Record<string, number> = {};
    let longestOpenMs = 0;
    let attempts = 0;
    for (const r of rows.values()) {
      byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
      attempts += r.attempt;
      const end = FINAL.has(r.status) ? Date.parse(r.updatedAt) : Date.now();
      longestOpenMs = Math.max(longestOpenMs, end - Date.parse(r.createdAt));
    }
    let moreThanOneCharge = 0;
    let successWithoutCapture = 0;
    let notPaidWithCapture = 0;
    // Tenant refunds as they ended, per payment (our records); the ledger must agree to the unit.
    const succeededRefunds = new Map<string, number>();
    const pendingRefunds = new Map<string, number>();
    for (const r of owed.filter((x) => x.kind === 'tenant')) {
      if (r.status === 'succeeded') succeededRefunds.set(r.paymentId, (succeededRefunds.get(r.paymentId) ?? 0) + r.amountMinor);
      if (r.status === 'pending') pendingRefunds.set(r.paymentId, (pendingRefunds.get(r.paymentId) ?? 0) + r.amountMinor);
      tenantRefunds[r.status === 'succeeded' ? 'succeeded' : r.status === 'failed' ? 'failed' : 'pending']++;
    }
    let overRefunded = 0;
    let refundLedgerMismatch = 0;
    let refundedFieldMismatch = 0;
    for (const s of sent.values()) {
      const n = net.get(s.id) ?? 0;
      const row = rows.get(s.id);
      const status = row?.status;
      const refunded = succeededRefunds.get(s.id) ?? 0;
      if (n > s.amountMinor) moreThanOneCharge++;
      if (status === 'success' && n < s.amountMinor - refunded - (pendingRefunds.get(s.id) ?? 0)) successWithoutCapture++;
      if ((status === 'failed' || status === 'expired' || status === 'canceled') && n > 0) notPaidWithCapture++;
      if ((acceptedRefunds.get(s.id) ?? 0) > s.amountMinor) overRefunded++;
      if (status === 'success' && !pendingRefunds.has(s.id) && n !== s.amountMinor - refunded) refundLedgerMismatch++;
      if (!pendingRefunds.has(s.id) && (row?.amountRefundedMinor ?? 0) !== refunded) refundedFieldMismatch++;
    }
    return {
      payments: o.payments,
      accepted: sent.size,
      rejected,
      replays,
      replayMismatches,
      duplicatesInjected,
      operatorRetries,
      recoveryRuns,
      byStatus,
      attempts,
      captures,
      refunds,
      moreThanOneCharge,
      successWithoutCapture,
      notPaidWithCapture,
      notFinal: [...sent.keys()].filter((id) => !FINAL.has(rows.get(id)?.status ?? '')).length,
      foreignCaptures: foreignIds.length,
      foreignRefunded,
      orphans: orphans.length,
      orphansRefunded,
      orphansReportedFailed,
      orphansUnsettled: orphans.length - orphansRefunded - orphansReportedFailed,
      refundsPending: owed.filter((r) => r.status === 'pending').length,
      cancels,
      tenantRefunds,
      overRefunded,
      refundLedgerMismatch,
      refundedFieldMismatch,
      sendSeconds,
      drainSeconds,
      longestOpenSeconds: longestOpenMs / 1000,
      longestStallSeconds: longestStallMs / 1000,
      faults: o.faults,
      openSample,
    };
  } finally {
    await stack.stop();
    await provider.stop();
  }
}

type Scanner = { send: (c: ScanCommand) => Promise<{ Items?: any[]; LastEvaluatedKey?: any }> };

/** Every item of a table, with only the attributes named (`status` is a reserved word, so it goes by `#s`). */
async function scanAll<T>(db: Scanner, table: string, attributes: string): Promise<T[]> {
  const out: T[] = [];
  let start: Record<string, any> | undefined;
  do {
    const res = await db.send(new ScanCommand({ TableName: table, ExclusiveStartKey: start, ProjectionExpression: attributes, ExpressionAttributeNames: { '#s': 'status' } }));
    for (const item of res.Items ?? []) out.push(unmarshall(item) as T);
    start = res.LastEvaluatedKey;
  } while (start);
  return out;
}

async function scanPayments(db: Scanner, table: string, wanted: Map<string, Sent>) {
  const rows = new Map<string, Row>();
  for (const r of await scanAll<Row>(db, table, 'id, #s, attempt, amountMinor, amountRefundedMinor, createdAt, updatedAt')) if (wanted.has(r.id)) rows.set(r.id, r);
  return rows;
}

interface RefundRow {
  readonly id: string;
  readonly kind: string;
  readonly paymentId: string;
  readonly intentId: string;
  readonly amountMinor: number;
  readonly status: string;
}

const scanRefunds = (db: Scanner, table: string) => scanAll<RefundRow>(db, table, 'id, kind, paymentId, intentId, amountMinor, #s');

/** Another integration on the account captures money: a plain intent create and confirm at the provider. */
async function captureAtProvider(url: string, amount: number, metadata: Record<string, string>): Promise<string | undefined> {
  const headers = { authorization: 'Bearer sk_test_soak_other', 'content-type': 'application/x-www-form-urlencoded' };
  const body = new URLSearchParams({ amount: String(amount), currency: 'usd', ...Object.fromEntries(Object.entries(metadata).map(([k, v]) => [`metadata[${k}]`, v])) });
  const created = (await (await fetch(`${url}/v1/payment_intents`, { method: 'POST', headers, body })).json()) as { id?: string };
  if (!created.id) return undefined;
  // Without an idempotency key and with the simulator's faults: captured or not, the ledger says.
  const res = await fetch(`${url}/v1/payment_intents/${created.id}/confirm`, { method: 'POST', headers, body: new URLSearchParams({ payment_method: 'pm_card_visa' }), signal: AbortSignal.timeout(6000) }).catch(() => undefined);
  await res?.text().catch(() => undefined);
  return created.id;
}

function pick(table: Array<[string, number]>, r: number): string {
  let acc = 0;
  for (const [v, w] of table) {
    acc += w;
    if (r < acc) return v;
  }
  return table[0]![0];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
