/**
 * Stripe webhook events in: the `Stripe-Signature` header checked by the official SDK
 * (`Stripe.webhooks.constructEvent`: HMAC-SHA256 of `<t>.<raw body>` with the endpoint's `whsec_`
 * secret, any `v1` of the header matching, `t` within the tolerance, 300 s by default), then the event
 * read into what the core needs (core/provider-events.ts). The signature is over the exact bytes Stripe
 * sent: pass the body as received (base64-decoded when API Gateway encoded it), never re-serialized JSON.
 *
 * Which events name what:
 *   payment_intent.* (but .created)           the intent; metadata payment_id, service, stage (a new
 *                                             intent has no outcome to resolve: not acted on)
 *   charge.* (but refunds)                    the charge; Stripe copies the intent's metadata onto it
 *   refund.created|updated|failed,
 *   charge.refund.updated                     the refund; metadata refund_id, service, stage
 *   charge.refunded                           the charge, with its refunds when Stripe includes them
 */
import Stripe from 'stripe';
import type { ProviderEvent, ProviderEventObject } from '../../core/provider-events';

/** The header was missing, malformed, did not match the secret, or was too old. */
export class WebhookSignatureError extends Error {
  override readonly name = 'WebhookSignatureError';
}

export interface VerifyOptions {
  /** Seconds a signature stays acceptable. Default: the SDK's (300 s). */
  readonly toleranceSeconds?: number;
  /** Now, in epoch seconds (tests). */
  readonly nowSeconds?: number;
}

/** Verifies and reads one event. Throws WebhookSignatureError when it cannot be trusted. */
export function verifyStripeEvent(rawBody: string | Buffer, header: string | undefined, secret: string, opts: VerifyOptions = {}): ProviderEvent {
  if (!header) throw new WebhookSignatureError('no Stripe-Signature header');
  let event: unknown;
  try {
    event = Stripe.webhooks.constructEvent(rawBody, header, secret, opts.toleranceSeconds, undefined, opts.nowSeconds);
  } catch (err) {
    throw new WebhookSignatureError((err as Error).message);
  }
  return readEvent(event);
}

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {});
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const idOf = (v: unknown): string | undefined => str(v) ?? str(obj(v).id);

const REFUND_EVENTS = new Set(['refund.created', 'refund.updated', 'refund.failed', 'charge.refund.updated']);

function tagOf(o: Json) {
  const m = obj(o.metadata);
  const service = str(m.service);
  const stage = str(m.stage);
  return { ...(service ? { service } : {}), ...(stage ? { stage } : {}) };
}

function refundOf(o: Json): Extract<ProviderEventObject, { kind: 'refund' }> {
  const refundId = str(obj(o.metadata).refund_id);
  return { kind: 'refund', providerRefundId: str(o.id) ?? '', ...(refundId ? { refundId } : {}), ...tagOf(o) };
}

function intentOf(o: Json, intentId: string | undefined): ProviderEventObject {
  const paymentId = str(obj(o.metadata).payment_id);
  return { kind: 'intent', ...(intentId ? { intentId } : {}), ...(paymentId ? { paymentId } : {}), ...tagOf(o) };
}

/** The event's id, type and object (a verified event is Stripe's, so its shape is Stripe's). */
export function readEvent(raw: unknown): ProviderEvent {
  const e = obj(raw);
  const type = str(e.type) ?? '';
  const o = obj(obj(e.data).object);
  let object: ProviderEventObject = { kind: 'other' };
  if (type.startsWith('payment_intent.') && type !== 'payment_intent.created' && o.object === 'payment_intent') object = intentOf(o, str(o.id));
  else if (REFUND_EVENTS.has(type) && o.object === 'refund') object = refundOf(o);
  else if (type === 'charge.refunded' && o.object === 'charge') {
    const refunds = Array.isArray(obj(o.refunds).data) ? (obj(o.refunds).data as unknown[]) : [];
    object = { kind: 'refunds', refunds: refunds.map((r) => refundOf(obj(r))) };
  } else if (type.startsWith('charge.') && o.object === 'charge') object = intentOf(o, idOf(o.payment_intent));
  return { id: str(e.id) ?? '', type, created: typeof e.created === 'number' ? e.created : 0, object };
}
