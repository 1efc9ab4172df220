/**
 * Webhook events, as Stripe sends them: every change of an intent or a refund becomes an event object
 * (`{ id: 'evt_…', object: 'event', type, created, data: { object, previous_attributes }, … }`) POSTed as
 * JSON to the configured endpoint with `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
 * "<t>.<body>" under the whsec_ secret>`.
 *
 * Faults (faults.ts): each event waits a random time in [0, webhookDelayMs] (so events arrive late and
 * out of order), is sent twice with webhookDuplicateRate (the copy keeps its event id, as Stripe's
 * redeliveries do) and never with webhookDropRate. The draws come from the sender's own RNG, so turning
 * webhooks on does not change which confirms fail: a run with and without them meets the same provider.
 *
 * A delivery that fails (non-2xx, no answer within 10 s) is tried again a few times with a short
 * backoff; Stripe keeps trying for 3 days. Events are not persisted: a restart forgets undelivered ones.
 */
import { createHmac } from 'node:crypto';
import { mulberry32, type Faults } from './faults';
import type { StateEvent } from './state';
import { randomId, type IntentJson, type RefundJson } from './stripe-objects';

export interface WebhookEndpoint {
  readonly url: string;
  /** The endpoint's signing secret (whsec_…). */
  readonly secret: string;
}

export interface WebhookStats {
  /** Events made (one per change). */
  events: number;
  /** POSTs answered 2xx. */
  delivered: number;
  /** POSTs not answered 2xx (each retry counts). */
  failed: number;
  dropped: number;
  duplicated: number;
}

/** The API version the event objects claim (the adapter's, so the shapes agree). */
const API_VERSION = '2026-10-28.endive';
const ATTEMPTS = 4;
const TIMEOUT_MS = 10_000;

export function signatureHeader(payload: string, secret: string, t = Math.floor(Date.now() / 1000)): string {
  const v1 = createHmac('sha256', secret).update(`${t}.${payload}`, 'utf8').digest('hex');
  return `t=${t},v1=${v1}`;
}

export class WebhookSender {
  private endpoint?: WebhookEndpoint;
  private readonly seen = new Map<string, { status: string; error: string | null }>();
  private readonly rng: () => number;
  private readonly inFlight = new Set<Promise<void>>();
  readonly stats: WebhookStats = { events: 0, delivered: 0, failed: 0, dropped: 0, duplicated: 0 };

  constructor(
    private readonly rt: { readonly faults: Faults; later(ms: number, fn: () => void): void; stopped(): boolean },
    endpoint: WebhookEndpoint | undefined,
    seed?: number,
  ) {
    this.endpoint = endpoint;
    this.rng = mulberry32(seed ?? Math.floor(Math.random() * 2 ** 32));
  }

  /** Where events go from now on; undefined stops sending. */
  setEndpoint(endpoint: WebhookEndpoint | undefined): void {
    this.endpoint = endpoint;
  }

  /** Records an object's state without an event (replayed at start). */
  remember(ev: StateEvent): void {
    if (ev.intent) this.seen.set(ev.intent.intent.id, { status: ev.intent.intent.status, error: ev.intent.intent.last_payment_error?.code ?? null });
    if (ev.refund) this.seen.set(ev.refund.refund.id, { status: ev.refund.refund.status, error: null });
  }

  /** Turns a state change into its events. */
  observe(ev: StateEvent): void {
    if (ev.intent) for (const type of this.intentTypes(ev.intent.intent)) this.emit(type, ev.intent.intent, this.previous);
    if (ev.refund) for (const type of this.refundTypes(ev.refund.refund)) this.emit(type, ev.refund.refund, this.previous);
  }

  /** Waits for deliveries under way (tests). */
  async settled(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private previous: Record<string, unknown> | undefined;

  private intentTypes(i: IntentJson): string[] {
    const before = this.seen.get(i.id);
    const error = i.last_payment_error?.code ?? null;
    this.seen.set(i.id, { status: i.status, error });
    this.previous = before && before.status !== i.status ? { status: before.status } : undefined;
    if (!before) return ['payment_intent.created', ...(i.status === 'requires_payment_method' ? [] : this.intentStatusType(i))];
    if (before.status === i.status && before.error === error) return [];
    return this.intentStatusType(i);
  }

  private intentStatusType(i: IntentJson): string[] {
    switch (i.status) {
      case 'succeeded':
        return ['payment_intent.succeeded'];
      case 'processing':
        return ['payment_intent.processing'];
      case 'requires_action':
        return ['payment_intent.requires_action'];
      case 'canceled':
        return ['payment_intent.canceled'];
      case 'requires_payment_method':
        return i.last_payment_error ? ['payment_intent.payment_failed'] : [];
      default:
        return [];
    }
  }

  private refundTypes(r: RefundJson): string[] {
    const before = this.seen.get(r.id);
    this.seen.set(r.id, { status: r.status, error: null });
    this.previous = before && before.status !== r.status ? { status: before.status } : undefined;
    if (!before) return ['refund.created'];
    if (before.status === r.status) return [];
    return r.status === 'failed' ? ['refund.updated', 'refund.failed', 'charge.refund.updated'] : ['refund.updated', 'charge.refund.updated'];
  }

  private emit(type: string, object: IntentJson | RefundJson, previous: Record<string, unknown> | undefined): void {
    const endpoint = this.endpoint;
    if (!endpoint || this.rt.stopped()) return;
    this.stats.events++;
    const event = {
      id: `evt_${randomId(24)}`,
      object: 'event',
      api_version: API_VERSION,
      created: Math.floor(Date.now() / 1000),
      livemode: false,
      pending_webhooks: 1,
      request: { id: null, idempotency_key: null },
      type,
      data: { object: structuredClone(object), ...(previous ? { previous_attributes: previous } : {}) },
    };
    const f = this.rt.faults.now;
    const hit = (rate: number) => rate > 0 && this.rng() < rate;
    if (hit(f.webhookDropRate)) {
      this.stats.dropped++;
      return;
    }
    const copies = hit(f.webhookDuplicateRate) ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    const body = JSON.stringify(event);
    for (let c = 0; c < copies; c++) this.rt.later(Math.round(this.rng() * f.webhookDelayMs), () => this.track(this.deliver(endpoint, body, 1)));
  }

  private track(p: Promise<void>): void {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  private async deliver(endpoint: WebhookEndpoint, body: string, attempt: number): Promise<void> {
    if (this.rt.stopped()) return;
    let ok = false;
    try {
      const res = await fetch(endpoint.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json; charset=utf-8', 'user-agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)', 'stripe-signature': signatureHeader(body, endpoint.secret) },
        body,
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
      await res.arrayBuffer();
      ok = res.status >= 200 && res.status < 300;
    } catch {
      ok = false;
    }
    if (ok) {
      this.stats.delivered++;
      return;
    }
    this.stats.failed++;
    if (attempt < ATTEMPTS) this.rt.later(500 * 2 ** attempt, () => this.track(this.deliver(endpoint, body, attempt + 1)));
  }
}
