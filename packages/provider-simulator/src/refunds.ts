/**
 * Refunds: create, retrieve, list (by payment_intent). As at Stripe, a refund can be `pending` before it
 * ends `succeeded` or `failed` (`refundPendingMs`, `refundFailureRate`); while pending and once succeeded
 * it counts in the charge's amount_refunded, and a failed refund gives the amount back to the charge.
 * The ledger records money when it moves: one `refunded` entry when a refund succeeds.
 */
import { metadataProblem } from './currency-rules';
import { intParam, listParam, stringMap, type Params } from './form';
import type { IntentBook } from './intents';
import type { Runtime } from './runtime';
import type { RefundSnapshot } from './state';
import { apiError, noSuch, paramError, randomId, stripeError, type RefundJson, type Reply } from './stripe-objects';

export class RefundBook {
  private readonly refunds = new Map<string, RefundSnapshot & { seq: number }>();
  private seq = 0;

  constructor(
    private readonly rt: Runtime,
    private readonly intents: IntentBook,
  ) {}

  create(p: Params, key: string | undefined): Reply {
    const id = p.payment_intent;
    if (typeof id !== 'string' || id === '') {
      return stripeError(400, { type: 'invalid_request_error', code: 'parameter_missing', param: 'payment_intent', message: 'Missing required param: payment_intent.' });
    }
    const rec = this.intents.records.get(id);
    if (!rec) return noSuch('payment_intent', id, 'payment_intent');
    const metadata = stringMap(p.metadata);
    if (!metadata) return paramError('metadata', 'metadata must be a map of strings');
    const badMetadata = metadataProblem(metadata);
    if (badMetadata) return badMetadata;
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
    if (amount === undefined || amount < 1) return paramError('amount', 'amount must be a positive integer', 'parameter_invalid_integer');
    if (amount > remaining) {
      return stripeError(
        400,
        { type: 'invalid_request_error', code: 'amount_too_large', param: 'amount', message: `Refund amount (${amount}) is greater than unrefunded amount on charge (${remaining}).` },
        { save: true },
      );
    }
    const f = this.rt.faults;
    const failing = f.hit(f.now.refundErrorRate);
    if (failing && !f.hit(f.now.savedErrorCommitRate)) return apiError('An unknown error occurred (injected refund fault).');

    const fails = f.hit(f.now.refundFailureRate);
    const pendingMs = f.now.refundPendingMs;
    const refund: RefundJson = {
      id: `re_${randomId(24)}`,
      object: 'refund',
      amount,
      currency: intent.currency,
      payment_intent: id,
      charge: intent.latest_charge,
      status: fails || pendingMs > 0 ? 'pending' : 'succeeded',
      failure_reason: null,
      metadata,
      created: Math.floor(Date.now() / 1000),
    };
    const snap: RefundSnapshot & { seq: number } = {
      seq: ++this.seq,
      refund,
      ...(refund.status === 'pending' ? { endsAt: Date.now() + pendingMs, fails } : {}),
      ...(key ? { key } : {}),
    };
    this.refunds.set(refund.id, snap);
    this.intents.adjustRefunded(rec, amount, refund.status === 'succeeded' ? this.ledger(refund, key) : undefined);
    this.persist(snap);
    if (snap.endsAt !== undefined) this.scheduleEnd(snap);
    if (failing) return apiError('An unknown error occurred after the refund was created (injected refund fault).');
    return { status: 200, body: refund, save: true };
  }

  retrieve(id: string, q: Params): Reply {
    const s = this.refunds.get(id);
    if (!s) return noSuch('refund', id, 'refund');
    return { status: 200, body: this.render(s.refund, listParam(q.expand).includes('charge')) };
  }

  /** Newest first; `payment_intent` filters, `starting_after` pages, `limit` 1..100 (default 10). */
  list(q: Params): Reply {
    const limit = q.limit === undefined ? 10 : intParam(q.limit);
    if (limit === undefined || limit < 1 || limit > 100) return paramError('limit', 'limit must be an integer between 1 and 100');
    const intentId = typeof q.payment_intent === 'string' ? q.payment_intent : undefined;
    if (intentId !== undefined && !this.intents.records.has(intentId)) return noSuch('payment_intent', intentId, 'payment_intent');
    const all = [...this.refunds.values()].filter((s) => intentId === undefined || s.refund.payment_intent === intentId).sort((a, b) => b.seq - a.seq);
    let start = 0;
    if (typeof q.starting_after === 'string') {
      const cursor = this.refunds.get(q.starting_after);
      if (!cursor) return noSuch('refund', q.starting_after, 'starting_after');
      start = all.findIndex((s) => s.seq < cursor.seq);
      if (start < 0) start = all.length;
    }
    const expandCharge = listParam(q.expand).includes('data.charge');
    const page = all.slice(start, start + limit);
    return { status: 200, body: { object: 'list', url: '/v1/refunds', data: page.map((s) => this.render(s.refund, expandCharge)), has_more: start + limit < all.length } };
  }

  /** A state event replayed at start. */
  restore(s: RefundSnapshot): void {
    const prior = this.refunds.get(s.refund.id);
    this.refunds.set(s.refund.id, { ...s, seq: prior?.seq ?? ++this.seq });
  }

  /** After a restart: pending refunds end when they were due to. */
  resumePending(): void {
    for (const s of this.refunds.values()) if (s.refund.status === 'pending' && s.endsAt !== undefined) this.scheduleEnd(s);
  }

  clear(): void {
    this.refunds.clear();
    this.seq = 0;
  }

  // ---- internals ----------------------------------------------------------------------------------------

  private render(refund: RefundJson, expandCharge: boolean): RefundJson | Record<string, unknown> {
    if (!expandCharge) return refund;
    const rec = this.intents.records.get(refund.payment_intent);
    const charge = rec ? this.intents.charge({ intent: rec.intent, refunded: rec.refunded }) : undefined;
    return charge ? { ...refund, charge } : refund;
  }

  private ledger(refund: RefundJson, key: string | undefined) {
    const rec = this.intents.records.get(refund.payment_intent)!;
    return this.intents.ledgerEntry(rec.intent, {
      status: 'refunded',
      amountMinor: refund.amount,
      refundId: refund.id,
      ...(refund.charge ? { chargeId: refund.charge } : {}),
      ...(key ? { idempotencyKey: key } : {}),
    });
  }

  private persist(s: RefundSnapshot & { seq: number }): void {
    const { seq: _seq, ...snap } = s;
    this.rt.state.append({ at: Date.now(), refund: snap });
  }

  private scheduleEnd(s: RefundSnapshot & { seq: number }): void {
    this.rt.later(Math.max(0, (s.endsAt ?? 0) - Date.now()), () => {
      if (s.refund.status !== 'pending') return;
      const rec = this.intents.records.get(s.refund.payment_intent)!;
      if (s.fails) {
        s.refund = { ...s.refund, status: 'failed', failure_reason: 'expired_or_canceled_card' };
        this.intents.adjustRefunded(rec, -s.refund.amount);
      } else {
        s.refund = { ...s.refund, status: 'succeeded' };
        this.intents.adjustRefunded(rec, 0, this.ledger(s.refund, s.key));
      }
      delete s.endsAt;
      delete s.fails;
      this.persist(s);
    });
  }
}
