/**
 * An in-memory payment provider with intents, for unit tests. It can produce every failure a real
 * provider produces, each on purpose:
 *   - confirms that commit and then fail (5xx, reset), that time out committed or not, and late commits
 *     that land after the caller gave up (`late`: held until the test calls `landLate()`), holding the
 *     intent's lock meanwhile like a real provider;
 *   - reads that lag (`lagMs`: retrieve/list show the intent as it was that long ago);
 *   - idempotency keys: a repeated create returns the first intent; a repeated confirm key replays.
 * What it guarantees is what a real provider guarantees: an intent succeeds at most once and a
 * cancelled intent never succeeds. Money movements go to `ledger`, so tests count captures.
 */
import {
  ProviderError,
  type ConfirmIntentRequest,
  type CreateIntentRequest,
  type IntentPage,
  type PaymentProvider,
  type ProviderIntent,
  type ProviderRefund,
  type RefundRequest,
  cancelIdempotencyKey,
  intentIdempotencyKey,
  refundIdempotencyKey,
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
  | 'auth_error';

export type CallKind = 'create' | 'confirm' | 'retrieve' | 'cancel' | 'refund' | 'list';

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

export class FakeIntentProvider implements PaymentProvider {
  readonly intents = new Map<string, IntentRecord>();
  readonly ledger: LedgerEntry[] = [];
  readonly calls: Array<{ op: CallKind; id?: string; key?: string }> = [];
  /** Decides each confirm's fate; `n` counts confirms of that intent so far (0-based). */
  confirmBehaviour: (req: ConfirmIntentRequest, n: number) => ConfirmBehaviour = () => 'succeed';
  /** Retrieves/creates/cancels fail with this until cleared. */
  failReads?: ProviderError;
  failCreates?: ProviderError;
  failCancels?: ProviderError;
  /** Reads show the state as of this long ago. */
  lagMs = 0;
  private readonly byKey = new Map<string, { fingerprint: string; result: ProviderIntent | ProviderRefund | ProviderError }>();
  private readonly confirmsPerIntent = new Map<string, number>();
  private readonly pendingLate: Array<() => void> = [];
  private seq = 0;

  constructor(private readonly now: () => number = Date.now) {}

  // ---- PaymentProvider ----------------------------------------------------------------------------

  async createIntent(req: CreateIntentRequest): Promise<ProviderIntent> {
    const key = intentIdempotencyKey(req.paymentId, req.intentSeq);
    this.calls.push({ op: 'create', key });
    await tick();
    if (this.failCreates) throw this.failCreates;
    return this.idempotent(key, `${req.paymentId}|${req.amountMinor}|${req.currency}`, () => {
      const id = `pi_${++this.seq}`;
      const intent: ProviderIntent = {
        id,
        paymentId: req.paymentId,
        status: 'requires_payment_method',
        amountMinor: req.amountMinor,
        currency: req.currency,
        amountReceived: 0,
        created: Math.floor(this.now() / 1000),
      };
      this.intents.set(id, { intent, history: [{ at: this.now(), intent }], locked: false });
      return intent;
    }) as ProviderIntent;
  }

  async confirmIntent(intentId: string, req: ConfirmIntentRequest): Promise<ProviderIntent> {
    const key = `confirm-${req.paymentId}-${req.attempt}`;
    this.calls.push({ op: 'confirm', id: intentId, key });
    await tick();
    const replay = this.byKey.get(key);
    if (replay) return this.replayed(replay.result) as ProviderIntent;
    const rec = this.record(intentId);
    if (rec.locked) throw new ProviderError('throttled', 'lock_timeout', 'another request is using this intent', { httpStatus: 429 });
    if (rec.intent.status !== 'requires_payment_method' && rec.intent.status !== 'requires_confirmation') {
      throw this.save(key, new ProviderError('rejected', 'payment_intent_unexpected_state', `intent is ${rec.intent.status}`, { intent: rec.intent, httpStatus: 400 }));
    }
    const n = this.confirmsPerIntent.get(intentId) ?? 0;
    this.confirmsPerIntent.set(intentId, n + 1);
    const b = this.confirmBehaviour(req, n);
    switch (b) {
      case 'succeed':
        return this.save(key, this.capture(rec)) as ProviderIntent;
      case 'decline':
      case 'insufficient_funds': {
        const declineCode = b === 'decline' ? 'generic_decline' : 'insufficient_funds';
        this.update(rec, { ...rec.intent, status: 'requires_payment_method', lastError: { code: 'card_declined', message: 'declined', declineCode } });
        throw this.save(key, new ProviderError('declined', 'card_declined', 'Your card was declined.', { intent: rec.intent, declineCode, httpStatus: 402 }));
      }
      case 'error':
        throw new ProviderError('unknown', 'HTTP_503', 'provider returned 503', { httpStatus: 503 });
      case 'commit_then_error':
        this.save(key, this.capture(rec));
        throw new ProviderError('unknown', 'HTTP_502', 'provider returned 502', { httpStatus: 502 });
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

  async findIntentForPayment(paymentId: string): Promise<ProviderIntent | undefined> {
    await tick();
    const rec = [...this.intents.values()].reverse().find((r) => r.intent.paymentId === paymentId);
    return rec ? this.visible(rec) : undefined;
  }

  async cancelIntent(intentId: string, paymentId: string): Promise<ProviderIntent> {
    const key = cancelIdempotencyKey(intentId);
    this.calls.push({ op: 'cancel', id: intentId, key });
    await tick();
    if (this.failCancels) throw this.failCancels;
    // Like a real provider: a key already used for another object is refused.
    const prior = this.byKey.get(key);
    if (prior && prior.fingerprint !== `cancel|${intentId}`) throw new ProviderError('rejected', 'idempotency_error', 'key reused with other parameters', { httpStatus: 400 });
    const rec = this.record(intentId);
    if (rec.locked) throw new ProviderError('throttled', 'lock_timeout', 'another request is using this intent', { httpStatus: 429 });
    if (rec.intent.status === 'succeeded' || rec.intent.status === 'canceled') {
      throw new ProviderError('rejected', 'payment_intent_unexpected_state', `intent is ${rec.intent.status}`, { intent: rec.intent, httpStatus: 400 });
    }
    this.update(rec, { ...rec.intent, status: 'canceled' });
    this.byKey.set(key, { fingerprint: `cancel|${intentId}`, result: rec.intent });
    void paymentId;
    return rec.intent;
  }

  async refund(req: RefundRequest): Promise<ProviderRefund> {
    const key = refundIdempotencyKey(req.intentId, req.amountMinor);
    this.calls.push({ op: 'refund', id: req.intentId, key });
    await tick();
    return this.idempotent(key, `${req.intentId}|${req.amountMinor}`, () => {
      const rec = this.record(req.intentId);
      const net = rec.intent.amountReceived - (rec.intent.amountRefunded ?? 0);
      const amount = Math.min(net, req.amountMinor ?? net);
      this.update(rec, { ...rec.intent, amountRefunded: (rec.intent.amountRefunded ?? 0) + amount });
      this.ledger.push({ paymentId: rec.intent.paymentId, intentId: rec.intent.id, status: 'refunded', amountMinor: amount });
      return { id: `re_${++this.seq}`, intentId: rec.intent.id, amountMinor: amount, currency: rec.intent.currency, status: 'succeeded' };
    }) as ProviderRefund;
  }

  async listIntents(q: { from: Date; to: Date; startingAfter?: string; limit?: number }): Promise<IntentPage> {
    this.calls.push({ op: 'list' });
    await tick();
    const all = [...this.intents.values()]
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

  /** Net captured minor units per payment (captures minus refunds). */
  netCaptured(paymentId: string): number {
    return this.ledger.filter((e) => e.paymentId === paymentId).reduce((sum, e) => sum + (e.status === 'succeeded' ? e.amountMinor : -e.amountMinor), 0);
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

  private visible(rec: IntentRecord): ProviderIntent {
    if (this.lagMs <= 0) return rec.intent;
    const cutoff = this.now() - this.lagMs;
    let seen = rec.history[0]!.intent;
    for (const h of rec.history) if (h.at <= cutoff) seen = h.intent;
    return seen;
  }

  private idempotent(key: string, fingerprint: string, make: () => ProviderIntent | ProviderRefund): ProviderIntent | ProviderRefund {
    const prior = this.byKey.get(key);
    if (prior) {
      if (prior.fingerprint !== fingerprint) throw new ProviderError('rejected', 'idempotency_key_reused', 'key reused with other parameters', { httpStatus: 400 });
      return this.replayed(prior.result);
    }
    const result = make();
    this.byKey.set(key, { fingerprint, result });
    return result;
  }

  private save<T extends ProviderIntent | ProviderError>(key: string, result: T): T {
    this.byKey.set(key, { fingerprint: '', result: result instanceof ProviderError ? result : { ...result } });
    return result;
  }

  private replayed(result: ProviderIntent | ProviderRefund | ProviderError): ProviderIntent | ProviderRefund {
    if (result instanceof ProviderError) throw result;
    return result;
  }
}

const tick = () => new Promise<void>((r) => setImmediate(r));
