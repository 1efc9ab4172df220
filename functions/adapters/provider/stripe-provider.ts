/**
 * PaymentProvider over Stripe PaymentIntents, through the official `stripe` SDK.
 *
 * One intent per payment: created with `intentIdempotencyKey(paymentId)` and `metadata.payment_id`, confirmed
 * by every attempt under `confirmIdempotencyKey(paymentId, attempt)`. Stripe lets an intent succeed once and
 * never lets a canceled intent succeed; this adapter only translates, it decides nothing.
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
 *
 * The secret key is an option, never read from the environment here: the wiring fetches it (Powertools
 * Parameters) and passes it in.
 */
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
  type RefundRequest,
} from '../../core/ports/payment-provider';

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
}

const DEFAULT_TIMEOUT_MS = 10_000;
const SEARCH_PAGE = 10;

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

  /** Runs one SDK call and turns every failure into a ProviderError. */
  async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toProviderError(err, what);
    }
  }

  return {
    async createIntent(req: CreateIntentRequest): Promise<ProviderIntent> {
      const pi = await call('create intent', () =>
        stripe.paymentIntents.create(
          {
            amount: req.amountMinor,
            currency: req.currency.toLowerCase(),
            metadata: { ...req.metadata, payment_id: req.paymentId },
            confirm: false,
          },
          { idempotencyKey: intentIdempotencyKey(req.paymentId, req.intentSeq) },
        ),
      );
      return toIntent(pi);
    },

    async confirmIntent(intentId: string, req: ConfirmIntentRequest): Promise<ProviderIntent> {
      const pi = await call('confirm intent', () =>
        stripe.paymentIntents.confirm(
          intentId,
          { payment_method: req.paymentMethod },
          { idempotencyKey: confirmIdempotencyKey(req.paymentId, req.attempt) },
        ),
      );
      return toIntent(pi);
    },

    async retrieveIntent(intentId: string): Promise<ProviderIntent> {
      // The charge is expanded so the intent says how much of the capture was refunded already.
      return toIntent(await call('retrieve intent', () => stripe.paymentIntents.retrieve(intentId, { expand: ['latest_charge'] })));
    },

    /**
     * Stripe's search index is eventually consistent (Stripe documents a lag of up to about a minute), so
     * `undefined` right after a lost create answer means "not found yet", not "never created". The create
     * key replays the intent for 24 h, which is the reliable way back to it.
     */
    async findIntentForPayment(paymentId: string): Promise<ProviderIntent | undefined> {
      const result = await call('search intents', () =>
        stripe.paymentIntents.search({ query: `metadata['payment_id']:'${escapeSearchValue(paymentId)}'`, limit: SEARCH_PAGE }),
      );
      if (!result || !Array.isArray(result.data)) throw invalid('search intents returned no data list');
      // One create key per payment means one intent; if keys expired and a second one exists, the oldest wins
      // (the caller cancels strays through the reconciler).
      const intents = result.data.map(toIntent).filter((i) => i.paymentId === paymentId);
      intents.sort((a, b) => a.created - b.created || a.id.localeCompare(b.id));
      return intents[0];
    },

    async cancelIntent(intentId: string, paymentId: string): Promise<ProviderIntent> {
      const pi = await call('cancel intent', () =>
        stripe.paymentIntents.cancel(intentId, {}, { idempotencyKey: cancelIdempotencyKey(intentId) }),
      );
      return toIntent(pi);
    },

    async refund(req: RefundRequest): Promise<ProviderRefund> {
      const r = await call('refund', () =>
        stripe.refunds.create(
          {
            payment_intent: req.intentId,
            ...(req.amountMinor !== undefined ? { amount: req.amountMinor } : {}),
            metadata: { payment_id: req.paymentId, reason: req.reason },
          },
          { idempotencyKey: refundIdempotencyKey(req.intentId, req.amountMinor) },
        ),
      );
      if (!r || typeof r.id !== 'string' || typeof r.amount !== 'number' || typeof r.currency !== 'string') {
        throw invalid('refund without id, amount or currency');
      }
      return {
        id: r.id,
        intentId: typeof r.payment_intent === 'string' ? r.payment_intent : r.payment_intent?.id ?? req.intentId,
        amountMinor: r.amount,
        currency: r.currency.toUpperCase(),
        status: r.status ?? 'pending',
      };
    },

    /**
     * Stripe lists newest first and offers no ascending order, so pages come newest first; `nextCursor`
     * (`starting_after`) walks toward older intents. `created` is whole seconds: the window is widened to
     * whole seconds (from rounded down, to rounded up), so an intent of the second `to` falls in may appear.
     */
    async listIntents(q): Promise<IntentPage> {
      const page = await call('list intents', () =>
        stripe.paymentIntents.list({
          created: { gte: Math.floor(q.from.getTime() / 1000), lt: Math.ceil(q.to.getTime() / 1000) },
          limit: q.limit ?? 100,
          ...(q.startingAfter !== undefined ? { starting_after: q.startingAfter } : {}),
        }),
      );
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
  // Stripe's latest_charge is the latest attempt, failed ones included; the port's latestChargeId is the
  // charge that captured, so it is only taken from an intent that captured.
  const captured = p.status === 'succeeded' || p.status === 'requires_capture';
  const charge = captured ? p.latest_charge : null;
  const latestChargeId = typeof charge === 'string' ? charge : charge && typeof charge === 'object' ? charge.id : undefined;
  const amountRefunded = charge && typeof charge === 'object' && typeof charge.amount_refunded === 'number' ? charge.amount_refunded : undefined;
  const lpe = p.last_payment_error;
  return {
    id: p.id,
    paymentId: typeof p.metadata?.payment_id === 'string' ? p.metadata.payment_id : '',
    status: p.status as IntentStatus,
    amountMinor: p.amount,
    currency: typeof p.currency === 'string' ? p.currency.toUpperCase() : '',
    amountReceived: typeof p.amount_received === 'number' ? p.amount_received : 0,
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
    const msg = err instanceof Error ? err.message : String(err);
    return new ProviderError('unknown', 'NETWORK_ERROR', `${what}: ${msg}`);
  }
  const status = err.statusCode;
  const httpStatus = status !== undefined ? { httpStatus: status } : {};
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
