/**
 * What a provider event (a verified webhook) makes the service do: queue a resolve of the payment or
 * refund it names, and nothing else. The event's body is a hint, never the truth:
 *   - it only picks which of our objects to look at now; the worker then reads the provider (resolve.ts,
 *     refund-processor.ts) and writes through the same conditional, versioned transitions as always, so a
 *     duplicate, late or out-of-order event can at most cost one provider read;
 *   - only objects tagged by this service and stage are ours (metadata `service`, `stage`): events about
 *     other integrations' intents on the same account are acknowledged and ignored, never acted on;
 *   - nothing here calls the provider or changes a payment, so the answer is fast (Stripe wants a 2xx
 *     within seconds) and a lost message only costs speed: the reconciler still finds the payment.
 */
import type { Payment } from './payment';
import { isTerminal } from './payment';
import type { Clock, Logger, Metrics, PaymentQueue } from './ports';
import { isOurs, type ServiceTag } from './ports/payment-provider';
import type { Refund } from './refund';

/** The object a provider event is about, as far as the event's body says. */
export type ProviderEventObject =
  /** A payment intent (payment_intent.*), or a charge of one (charge.*): its metadata names our payment. */
  | { readonly kind: 'intent'; readonly intentId?: string; readonly paymentId?: string; readonly service?: string; readonly stage?: string }
  /** A refund (refund.*, charge.refund.updated): its metadata names our refund record. */
  | { readonly kind: 'refund'; readonly providerRefundId: string; readonly refundId?: string; readonly service?: string; readonly stage?: string }
  /** A charge's refunds, as charge.refunded lists them. */
  | { readonly kind: 'refunds'; readonly refunds: readonly Extract<ProviderEventObject, { kind: 'refund' }>[] }
  /** A type the service does not act on. */
  | { readonly kind: 'other' };

export interface ProviderEvent {
  readonly id: string;
  readonly type: string;
  /** Epoch seconds. */
  readonly created: number;
  readonly object: ProviderEventObject;
}

export type ProviderEventOutcome = 'resolve_payment' | 'resolve_refund' | 'not_ours' | 'unknown_type' | 'unknown_object' | 'final' | 'no_reference';

export interface ProviderEventDeps {
  readonly payments: { get(id: string): Promise<Payment | undefined> };
  readonly refunds: { get(id: string): Promise<Refund | undefined> };
  readonly queue: PaymentQueue;
  readonly tag: ServiceTag;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly clock?: Clock;
}

/**
 * A payment whose attempt is under way when its event arrives is resolved this much later. Stripe sends
 * `payment_intent.succeeded` as the confirm returns, so the event usually beats the worker's own write by
 * milliseconds: resolving at once would cost a provider read per payment (against the account's rate
 * limit) to learn what the worker is about to write. After the wait the payment is usually final and the
 * message is dropped without a provider call; a worker that is really stuck is still resolved within
 * seconds, long before its lease or the reconciler.
 */
export const OWNER_GRACE_SECONDS = 2;

/** The message reason the worker logs for resolves a provider event asked for. */
export const PROVIDER_EVENT_REASON = 'provider_event';

export function providerEventHandler(deps: ProviderEventDeps) {
  const log = deps.logger;

  const payment = async (e: ProviderEvent, o: Extract<ProviderEventObject, { kind: 'intent' }>): Promise<ProviderEventOutcome> => {
    if (!isOurs(o, deps.tag)) return 'not_ours';
    if (!o.paymentId) return 'no_reference';
    const p = await deps.payments.get(o.paymentId);
    if (!p) return 'unknown_object';
    if (isTerminal(p.status)) return 'final';
    const now = (deps.clock ?? (() => new Date()))().getTime();
    const delaySeconds = p.status === 'processing' && p.leaseUntil !== undefined && p.leaseUntil > now ? OWNER_GRACE_SECONDS : 0;
    await deps.queue.send({ paymentId: p.id, reason: PROVIDER_EVENT_REASON, resolveOnly: true }, delaySeconds);
    log.info('provider event: payment resolve queued', { eventId: e.id, type: e.type, paymentId: p.id, status: p.status, delaySeconds });
    return 'resolve_payment';
  };

  const refund = async (e: ProviderEvent, o: Extract<ProviderEventObject, { kind: 'refund' }>): Promise<ProviderEventOutcome> => {
    if (!isOurs(o, deps.tag)) return 'not_ours';
    if (!o.refundId) return 'no_reference';
    const r = await deps.refunds.get(o.refundId);
    if (!r) return 'unknown_object';
    if (r.status !== 'pending') return 'final';
    await deps.queue.send({ refundId: r.id, reason: PROVIDER_EVENT_REASON });
    log.info('provider event: refund resolve queued', { eventId: e.id, type: e.type, refundId: r.id, providerRefundId: o.providerRefundId });
    return 'resolve_refund';
  };

  const outcomesOf = async (e: ProviderEvent): Promise<ProviderEventOutcome[]> => {
    const o = e.object;
    switch (o.kind) {
      case 'intent':
        return [await payment(e, o)];
      case 'refund':
        return [await refund(e, o)];
      case 'refunds':
        return o.refunds.length === 0 ? ['no_reference'] : Promise.all(o.refunds.map((r) => refund(e, r)));
      case 'other':
        return ['unknown_type'];
    }
  };

  /** Handles one verified event; every outcome is acknowledged (the caller answers 200). */
  return async (e: ProviderEvent): Promise<readonly ProviderEventOutcome[]> => {
    const outcomes = await outcomesOf(e);
    for (const outcome of outcomes) {
      deps.metrics.count('ProviderEvents', 1, { outcome });
      if (!outcome.startsWith('resolve_')) log.debug('provider event ignored', { eventId: e.id, type: e.type, outcome });
    }
    return outcomes;
  };
}

export type ProviderEventHandler = ReturnType<typeof providerEventHandler>;
