/**
 * PaymentProvider over Stripe PaymentIntents, through the official `stripe` SDK.
 *
 * One intent per payment: created with `intentIdempotencyKey(paymentId, seq, generation)` and metadata
 * `payment_id`, `intent_seq`, and this deployment's tag (`service`, `stage`), confirmed by every attempt under
 * `confirmIdempotencyKey(paymentId, attempt)`. Stripe lets an intent succeed once and never lets a canceled
 * intent succeed; this adapter only translates, it decides nothing.
 *
 * Amounts: our minor units (ISO 4217) go out and come back in Stripe's own units (stripe-amounts.ts: ISK
 * 500 is 50000, MGA 10.00 is 10). Intents are read with their charge expanded (amount_refunded), refunds
 * with theirs. Every error carries `extra.replayed` when Stripe answered from its idempotency store
 * (`Idempotent-Replayed: true`): a saved 5xx is not a fresh outcome.
 *
 * Error mapping (ProviderError.kind), in the order it is checked:
 *   idempotency_error, HTTP 409 (key in flight)             throttled  code idempotency_key_in_use
 *   idempotency_error, other (key reused, other params)      rejected   code from Stripe, else idempotency_error
 *                                                            (a bug on our side, never retried blind)
 *   HTTP 429 (StripeRateLimitError), code lock_timeout        throttled  code lock_timeout / rate_limit,
 *                                                            retryAfterMs from Retry-After when present
 *   HTTP 402 (StripeCardError)                               declined   code (card_declined, expired_card, ...), declineCode
 *                                                            (insufficient_funds, ...), intent attached when present
 *   HTTP 400/404 (StripeInvalidRequestError)                 rejected   code from Stripe (payment_intent_unexpected_state,
 *                                                            resource_missing, ...), intent attached when present
 *   HTTP 401 (StripeAuthenticationError), 403 (Permission)   outage     code from Stripe, else HTTP_<status>
 *   5xx / StripeAPIError / any other status                  unknown    HTTP_<status>
 *   StripeConnectionError: timeout                           unknown    TIMEOUT
 *   StripeConnectionError: reset, refused, body cut off      unknown    NETWORK_ERROR
 *   unparseable body, or an intent without id/status/amount  unknown    INVALID_RESPONSE
 *   anything raised before the request left (a string the    rejected   request_not_sent, extra.notSent
 *   form encoding cannot carry, a client that cannot send):
 *   nothing happened at Stripe, so it is never `unknown`
 *
 * The secret key is an option, never read from the environment here: the wiring fetches it (Powertools
 * Parameters) and passes it in.
 */
import { randomUUID } from 'node:crypto';
import Stripe from 'stripe';
import {
  INTENT_STATUSES,
  ProviderError,
  cancelIdempotencyKey,
  confirmIdempotencyKey,
  intentIdempotencyKey,
  refundIdempotencyKey,
  type CreateIntentRequest,
  type ConfirmIntentRequest,
  type IntentPage,
  type IntentStatus,
  type PaymentProvider,
  type ProviderIntent,
  type ProviderRefund,
  type ProviderRefundStatus,
  type RefundRequest,
  type ServiceTag,
} from '../../core/ports/payment-provider';
import { isWellFormedText } from '../../core/unicode';
import { fromStripeAmount, toStripeAmount } from './stripe-amounts';

/**
 * The API version this adapter was written against. Typed as the SDK's latest version, so an SDK upgrade
 * that changes it fails to compile here and someone re-reads the changelog before the wire format moves.
 */
export const STRIPE_API_VERSION: Stripe.LatestApiVersion = '2026-10-28.endive';

export interface StripeProviderOptions {
  /** Secret key (sk_live_..., sk_test_...). */
  readonly apiKey: string;
  /**
   * Budget in ms for one HTTP call. Default 10000. The SDK applies it as a socket inactivity timeout, so a
   * server that trickles bytes can take longer; a silent one is cut off after this long.
   */
  readonly timeoutMs?: number;
  /** API host; default api.stripe.com. The local simulator is 127.0.0.1. */
  readonly host?: string;
  readonly port?: number;
  /** Default https; http only for the local simulator. */
  readonly protocol?: 'http' | 'https';
  /** Replaces the SDK's HTTP client (tests). */
  readonly httpClient?: Stripe.HttpClient;
  /**
   * This deployment's tag, written on every intent and refund (metadata `service`, `stage`): the
   * reconciler refunds only intents carrying it. Unset only in adapter tests.
   */
  readonly tag?: ServiceTag;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** More intents than this for one payment id would be a bug; search pages hold up to 100. */
const SEARCH_PAGE = 100;
const REFUND_PAGES = 10;
/** Stripe keeps metadata values up to 500 characters. */
const MAX_METADATA_VALUE = 500;

export function createStripeProvider(opts: StripeProviderOptions): PaymentProvider {
  if (!opts.apiKey) throw new Error('Stripe API key is required');
  const timeout = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isInteger(timeout) || timeout <= 0) throw new RangeError('timeoutMs must be a positive integer');

  const stripe = new Stripe(opts.apiKey, {
    apiVersion: STRIPE_API_VERSION,
    timeout,
    // Our own code decides retries: the worker resolves every unclear outcome by retrieving the intent and
    // then confirms under a new attempt key, with backoff and a circuit breaker. SDK retries would hide
    // unclear outcomes and multiply load while the provider struggles. (The SDK still retries a closed
    // connection once, with the same idempotency key; that replay is harmless.)
    maxNetworkRetries: 0,
    telemetry: false,
    ...(opts.host !== undefined ? { host: opts.host } : {}),
    ...(opts.port !== undefined ? { port: opts.port } : {}),
    ...(opts.protocol !== undefined ? { protocol: opts.protocol } : {}),
    ...(opts.httpClient !== undefined ? { httpClient: opts.httpClient } : {}),
  });

  const tag: Record<string, string> = opts.tag ? { service: opts.tag.service, stage: opts.tag.stage } : {};

  /**
   * Runs one SDK call and turns every failure into a ProviderError. `params` are checked first: a string
   * the form encoding cannot carry (a lone UTF-16 surrogate) would make the SDK throw before sending, and
   * that must read as "nothing sent", never as an unclear outcome.
   */
  async function call<T>(what: string, params: unknown, fn: () => Promise<T>): Promise<T> {
    const bad = unsendable(params);
    if (bad) throw new ProviderError('rejected', 'request_not_sent', `${what}: ${bad}`, { notSent: true });
    try {
      return await fn();
    } catch (err) {
      throw toProviderError(err, what);
    }
  }

  return {
    async createIntent(req: CreateIntentRequest): Promise<ProviderIntent> {
      const params = {
        amount: toStripeAmount(req.amountMinor, req.currency),
        currency: req.currency.toLowerCase(),
        // Ours after the tenant's: the API refuses tenant keys that collide with them.
        metadata: { ...req.metadata, payment_id: req.paymentId, intent_seq: String(req.intentSeq ?? 0), ...tag },
        confirm: false,
      };
      const key = intentIdempotencyKey(req.paymentId, req.intentSeq, req.keyGeneration);
      return toIntent(await call('create intent', params, () => stripe.paymentIntents.create(params, { idempotencyKey: key })));
    },

    async confirmIntent(intentId: string, req: ConfirmIntentRequest): Promise<ProviderIntent> {
      const params = { payment_method: req.paymentMethod };
      const key = confirmIdempotencyKey(req.paymentId, req.attempt);
      return toIntent(await call('confirm intent', params, () => stripe.paymentIntents.confirm(intentId, params, { idempotencyKey: key })));
    },

    async retrieveIntent(intentId: string): Promise<ProviderIntent> {
      // The charge is expanded so the intent says how much of the capture was refunded already.
      return toIntent(await call('retrieve intent', intentId, () => stripe.paymentIntents.retrieve(intentId, { expand: ['latest_charge'] })));
    },

    /**
     * Stripe's search index is eventually consistent (Stripe documents a lag of up to about a minute), so
     * an empty answer right after a lost create answer means "not found yet", not "never created". For an
     * intent older than that (past the create key's retention) it is reliable.
     */
    async findIntentsForPayment(paymentId: string): Promise<ProviderIntent[]> {
      const query = `metadata['payment_id']:'${escapeSearchValue(paymentId)}'`;
      const result = await call('search intents', query, () => stripe.paymentIntents.search({ query, limit: SEARCH_PAGE, expand: ['data.latest_charge'] }));
      if (!result || !Array.isArray(result.data)) throw invalid('search intents returned no data list');
      return result.data.map(toIntent).filter((i) => i.paymentId === paymentId);
    },

    async cancelIntent(intentId: string, _paymentId: string): Promise<ProviderIntent> {
      // A key per call: cancelling is naturally idempotent, and a 5xx saved under one key must not block the next.
      const key = cancelIdempotencyKey(intentId, randomUUID().slice(0, 13));
      return toIntent(await call('cancel intent', intentId, () => stripe.paymentIntents.cancel(intentId, {}, { idempotencyKey: key })));
    },

    async refund(req: RefundRequest): Promise<ProviderRefund> {
      const params = {
        payment_intent: req.intentId,
        amount: toStripeAmount(req.amountMinor, req.currency),
        metadata: { refund_id: req.refundId, payment_id: req.paymentId, ...tag, reason: req.reason.slice(0, MAX_METADATA_VALUE) },
      };
      const key = refundIdempotencyKey(req.refundId, req.keyGeneration);
      return toRefund(await call('refund', params, () => stripe.refunds.create(params, { idempotencyKey: key })), req.intentId);
    },

    async retrieveRefund(providerRefundId: string): Promise<ProviderRefund> {
      return toRefund(await call('retrieve refund', providerRefundId, () => stripe.refunds.retrieve(providerRefundId, { expand: ['charge'] })));
    },

    async listRefunds(intentId: string): Promise<ProviderRefund[]> {
      const out: ProviderRefund[] = [];
      let after: string | undefined;
      for (let page = 0; page < REFUND_PAGES; page++) {
        const res = await call('list refunds', intentId, () =>
          stripe.refunds.list({ payment_intent: intentId, limit: 100, ...(after !== undefined ? { starting_after: after } : {}) }),
        );
        if (!res || !Array.isArray(res.data)) throw invalid('list refunds returned no data list');
        out.push(...res.data.map((r) => toRefund(r, intentId)));
        if (!res.has_more || res.data.length === 0) return out;
        after = res.data.at(-1)!.id;
      }
      throw invalid(`intent ${intentId} has more than ${REFUND_PAGES * 100} refunds`);
    },

    /**
     * Stripe lists newest first and offers no ascending order, so pages come newest first; `nextCursor`
     * (`starting_after`) walks toward older intents. `created` is whole seconds: the window is widened to
     * whole seconds (from rounded down, to rounded up), so an intent of the second `to` falls in may appear.
     * The charge is expanded, so each intent says how much was refunded (pending refunds included).
     */
    async listIntents(q): Promise<IntentPage> {
      const params = {
        created: { gte: Math.floor(q.from.getTime() / 1000), lt: Math.ceil(q.to.getTime() / 1000) },
        limit: q.limit ?? 100,
        expand: ['data.latest_charge'],
        ...(q.startingAfter !== undefined ? { starting_after: q.startingAfter } : {}),
      };
      const page = await call('list intents', params, () => stripe.paymentIntents.list(params));
      if (!page || !Array.isArray(page.data)) throw invalid('list intents returned no data list');
      const intents = page.data.map(toIntent);
      const last = intents.at(-1);
      return { intents, ...(page.has_more && last ? { nextCursor: last.id } : {}) };
    },
  };
}

/** Search query values are single-quoted; quotes and backslashes inside are escaped with a backslash. */
function escapeSearchValue(v: string): string {
  return v.replace(/[\\']/g, (c) => `\\${c}`);
}

const invalid = (message: string): ProviderError => new ProviderError('unknown', 'INVALID_RESPONSE', message);

/** Stripe's intent as the core sees it; an intent we cannot read means we do not know what happened. */
export function toIntent(pi: unknown): ProviderIntent {
  if (!pi || typeof pi !== 'object') throw invalid('provider returned no intent');
  const p = pi as Partial<Stripe.PaymentIntent>;
  if (typeof p.id !== 'string' || p.id === '') throw invalid('intent without id');
  if (typeof p.status !== 'string' || !(INTENT_STATUSES as readonly string[]).includes(p.status)) {
    throw invalid(`intent ${p.id} has no readable status`);
  }
  if (typeof p.amount !== 'number' || !Number.isSafeInteger(p.amount)) throw invalid(`intent ${p.id} has no amount`);
  const currency = typeof p.currency === 'string' ? p.currency.toUpperCase() : '';
  const ours = (stripeAmount: number) => fromStripeAmount(stripeAmount, currency);
  const meta = p.metadata ?? {};
  // Stripe's latest_charge is the latest attempt, failed ones included; the port's latestChargeId is the
  // charge that captured, so it is only taken from an intent that captured.
  const captured = p.status === 'succeeded' || p.status === 'requires_capture';
  const charge = captured ? p.latest_charge : null;
  const latestChargeId = typeof charge === 'string' ? charge : charge && typeof charge === 'object' ? charge.id : undefined;
  const amountRefunded = charge && typeof charge === 'object' && typeof charge.amount_refunded === 'number' ? ours(charge.amount_refunded) : undefined;
  const lpe = p.last_payment_error;
  const seq = typeof meta.intent_seq === 'string' && /^\d+$/.test(meta.intent_seq) ? Number(meta.intent_seq) : undefined;
  return {
    id: p.id,
    paymentId: typeof meta.payment_id === 'string' ? meta.payment_id : '',
    status: p.status as IntentStatus,
    amountMinor: ours(p.amount),
    currency,
    amountReceived: typeof p.amount_received === 'number' ? ours(p.amount_received) : 0,
    ...(typeof meta.service === 'string' ? { service: meta.service } : {}),
    ...(typeof meta.stage === 'string' ? { stage: meta.stage } : {}),
    ...(seq !== undefined ? { intentSeq: seq } : {}),
    ...(amountRefunded !== undefined ? { amountRefunded } : {}),
    ...(latestChargeId ? { latestChargeId } : {}),
    ...(lpe
      ? {
          lastError: {
            code: lpe.code ?? lpe.type ?? 'unknown',
            message: lpe.message ?? '',
            ...(lpe.decline_code ? { declineCode: lpe.decline_code } : {}),
          },
        }
      : {}),
    created: typeof p.created === 'number' ? p.created : 0,
  };
}

const REFUND_STATUSES: readonly string[] = ['pending', 'requires_action', 'succeeded', 'failed', 'canceled'];

/** Stripe's refund as the core sees it, in our minor units. */
export function toRefund(raw: unknown, intentId?: string): ProviderRefund {
  if (!raw || typeof raw !== 'object') throw invalid('provider returned no refund');
  const r = raw as Partial<Stripe.Refund>;
  if (typeof r.id !== 'string' || typeof r.amount !== 'number' || typeof r.currency !== 'string') throw invalid('refund without id, amount or currency');
  if (typeof r.status !== 'string' || !REFUND_STATUSES.includes(r.status)) throw invalid(`refund ${r.id} has no readable status`);
  const currency = r.currency.toUpperCase();
  const pi = typeof r.payment_intent === 'string' ? r.payment_intent : r.payment_intent?.id;
  return {
    id: r.id,
    intentId: pi ?? intentId ?? '',
    amountMinor: fromStripeAmount(r.amount, currency),
    currency,
    status: r.status as ProviderRefundStatus,
    ...(typeof r.metadata?.refund_id === 'string' ? { refundId: r.metadata.refund_id } : {}),
    ...(typeof r.failure_reason === 'string' ? { failureReason: r.failure_reason } : {}),
  };
}

/** Why these request parameters cannot be sent (a string that is not well-formed UTF-16), or undefined. */
function unsendable(v: unknown, path = 'params'): string | undefined {
  if (typeof v === 'string') return isWellFormedText(v) ? undefined : `${path} is not well-formed UTF-16 (a lone surrogate)`;
  if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      const bad = unsendable(k, `${path} key`) ?? unsendable(x, `${path}.${k}`);
      if (bad) return bad;
    }
  }
  return undefined;
}

/** An intent attached to an error, if it can be read; a broken one is dropped rather than hiding the error. */
function attachedIntent(raw: unknown): ProviderIntent | undefined {
  if (!raw) return undefined;
  try {
    return toIntent(raw);
  } catch {
    return undefined;
  }
}

/** Retry-After as delta-seconds or an HTTP date, in ms. */
function retryAfterMs(headers: Record<string, string> | undefined): number | undefined {
  const v = headers?.['retry-after']?.trim();
  if (!v) return undefined;
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** Maps anything the SDK throws to a ProviderError (see the table in the header). */
export function toProviderError(err: unknown, what: string): ProviderError {
  if (err instanceof ProviderError) return err;
  if (!(err instanceof Stripe.errors.StripeError)) {
    // The SDK wraps every failure after the request left (connection, timeout, unreadable answer) in a
    // StripeError; anything else was raised while the request was being built, so nothing was sent.
    const msg = err instanceof Error ? err.message : String(err);
    return new ProviderError('rejected', 'request_not_sent', `${what}: ${msg}`, { notSent: true });
  }
  const status = err.statusCode;
  const httpStatus = { ...(status !== undefined ? { httpStatus: status } : {}), ...(err.headers?.['idempotent-replayed'] === 'true' ? { replayed: true } : {}) };
  const message = `${what}: ${err.message || err.type}`;

  if (err instanceof Stripe.errors.StripeConnectionError) {
    const detail = err.detail as { code?: string } | undefined;
    const timedOut = detail?.code === 'ETIMEDOUT' || /timeout/i.test(err.message);
    return new ProviderError('unknown', timedOut ? 'TIMEOUT' : 'NETWORK_ERROR', message);
  }
  if (status === undefined) {
    // The SDK could not read the answer (invalid JSON): the call may have taken effect.
    return new ProviderError('unknown', 'INVALID_RESPONSE', message);
  }
  if (err.rawType === 'idempotency_error') {
    if (status === 409) {
      return new ProviderError('throttled', err.code ?? 'idempotency_key_in_use', message, { ...httpStatus, ...retryAfter(err) });
    }
    return new ProviderError('rejected', err.code ?? 'idempotency_error', message, httpStatus);
  }
  if (status === 429 || err instanceof Stripe.errors.StripeRateLimitError || err.code === 'lock_timeout') {
    return new ProviderError('throttled', err.code ?? 'rate_limit', message, { ...httpStatus, ...retryAfter(err) });
  }
  if (status === 402 || err instanceof Stripe.errors.StripeCardError) {
    const intent = attachedIntent(err.payment_intent);
    const declineCode = err.decline_code || undefined;
    return new ProviderError('declined', err.code ?? 'card_declined', message, {
      ...httpStatus,
      ...(intent ? { intent } : {}),
      ...(declineCode ? { declineCode } : {}),
    });
  }
  if (status === 401 || status === 403) {
    return new ProviderError('outage', err.code ?? `HTTP_${status}`, message, httpStatus);
  }
  if (status === 400 || status === 404) {
    const intent = attachedIntent(err.payment_intent);
    return new ProviderError('rejected', err.code ?? `HTTP_${status}`, message, { ...httpStatus, ...(intent ? { intent } : {}) });
  }
  return new ProviderError('unknown', `HTTP_${status}`, message, httpStatus);
}

function retryAfter(err: Stripe.errors.StripeError): { retryAfterMs?: number } {
  const ms = retryAfterMs(err.headers);
  return ms !== undefined ? { retryAfterMs: ms } : {};
}
