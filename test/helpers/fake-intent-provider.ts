/**
 * An in-memory payment provider with intents, for unit tests. It can produce every failure a real
 * provider produces, each on purpose:
 *   - confirms that commit and then fail (5xx, reset), that time out committed or not, and late commits
 *     that land after the caller gave up (`late`: held until the test calls `landLate()`), holding the
 *     intent's lock meanwhile like a real provider;
 *   - confirms that end in `requires_action` (3-D Secure) or sit in `processing` until the test ends them;
 *   - reads that lag (`lagMs`: retrieve/list/search show the intent as it was that long ago);
 *   - idempotency keys as Stripe keeps them: the first answer is saved, a 5xx included, and replayed (with
 *     `extra.replayed`) for `keyTtlMs` (24 h); after that the key is forgotten and the request runs again;
 *   - creates, cancels and refunds whose 5xx is saved under the key (`createBehaviour`, `cancelBehaviour`,
 *     `refundBehaviour`), after acting or not;
 *   - refunds that stay pending and then succeed or fail (`endRefund`);
 *   - intents of other integrations on the same account (`createForeignIntent`).
 * What it guarantees is what a real provider guarantees: an intent succeeds at most once and a
 * cancelled intent never succeeds. Money movements go to `ledger`, so tests count captures.
 */
import {
  ProviderError,
  cancelIdempotencyKey,
  intentIdempotencyKey,
  refundIdempotencyKey,
  type ConfirmIntentRequest,
  type CreateIntentRequest,
  type IntentPage,
  type PaymentProvider,
  type ProviderIntent,
  type ProviderRefund,
  type RefundRequest,
} from '../../functions/core/ports/payment-provider';

export type ConfirmBehaviour =
  | 'succeed'
  | 'decline'
  | 'insufficient_funds'
  /** 503 without committing. */
  | 'error'
  /** Commits, then answers 503. */
  | 'commit_then_error'
  /** Commits, then the connection drops. */
  | 'reset_after_commit'
  /** Commits; the answer never comes (the client times out). */
  | 'timeout_committed'
  /** Times out without committing. */
  | 'timeout_not_committed'
  /** The client times out now; the commit lands when the test calls landLate() (the lock is held until then). */
  | 'late'
  | 'rate_limited'
  | 'auth_error'
  /** 3-D Secure: the intent needs the customer, which a server-side confirm never gets. */
  | 'requires_action'
  /** The intent sits in processing until the test calls endProcessing(). */
  | 'processing';

/** A create, cancel or refund: fine, or a 5xx saved under its key before or after acting. */
export type SavedErrorBehaviour = 'ok' | 'error' | 'commit_then_error';
export type RefundBehaviour = SavedErrorBehaviour | 'pending';

export type CallKind = 'create' | 'confirm' | 'retrieve' | 'cancel' | 'refund' | 'list' | 'search' | 'list_refunds' | 'retrieve_refund';

interface IntentRecord {
  intent: ProviderIntent;
  /** Snapshots with the time they became visible, for lagging reads. */
  history: Array<{ at: number; intent: ProviderIntent }>;
  locked: boolean;
}

export interface LedgerEntry {
  readonly paymentId: string;
  readonly intentId: string;
  readonly status: 'succeeded' | 'refunded';
  readonly amountMinor: number;
}

/** This service's tag on its intents, as the adapter would write it. */
export const OUR_TAG = { service: 'idempotent-payments', stage: 'test' } as const;

const DAY_MS = 24 * 3600 * 1000;

type Saved = { fingerprint: string; at: number; result: ProviderIntent | ProviderRefund | ProviderError };

export class FakeIntentProvider implements PaymentProvider {
  readonly intents = new Map<string, IntentRecord>();
  readonly refunds = new Map<string, ProviderRefund>();
  readonly ledger: LedgerEntry[] = [];
  readonly calls: Array<{ op: CallKind; id?: string; key?: string }> = [];
  /** Decides each confirm's fate; `n` counts confirms of that intent so far (0-based). */
  confirmBehaviour: (req: ConfirmIntentRequest, n: number) => ConfirmBehaviour = () => 'succeed';
  /** Decides each create that runs (not a replay); `n` counts them per payment (0-based). */
  createBehaviour: (req: CreateIntentRequest, n: number) => SavedErrorBehaviour = () => 'ok';
  /** Decides each cancel that runs; `n` counts them per intent (0-based). */
  cancelBehaviour: (intentId: string, n: number) => SavedErrorBehaviour = () => 'ok';
  /** Decides each refund that runs; `n` counts them per intent (0-based). */
  refundBehaviour: (req: RefundRequest, n: number) => RefundBehaviour = () => 'ok';
  /** Retrieves/lists/searches, creates, cancels fail with this until cleared. */
  failReads?: ProviderError;
  failCreates?: ProviderError;
  failCancels?: ProviderError;
  /** Reads show the state as of this long ago. */
  lagMs = 0;
  /** How long a saved answer is replayed under its key (Stripe: 24 h). */
  keyTtlMs = DAY_MS;
  private readonly byKey = new Map<string, Saved>();
  private readonly counts = new Map<string, number>();
  private readonly pendingLate: Array<() => void> = [];
  private seq = 0;
  private cancels = 0;

  constructor(
    private readonly now: () => number = Date.now,
    private readonly tag: { service: string; stage: string } = OUR_TAG,
  ) {}

  // ---- PaymentProvider ----------------------------------------------------------------------------

  async createIntent(req: CreateIntentRequest): Promise<ProviderIntent> {
    const key = intentIdempotencyKey(req.paymentId, req.intentSeq, req.keyGeneration);
    this.calls.push({ op: 'create', key });
    await tick();
    if (this.failCreates) throw this.failCreates;
    return this.idempotent(key, `${req.paymentId}|${req.amountMinor}|${req.currency}`, () => {
      const b = this.createBehaviour(req, this.bump(`create:${req.paymentId}`));
      if (b === 'error') throw unknown503();
      const intent = this.newIntent({
        paymentId: req.paymentId,
        amountMinor: req.amountMinor,
        currency: req.currency,
        ...this.tag,
        intentSeq: req.intentSeq ?? 0,
      });
      if (b === 'commit_then_error') throw unknown503();
      return intent;
    }) as ProviderIntent;
  }

  async confirmIntent(intentId: string, req: ConfirmIntentRequest): Promise<ProviderIntent> {
    const key = `confirm-${req.paymentId}-${req.attempt}`;
    this.calls.push({ op: 'confirm', id: intentId, key });
    await tick();
    const replay = this.saved(key);
    if (replay) return this.replayed(replay.result) as ProviderIntent;
    const rec = this.record(intentId);
    if (rec.locked) throw new ProviderError('throttled', 'lock_timeout', 'another request is using this intent', { httpStatus: 429 });
    if (!['requires_payment_method', 'requires_confirmation', 'requires_action'].includes(rec.intent.status)) {
      throw this.save(key, new ProviderError('rejected', 'payment_intent_unexpected_state', `intent is ${rec.intent.status}`, { intent: rec.intent, httpStatus: 400 }));
    }
    const b = this.confirmBehaviour(req, this.bump(`confirm:${intentId}`));
    switch (b) {
      case 'succeed':
        return this.save(key, this.capture(rec)) as ProviderIntent;
      case 'decline':
      case 'insufficient_funds': {
        const declineCode = b === 'decline' ? 'generic_decline' : 'insufficient_funds';
        this.update(rec, { ...rec.intent, status: 'requires_payment_method', lastError: { code: 'card_declined', message: 'declined', declineCode } });
        throw this.save(key, new ProviderError('declined', 'card_declined', 'Your card was declined.', { intent: rec.intent, declineCode, httpStatus: 402 }));
      }
      case 'requires_action':
        this.update(rec, { ...rec.intent, status: 'requires_action' });
        return this.save(key, rec.intent) as ProviderIntent;
      case 'processing':
        this.update(rec, { ...rec.intent, status: 'processing' });
        return this.save(key, rec.intent) as ProviderIntent;
      case 'error':
        throw this.save(key, unknown503());
      case 'commit_then_error':
        this.capture(rec);
        throw this.save(key, new ProviderError('unknown', 'HTTP_502', 'provider returned 502', { httpStatus: 502 }));
      case 'reset_after_commit':
        this.save(key, this.capture(rec));
        throw new ProviderError('unknown', 'NETWORK_ERROR', 'socket hang up');
      case 'timeout_committed':
        this.save(key, this.capture(rec));
        throw new ProviderError('unknown', 'TIMEOUT', 'no answer in time');
      case 'timeout_not_committed':
        throw new ProviderError('unknown', 'TIMEOUT', 'no answer in time');
      case 'late':
        rec.locked = true;
        this.pendingLate.push(() => {
          rec.locked = false;
          if (rec.intent.status === 'requires_payment_method' || rec.intent.status === 'requires_confirmation') this.save(key, this.capture(rec));
        });
        throw new ProviderError('unknown', 'TIMEOUT', 'no answer in time');
      case 'rate_limited':
        throw new ProviderError('throttled', 'rate_limit', 'too many requests', { retryAfterMs: 2000, httpStatus: 429 });
      case 'auth_error':
        throw new ProviderError('outage', 'authentication_error', 'invalid API key', { httpStatus: 401 });
    }
  }

  async retrieveIntent(intentId: string): Promise<ProviderIntent> {
    this.calls.push({ op: 'retrieve', id: intentId });
    await tick();
    if (this.failReads) throw this.failReads;
    return this.visible(this.record(intentId));
  }

  /** Search by metadata: every intent carrying this payment id (as far as the lagging index shows). */
  async findIntentsForPayment(paymentId: string): Promise<ProviderIntent[]> {
    this.calls.push({ op: 'search', id: paymentId });
    await tick();
    if (this.failReads) throw this.failReads;
    return [...this.intents.values()].filter((r) => r.intent.paymentId === paymentId && this.seen(r)).map((r) => this.visible(r));
  }

  async cancelIntent(intentId: string, _paymentId: string): Promise<ProviderIntent> {
    // A key per call, as the adapter does: a saved 5xx under one call's key never blocks the next.
    const key = cancelIdempotencyKey(intentId, String(++this.cancels));
    this.calls.push({ op: 'cancel', id: intentId, key });
    await tick();
    if (this.failCancels) throw this.failCancels;
    const replay = this.saved(key);
    if (replay) {
      if (replay.fingerprint !== `cancel|${intentId}`) throw new ProviderError('rejected', 'idempotency_error', 'key reused with other parameters', { httpStatus: 400 });
      return this.replayed(replay.result) as ProviderIntent;
    }
    const rec = this.record(intentId);
    if (rec.locked) throw new ProviderError('throttled', 'lock_timeout', 'another request is using this intent', { httpStatus: 429 });
    if (rec.intent.status === 'succeeded' || rec.intent.status === 'canceled' || rec.intent.status === 'processing') {
      throw new ProviderError('rejected', 'payment_intent_unexpected_state', `intent is ${rec.intent.status}`, { intent: rec.intent, httpStatus: 400 });
    }
    const b = this.cancelBehaviour(intentId, this.bump(`cancel:${intentId}`));
    if (b === 'error') throw this.save(key, unknown503(), `cancel|${intentId}`);
    this.update(rec, { ...rec.intent, status: 'canceled' });
    if (b === 'commit_then_error') throw this.save(key, unknown503(), `cancel|${intentId}`);
    return this.save(key, rec.intent, `cancel|${intentId}`) as ProviderIntent;
  }

  async refund(req: RefundRequest): Promise<ProviderRefund> {
    const key = refundIdempotencyKey(req.refundId, req.keyGeneration);
    this.calls.push({ op: 'refund', id: req.intentId, key });
    await tick();
    return this.idempotent(key, `${req.intentId}|${req.amountMinor}`, () => {
      const rec = this.record(req.intentId);
      if (rec.intent.status !== 'succeeded') throw new ProviderError('rejected', 'payment_intent_unexpected_state', 'nothing captured to refund', { httpStatus: 400 });
      const net = rec.intent.amountReceived - (rec.intent.amountRefunded ?? 0);
      if (net <= 0) throw new ProviderError('rejected', 'charge_already_refunded', 'already refunded', { httpStatus: 400 });
      const amount = req.amountMinor;
      if (amount > net) throw new ProviderError('rejected', 'amount_too_large', 'more than what remains', { httpStatus: 400 });
      const b = this.refundBehaviour(req, this.bump(`refund:${req.intentId}`));
      if (b === 'error') throw unknown503();
      const refund: ProviderRefund = {
        id: `re_${++this.seq}`,
        intentId: rec.intent.id,
        amountMinor: amount,
        currency: rec.intent.currency,
        status: b === 'pending' ? 'pending' : 'succeeded',
        refundId: req.refundId,
      };
      this.refunds.set(refund.id, refund);
      this.update(rec, { ...rec.intent, amountRefunded: (rec.intent.amountRefunded ?? 0) + amount });
      if (refund.status === 'succeeded') this.ledger.push({ paymentId: rec.intent.paymentId, intentId: rec.intent.id, status: 'refunded', amountMinor: amount });
      if (b === 'commit_then_error') throw unknown503();
      return refund;
    }) as ProviderRefund;
  }

  /** The refunds of an intent, newest first (a list, not a search: no lag). */
  async listRefunds(intentId: string): Promise<ProviderRefund[]> {
    this.calls.push({ op: 'list_refunds', id: intentId });
    await tick();
    if (this.failReads) throw this.failReads;
    return [...this.refunds.values()].filter((r) => r.intentId === intentId).reverse();
  }

  async retrieveRefund(refundId: string): Promise<ProviderRefund> {
    this.calls.push({ op: 'retrieve_refund', id: refundId });
    await tick();
    if (this.failReads) throw this.failReads;
    const r = this.refunds.get(refundId);
    if (!r) throw new ProviderError('rejected', 'resource_missing', `no such refund ${refundId}`, { httpStatus: 404 });
    return r;
  }

  async listIntents(q: { from: Date; to: Date; startingAfter?: string; limit?: number }): Promise<IntentPage> {
    this.calls.push({ op: 'list' });
    await tick();
    if (this.failReads) throw this.failReads;
    const all = [...this.intents.values()]
      .filter((r) => this.seen(r))
      .map((r) => this.visible(r))
      .filter((i) => i.created * 1000 >= q.from.getTime() && i.created * 1000 < q.to.getTime());
    const start = q.startingAfter ? all.findIndex((i) => i.id === q.startingAfter) + 1 : 0;
    const limit = q.limit ?? 100;
    const intents = all.slice(start, start + limit);
    return { intents, ...(start + limit < all.length ? { nextCursor: intents[intents.length - 1]!.id } : {}) };
  }

  // ---- Test controls ------------------------------------------------------------------------------

  /** Lands every late commit now (each succeeds only if its intent is still confirmable). */
  landLate(): void {
    for (const land of this.pendingLate.splice(0)) land();
  }

  /** Ends a processing intent: captured, or declined back to requires_payment_method. */
  endProcessing(intentId: string, outcome: 'succeed' | 'fail'): void {
    const rec = this.record(intentId);
    if (rec.intent.status !== 'processing') throw new Error(`fake provider: ${intentId} is ${rec.intent.status}, not processing`);
    if (outcome === 'succeed') this.capture(rec);
    else this.update(rec, { ...rec.intent, status: 'requires_payment_method', lastError: { code: 'card_declined', message: 'declined', declineCode: 'generic_decline' } });
  }

  /** Ends a pending refund; a failed one gives the amount back to the charge. */
  endRefund(refundId: string, status: 'succeeded' | 'failed'): void {
    const r = this.refunds.get(refundId);
    if (!r || r.status !== 'pending') throw new Error(`fake provider: refund ${refundId} is not pending`);
    this.refunds.set(refundId, { ...r, status });
    const rec = this.record(r.intentId);
    if (status === 'failed') this.update(rec, { ...rec.intent, amountRefunded: (rec.intent.amountRefunded ?? 0) - r.amountMinor });
    else this.ledger.push({ paymentId: rec.intent.paymentId, intentId: rec.intent.id, status: 'refunded', amountMinor: r.amountMinor });
  }

  /**
   * An intent another integration on the same account made (Checkout, Billing, another stage): our
   * `tag` only when given. Captured when `captured`.
   */
  createForeignIntent(o: { amountMinor?: number; currency?: string; paymentId?: string; service?: string; stage?: string; captured?: boolean } = {}): string {
    const intent = this.newIntent({
      paymentId: o.paymentId ?? '',
      amountMinor: o.amountMinor ?? 2000,
      currency: o.currency ?? 'USD',
      ...(o.service !== undefined ? { service: o.service } : {}),
      ...(o.stage !== undefined ? { stage: o.stage } : {}),
    });
    if (o.captured ?? true) this.forceCapture(intent.id);
    return intent.id;
  }

  /** Net captured minor units per payment (captures minus refunds). */
  netCaptured(paymentId: string): number {
    return this.ledger.filter((e) => e.paymentId === paymentId).reduce((sum, e) => sum + (e.status === 'succeeded' ? e.amountMinor : -e.amountMinor), 0);
  }

  /** Net captured minor units of one intent. */
  netOfIntent(intentId: string): number {
    return this.ledger.filter((e) => e.intentId === intentId).reduce((sum, e) => sum + (e.status === 'succeeded' ? e.amountMinor : -e.amountMinor), 0);
  }

  captures(paymentId: string): number {
    return this.ledger.filter((e) => e.paymentId === paymentId && e.status === 'succeeded').length;
  }

  count(op: CallKind): number {
    return this.calls.filter((c) => c.op === op).length;
  }

  /** Makes an intent succeed out of band (e.g. a capture no payment knows about). */
  forceCapture(intentId: string): void {
    this.capture(this.record(intentId));
  }

  // ---- Internals ----------------------------------------------------------------------------------

  private newIntent(i: Omit<ProviderIntent, 'id' | 'status' | 'amountReceived' | 'created'>): ProviderIntent {
    const id = `pi_${++this.seq}`;
    const intent = { ...i, id, status: 'requires_payment_method', amountReceived: 0, created: Math.floor(this.now() / 1000) } as ProviderIntent;
    this.intents.set(id, { intent, history: [{ at: this.now(), intent }], locked: false });
    return intent;
  }

  private bump(k: string): number {
    const n = this.counts.get(k) ?? 0;
    this.counts.set(k, n + 1);
    return n;
  }

  private record(intentId: string): IntentRecord {
    const rec = this.intents.get(intentId);
    if (!rec) throw new ProviderError('rejected', 'resource_missing', `no such intent ${intentId}`, { httpStatus: 404 });
    return rec;
  }

  private capture(rec: IntentRecord): ProviderIntent {
    if (rec.intent.status === 'succeeded' || rec.intent.status === 'canceled') throw new Error(`fake provider bug: capture of a ${rec.intent.status} intent`);
    const { lastError: _dropped, ...rest } = rec.intent;
    this.update(rec, { ...rest, status: 'succeeded', amountReceived: rec.intent.amountMinor, latestChargeId: `ch_${rec.intent.id}` });
    this.ledger.push({ paymentId: rec.intent.paymentId, intentId: rec.intent.id, status: 'succeeded', amountMinor: rec.intent.amountMinor });
    return rec.intent;
  }

  private update(rec: IntentRecord, next: ProviderIntent): void {
    rec.intent = next;
    rec.history.push({ at: this.now(), intent: next });
  }

  /** Whether a lagging read can see the intent at all (it existed lagMs ago). */
  private seen(rec: IntentRecord): boolean {
    return this.lagMs <= 0 || rec.history[0]!.at <= this.now() - this.lagMs;
  }

  private visible(rec: IntentRecord): ProviderIntent {
    if (this.lagMs <= 0) return rec.intent;
    const cutoff = this.now() - this.lagMs;
    let seen = rec.history[0]!.intent;
    for (const h of rec.history) if (h.at <= cutoff) seen = h.intent;
    return seen;
  }

  /** A saved answer still within the key's retention. */
  private saved(key: string): Saved | undefined {
    const s = this.byKey.get(key);
    if (s && this.now() - s.at >= this.keyTtlMs) {
      this.byKey.delete(key);
      return undefined;
    }
    return s;
  }

  private idempotent(key: string, fingerprint: string, make: () => ProviderIntent | ProviderRefund): ProviderIntent | ProviderRefund {
    const prior = this.saved(key);
    if (prior) {
      if (prior.fingerprint !== fingerprint) throw new ProviderError('rejected', 'idempotency_key_reused', 'key reused with other parameters', { httpStatus: 400 });
      return this.replayed(prior.result);
    }
    try {
      const result = make();
      this.byKey.set(key, { fingerprint, at: this.now(), result });
      return result;
    } catch (err) {
      // Stripe saves the answer of an endpoint that ran, a 5xx included.
      if (err instanceof ProviderError && err.kind === 'unknown') this.byKey.set(key, { fingerprint, at: this.now(), result: err });
      throw err;
    }
  }

  private save<T extends ProviderIntent | ProviderError>(key: string, result: T, fingerprint = ''): T {
    this.byKey.set(key, { fingerprint, at: this.now(), result: result instanceof ProviderError ? result : { ...result } });
    return result;
  }

  /** A replay answers what was saved; a saved error says it is a replay (Stripe's Idempotent-Replayed header). */
  private replayed(result: ProviderIntent | ProviderRefund | ProviderError): ProviderIntent | ProviderRefund {
    if (result instanceof ProviderError) throw new ProviderError(result.kind, result.code, result.message, { ...result.extra, replayed: true } as ProviderError['extra']);
    return result;
  }
}

const unknown503 = () => new ProviderError('unknown', 'HTTP_503', 'provider returned 503', { httpStatus: 503 });

const tick = () => new Promise<void>((r) => setImmediate(r));
