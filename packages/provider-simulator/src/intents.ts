/**
 * Payment intents: create, confirm, cancel, retrieve, search, list.
 *
 * Model (the facts the product relies on):
 *   - An intent succeeds AT MOST ONCE; a canceled intent never succeeds. Confirm is allowed from
 *     requires_payment_method / requires_confirmation / requires_action; on any other status it is 400
 *     payment_intent_unexpected_state (with the intent). Cancel is allowed from requires_payment_method,
 *     requires_confirmation, requires_action and requires_capture; not while processing (Stripe cancels a
 *     processing intent only in rare cases) nor once succeeded or canceled.
 *   - A declined confirm is 402 card_error/card_declined (decline_code on the error), and leaves the intent
 *     in requires_payment_method with last_payment_error; it can be confirmed again.
 *   - A card that needs 3-D Secure leaves the intent in requires_action after a server-side confirm, and
 *     every later server-side confirm too (nobody completes the challenge).
 *   - An intent in processing ends on its own (succeeded, or back to requires_payment_method with a
 *     decline), whether or not anybody asks.
 *   - Confirm and cancel take a per-intent lock for as long as they run; another confirm/cancel of that
 *     intent meanwhile gets 429 invalid_request_error/lock_timeout.
 *   - Amounts and metadata follow Stripe's rules (currency-rules.ts); intents without this service's
 *     metadata (other integrations on the account) are stored, listed and captured like any other.
 */
import { amountProblem, metadataProblem } from './currency-rules';
import { intParam, listParam, stringMap, type Params } from './form';
import type { Runtime } from './runtime';
import type { IntentSnapshot, Processing } from './state';
import {
  apiError,
  noSuch,
  paramError,
  randomId,
  stripeError,
  type IntentJson,
  type IntentStatus,
  type LastPaymentError,
  type LedgerEntry,
  type Reply,
} from './stripe-objects';

export interface IntentRecord extends IntentSnapshot {
  /** Every state the intent had, with the time it began (ms): lookups with lag read from it. */
  history: Array<{ at: number; intent: IntentJson; refunded: number }>;
}

const CONFIRMABLE: ReadonlySet<IntentStatus> = new Set(['requires_payment_method', 'requires_confirmation', 'requires_action']);
const CANCELABLE: ReadonlySet<IntentStatus> = new Set(['requires_payment_method', 'requires_confirmation', 'requires_action', 'requires_capture']);
const THREE_D_SECURE = new Set(['pm_card_authenticationRequired', 'tok_3ds_required']);

/** Newest first: by `created` descending, then insertion descending (Stripe's list order). */
export function newestFirst(a: IntentSnapshot, b: IntentSnapshot): number {
  return b.intent.created - a.intent.created || b.seq - a.seq;
}

export class IntentBook {
  readonly records = new Map<string, IntentRecord>();
  private readonly locks = new Set<string>();
  private seq = 0;

  constructor(private readonly rt: Runtime) {}

  // ---- state --------------------------------------------------------------------------------------------

  /** Stores a new state of an intent (and the ledger entry it produced) in memory and on disk, as one event. */
  commit(rec: IntentRecord, intent: IntentJson, ledger?: LedgerEntry): void {
    const at = Date.now();
    rec.intent = intent;
    rec.history.push({ at, intent, refunded: rec.refunded });
    const { history: _h, ...snapshot } = rec;
    this.rt.state.append({ at, intent: snapshot, ...(ledger ? { ledger } : {}) });
  }

  /** A state event replayed at start. */
  restore(at: number, s: IntentSnapshot): void {
    const rec = this.records.get(s.intent.id);
    if (rec) {
      Object.assign(rec, s);
      if (!s.processing) delete rec.processing;
      rec.history.push({ at, intent: s.intent, refunded: s.refunded });
    } else {
      this.records.set(s.intent.id, { ...s, history: [{ at, intent: s.intent, refunded: s.refunded }] });
    }
    this.seq = Math.max(this.seq, s.seq);
  }

  /** After a restart: intents still processing end when they were due to. */
  resumeProcessing(): void {
    for (const rec of this.records.values()) if (rec.processing && rec.intent.status === 'processing') this.scheduleEnd(rec, rec.processing);
  }

  clear(): void {
    this.records.clear();
    this.locks.clear();
    this.seq = 0;
  }

  ledgerEntry(intent: IntentJson, e: Omit<LedgerEntry, 'paymentId' | 'currency' | 'intentId' | 'at'>): LedgerEntry {
    return { paymentId: intent.metadata.payment_id ?? '', currency: intent.currency.toUpperCase(), intentId: intent.id, at: new Date().toISOString(), ...e };
  }

  /** The intent as a lookup sees it now: its state lookupLagMs ago (undefined: too young to be seen). */
  visible(rec: IntentRecord): { intent: IntentJson; refunded: number } | undefined {
    const lag = this.rt.faults.now.lookupLagMs;
    if (lag <= 0) return { intent: rec.intent, refunded: rec.refunded };
    const horizon = Date.now() - lag;
    let seen: { intent: IntentJson; refunded: number } | undefined;
    for (const h of rec.history) {
      if (h.at > horizon) break;
      seen = h;
    }
    return seen;
  }

  /** Runs a confirm/cancel holding the intent's lock; a second one meanwhile gets lock_timeout. */
  async locked(id: string, run: () => Promise<Reply>): Promise<Reply> {
    if (this.locks.has(id)) {
      return stripeError(429, {
        type: 'invalid_request_error',
        code: 'lock_timeout',
        message: 'This object cannot be accessed right now because another API request or Stripe process is currently accessing it.',
      });
    }
    this.locks.add(id);
    try {
      return await run();
    } finally {
      this.locks.delete(id);
    }
  }

  // ---- endpoints ----------------------------------------------------------------------------------------

  create(p: Params): Reply {
    const amount = intParam(p.amount);
    if (amount === undefined || amount < 1) return paramError('amount', 'amount must be a positive integer', 'parameter_invalid_integer');
    const currency = typeof p.currency === 'string' ? p.currency.toLowerCase() : '';
    if (!/^[a-z]{3}$/.test(currency)) return paramError('currency', 'currency must be a three-letter ISO code');
    const metadata = stringMap(p.metadata);
    if (!metadata) return paramError('metadata', 'metadata must be a map of strings');
    if (p.confirm !== undefined && p.confirm !== 'false') return paramError('confirm', 'the simulator supports confirm=false only');
    const refused = amountProblem(amount, currency) ?? metadataProblem(metadata);
    if (refused) return refused;

    const f = this.rt.faults;
    const failing = f.hit(f.now.createErrorRate);
    if (failing && !f.hit(f.now.savedErrorCommitRate)) return apiError('An unknown error occurred (injected create fault).');
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
      next_action: null,
      payment_method: null,
      canceled_at: null,
      cancellation_reason: null,
      capture_method: 'automatic',
      confirmation_method: 'automatic',
      client_secret: `${id}_secret_${randomId(24)}`,
      livemode: false,
    };
    const rec: IntentRecord = { seq: ++this.seq, intent, transientFailures: 0, refunded: 0, history: [] };
    this.records.set(id, rec);
    this.commit(rec, intent);
    if (failing) return apiError('An unknown error occurred after the intent was created (injected create fault).');
    return { status: 200, body: intent, save: true };
  }

  async confirm(rec: IntentRecord, p: Params, key: string | undefined): Promise<Reply> {
    const pm = p.payment_method;
    if (typeof pm !== 'string' || pm === '') {
      return stripeError(400, { type: 'invalid_request_error', code: 'parameter_missing', param: 'payment_method', message: 'Missing required param: payment_method.' });
    }
    if (!CONFIRMABLE.has(rec.intent.status)) return unexpectedState(rec.intent, 'confirm');

    const capture = (): IntentJson => this.capture(rec, pm, key);
    const decline = (declineCode: string, message: string): Reply => {
      this.decline(rec, declineCode, message, key);
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
    if (THREE_D_SECURE.has(pm)) {
      const next: IntentJson = {
        ...rec.intent,
        status: 'requires_action',
        payment_method: pm,
        last_payment_error: null,
        next_action: { type: 'use_stripe_sdk', use_stripe_sdk: { type: 'three_d_secure_redirect' } },
      };
      this.commit(rec, next);
      return { status: 200, body: next, save: true };
    }
    const processing = /^tok_processing_(fail_)?(\d+)$/.exec(pm);
    if (processing) {
      const end: Processing = { until: Date.now() + Number(processing[2]), fail: processing[1] !== undefined, ...(key ? { key } : {}) };
      rec.processing = end;
      const next: IntentJson = { ...rec.intent, status: 'processing', payment_method: pm, last_payment_error: null, next_action: null };
      this.commit(rec, next);
      this.scheduleEnd(rec, end);
      return { status: 200, body: next, save: true };
    }
    if (pm === 'tok_fail_always') return apiError('An unknown error occurred (tok_fail_always).');
    if (pm === 'tok_rate_limited') {
      return stripeError(429, { type: 'invalid_request_error', code: 'rate_limit', message: 'Too many requests hit the API too quickly.' }, { headers: { 'retry-after': '1' } });
    }
    if (pm === 'tok_timeout') {
      capture();
      return { status: 200, body: rec.intent, save: true, hangMs: this.rt.timeoutMs };
    }
    const transient = /^tok_transient_(\d+)$/.exec(pm);
    if (transient && rec.transientFailures < Number(transient[1])) {
      rec.transientFailures++;
      this.commit(rec, rec.intent);
      return apiError(`An unknown error occurred (tok_transient, failure ${rec.transientFailures} of ${transient[1]}).`);
    }
    const slow = /^tok_slow_(\d+)$/.exec(pm);
    if (slow) await this.rt.sleep(Number(slow[1]));

    // A confirm that would capture: one draw decides the fault.
    const f = this.rt.faults.now;
    const anyFault = f.errorRate + f.timeoutRate + f.commitThenErrorRate + f.lateCommitRate + f.resetAfterCommitRate > 0;
    let d = anyFault ? this.rt.faults.draw() : 1;
    if ((d -= f.errorRate) < 0) return apiError('An unknown error occurred (injected).');
    if ((d -= f.timeoutRate) < 0) {
      if (this.rt.faults.draw() < f.timeoutCommitRate) {
        capture();
        return { status: 200, body: rec.intent, save: true, hangMs: this.rt.timeoutMs };
      }
      return { status: 500, body: { error: { type: 'api_error', message: 'timed out (injected)' } }, hangMs: this.rt.timeoutMs };
    }
    if ((d -= f.commitThenErrorRate) < 0) {
      capture();
      return apiError('An unknown error occurred after the payment was processed (injected).');
    }
    if ((d -= f.lateCommitRate) < 0) {
      await this.rt.sleep(f.lateCommitMs);
      if (this.rt.stopped()) return apiError('stopped');
      if (!CONFIRMABLE.has(rec.intent.status)) return unexpectedState(rec.intent, 'confirm');
      return { status: 200, body: capture(), save: true };
    }
    if ((d -= f.resetAfterCommitRate) < 0) {
      return { status: 200, body: capture(), save: true, reset: true };
    }
    return { status: 200, body: capture(), save: true };
  }

  cancel(rec: IntentRecord, p: Params): Reply {
    if (!CANCELABLE.has(rec.intent.status)) return unexpectedState(rec.intent, 'cancel');
    const f = this.rt.faults;
    const failing = f.hit(f.now.cancelErrorRate);
    if (failing && !f.hit(f.now.savedErrorCommitRate)) return apiError('An unknown error occurred (injected cancel fault).');
    const reason = typeof p.cancellation_reason === 'string' ? p.cancellation_reason : null;
    const next: IntentJson = { ...rec.intent, status: 'canceled', canceled_at: Math.floor(Date.now() / 1000), cancellation_reason: reason, next_action: null };
    this.commit(rec, next);
    if (failing) return apiError('An unknown error occurred after the intent was canceled (injected cancel fault).');
    return { status: 200, body: next, save: true };
  }

  retrieve(id: string, q: Params): Reply {
    const rec = this.records.get(id);
    const v = rec && this.visible(rec);
    if (!v) return noSuch('payment_intent', id, 'intent');
    return { status: 200, body: this.render(v, listParam(q.expand).includes('latest_charge')) };
  }

  search(q: Params): Reply {
    const query = typeof q.query === 'string' ? q.query : '';
    const m = /^\s*metadata\[\s*(['"])([^'"]+)\1\s*\]\s*:\s*(['"])((?:\\.|(?!\3).)*)\3\s*$/.exec(query);
    if (!m) {
      return stripeError(400, { type: 'invalid_request_error', code: 'parameter_invalid', param: 'query', message: "The simulator supports queries of the form metadata['key']:'value' only." });
    }
    const field = m[2]!;
    const value = m[4]!.replace(/\\(.)/g, '$1');
    const limit = intParam(q.limit) ?? 10;
    const found: IntentJson[] = [];
    for (const rec of [...this.records.values()].sort(newestFirst)) {
      const v = this.visible(rec);
      if (v && v.intent.metadata[field] === value) found.push(v.intent);
    }
    return {
      status: 200,
      body: { object: 'search_result', url: '/v1/payment_intents/search', data: found.slice(0, limit), has_more: found.length > limit, next_page: null },
    };
  }

  list(q: Params): Reply {
    const created = (q.created ?? {}) as Params;
    if (typeof created !== 'object') return paramError('created', 'created must be a range');
    const bound = (k: string): number | undefined => intParam(created[k]);
    const gte = bound('gte');
    const gt = bound('gt');
    const lt = bound('lt');
    const lte = bound('lte');
    const limit = q.limit === undefined ? 10 : intParam(q.limit);
    if (limit === undefined || limit < 1 || limit > 100) return paramError('limit', 'limit must be an integer between 1 and 100');
    const expandCharge = listParam(q.expand).includes('data.latest_charge');
    const all: Array<{ rec: IntentRecord; v: { intent: IntentJson; refunded: number } }> = [];
    for (const rec of [...this.records.values()].sort(newestFirst)) {
      const v = this.visible(rec);
      if (!v) continue;
      const c = v.intent.created;
      if ((gte !== undefined && c < gte) || (gt !== undefined && c <= gt) || (lt !== undefined && c >= lt) || (lte !== undefined && c > lte)) continue;
      all.push({ rec, v });
    }
    let start = 0;
    if (typeof q.starting_after === 'string') {
      const cursor = this.records.get(q.starting_after);
      if (!cursor) return noSuch('payment_intent', q.starting_after, 'starting_after');
      // Everything listed after the cursor: older, or as old and inserted before it.
      start = all.findIndex((x) => newestFirst(cursor, x.rec) < 0);
      if (start < 0) start = all.length;
    }
    const page = all.slice(start, start + limit);
    return {
      status: 200,
      body: { object: 'list', url: '/v1/payment_intents', data: page.map((x) => this.render(x.v, expandCharge)), has_more: start + limit < all.length },
    };
  }

  // ---- charges ------------------------------------------------------------------------------------------

  /** The charge of a captured intent as Stripe shows it when expanded (amount_refunded: pending and succeeded refunds). */
  charge(v: { intent: IntentJson; refunded: number }): Record<string, unknown> | undefined {
    const i = v.intent;
    if (!i.latest_charge) return undefined;
    const succeeded = i.status === 'succeeded';
    return {
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
    };
  }

  /** Changes the refunded amount of an intent's charge (a refund made, or one that failed). */
  adjustRefunded(rec: IntentRecord, delta: number, ledger?: LedgerEntry): void {
    rec.refunded += delta;
    this.commit(rec, rec.intent, ledger);
  }

  // ---- internals ----------------------------------------------------------------------------------------

  private render(v: { intent: IntentJson; refunded: number }, expandCharge: boolean): IntentJson | Record<string, unknown> {
    const charge = expandCharge ? this.charge(v) : undefined;
    return charge ? { ...v.intent, latest_charge: charge } : v.intent;
  }

  private capture(rec: IntentRecord, pm: string, key: string | undefined): IntentJson {
    const chargeId = `ch_${randomId(24)}`;
    const next: IntentJson = {
      ...rec.intent,
      status: 'succeeded',
      amount_received: rec.intent.amount,
      latest_charge: chargeId,
      last_payment_error: null,
      next_action: null,
      payment_method: pm,
    };
    delete rec.processing;
    this.commit(rec, next, this.ledgerEntry(next, { status: 'succeeded', amountMinor: next.amount, chargeId, ...(key ? { idempotencyKey: key } : {}) }));
    return next;
  }

  private decline(rec: IntentRecord, declineCode: string, message: string, key: string | undefined): void {
    const lpe: LastPaymentError = { type: 'card_error', code: 'card_declined', decline_code: declineCode, message };
    const chargeId = `ch_${randomId(24)}`;
    const next: IntentJson = { ...rec.intent, status: 'requires_payment_method', last_payment_error: lpe, payment_method: null, next_action: null, latest_charge: chargeId };
    delete rec.processing;
    this.commit(rec, next, this.ledgerEntry(next, { status: 'declined', amountMinor: next.amount, chargeId, code: 'card_declined', declineCode, message, ...(key ? { idempotencyKey: key } : {}) }));
  }

  /** A processing intent ends on its own at `end.until`. */
  private scheduleEnd(rec: IntentRecord, end: Processing): void {
    this.rt.later(Math.max(0, end.until - Date.now()), () => {
      if (rec.intent.status !== 'processing' || rec.processing !== end) return;
      if (end.fail) this.decline(rec, 'generic_decline', 'Your card was declined (after processing).', end.key);
      else this.capture(rec, rec.intent.payment_method ?? 'processing', end.key);
    });
  }
}

function unexpectedState(intent: IntentJson, action: 'confirm' | 'cancel'): Reply {
  return stripeError(
    400,
    {
      type: 'invalid_request_error',
      code: 'payment_intent_unexpected_state',
      message: `You cannot ${action} this PaymentIntent because it has a status of ${intent.status}.`,
      payment_intent: intent,
    },
    { save: true },
  );
}
