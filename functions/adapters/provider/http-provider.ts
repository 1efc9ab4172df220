/**
 * PaymentProvider over the provider simulator's HTTP API (packages/provider-simulator/src/provider-simulator.ts).
 *
 * Wire format:
 *   POST /v1/charges                  body ChargeRequest, header Idempotency-Key
 *     2xx  { chargeId, status: 'succeeded', ... }                → succeeded
 *     402  { error: { code, message } }                          → declined (CARD_DECLINED, INSUFFICIENT_FUNDS)
 *     429  { error }, Retry-After                                → retryable_error
 *     5xx  { error }, Retry-After?                               → retryable_error
 *     other 4xx { error: { code, message } }                     → declined with that code (INVALID_TOKEN, ...)
 *     timeout / abort / network failure / unreadable 2xx body   → unknown
 *   GET /v1/charges/:idempotencyKey
 *     200  { chargeId, status: 'succeeded' | 'declined', code?, message? } → found
 *     404                                                         → not found
 *     anything else                                               → rejects with ProviderLookupError
 */
import {
  ProviderLookupError,
  type ChargeRequest,
  type ChargeResult,
  type LookupResult,
  type PaymentProvider,
  type RecordedChargeResult,
  type SettledCharge,
} from '../../core/provider';

export interface HttpProviderOptions {
  /** e.g. http://127.0.0.1:4010 */
  readonly baseUrl: string;
  /** Budget for one provider call, including reading the response body. */
  readonly timeoutMs: number;
  /** Defaults to the global fetch. */
  readonly fetchImpl?: typeof fetch;
}

interface ErrorBody {
  error?: { code?: unknown; message?: unknown };
}

type Json = Record<string, unknown> & ErrorBody;

export function createHttpProvider(opts: HttpProviderOptions): PaymentProvider {
  if (!Number.isFinite(opts.timeoutMs) || opts.timeoutMs <= 0) throw new RangeError('timeoutMs must be a positive number');
  const baseUrl = opts.baseUrl.replace(/\/+$/, '');
  const doFetch = opts.fetchImpl ?? fetch;

  /** One request with its own deadline; the body is read under the same deadline. */
  async function call(path: string, init: RequestInit): Promise<{ status: number; headers: Headers; body: Json | undefined }> {
    const res = await doFetch(`${baseUrl}${path}`, { ...init, signal: AbortSignal.timeout(opts.timeoutMs) });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: parseJson(text) };
  }

  return {
    async charge(req: ChargeRequest): Promise<ChargeResult> {
      let res: Awaited<ReturnType<typeof call>>;
      try {
        res = await call('/v1/charges', {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json', 'idempotency-key': req.idempotencyKey },
          body: JSON.stringify({
            idempotencyKey: req.idempotencyKey,
            paymentId: req.paymentId,
            amountMinor: req.amountMinor,
            currency: req.currency,
            token: req.token,
            ...(req.metadata ? { metadata: req.metadata } : {}),
          }),
        });
      } catch (err) {
        return unknownFromError(err);
      }
      const { status, headers, body } = res;

      if (status >= 200 && status < 300) {
        const chargeId = body?.chargeId;
        if (typeof chargeId === 'string' && chargeId !== '' && (body?.status === undefined || body.status === 'succeeded')) {
          return { outcome: 'succeeded', chargeId };
        }
        // The provider accepted the request but we cannot read what it did: the charge may exist.
        return { outcome: 'unknown', code: 'INVALID_RESPONSE', message: `provider returned ${status} without a charge id` };
      }
      if (status === 429 || status >= 500) {
        const retryAfterMs = parseRetryAfter(headers.get('retry-after'));
        return {
          outcome: 'retryable_error',
          code: errorCode(body) ?? (status === 429 ? 'RATE_LIMITED' : 'PROVIDER_UNAVAILABLE'),
          message: errorMessage(body) ?? `provider returned ${status}`,
          ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
        };
      }
      if (status >= 400) {
        return {
          outcome: 'declined',
          code: errorCode(body) ?? (status === 402 ? 'CARD_DECLINED' : `HTTP_${status}`),
          message: errorMessage(body) ?? `provider returned ${status}`,
        };
      }
      // 1xx/3xx: not part of the API; nothing says whether it charged.
      return { outcome: 'unknown', code: 'INVALID_RESPONSE', message: `unexpected provider status ${status}` };
    },

    async lookup(idempotencyKey: string): Promise<LookupResult> {
      let res: Awaited<ReturnType<typeof call>>;
      try {
        res = await call(`/v1/charges/${encodeURIComponent(idempotencyKey)}`, {
          method: 'GET',
          headers: { accept: 'application/json' },
        });
      } catch (err) {
        const u = unknownFromError(err);
        throw new ProviderLookupError(u.code, `lookup failed: ${u.message}`);
      }
      const { status, headers, body } = res;
      if (status === 404) return { found: false };
      if (status === 200) {
        const result = recordedResult(body);
        if (result) return { found: true, result };
        throw new ProviderLookupError('INVALID_RESPONSE', 'lookup returned an unreadable charge record');
      }
      throw new ProviderLookupError(
        errorCode(body) ?? (status === 429 ? 'RATE_LIMITED' : 'PROVIDER_UNAVAILABLE'),
        `lookup failed with status ${status}${errorMessage(body) ? `: ${errorMessage(body)}` : ''}`,
        parseRetryAfter(headers.get('retry-after')),
      );
    },

    async listCharges(from: Date, to: Date): Promise<SettledCharge[]> {
      const { status, body } = await call('/v1/ledger', { method: 'GET', headers: { accept: 'application/json' } });
      if (status !== 200 || !body || typeof body !== 'object' || !Array.isArray((body as { entries?: unknown }).entries)) {
        throw new ProviderLookupError('INVALID_RESPONSE', `charge listing failed with status ${status}`);
      }
      const entries = (body as { entries: Array<Record<string, unknown>> }).entries;
      return entries
        .filter((e) => e.status === 'succeeded' && typeof e.at === 'string' && Date.parse(e.at) >= from.getTime() && Date.parse(e.at) < to.getTime())
        .map((e) => ({
          idempotencyKey: String(e.idempotencyKey),
          paymentId: String(e.paymentId),
          chargeId: String(e.chargeId),
          amountMinor: Number(e.amountMinor),
          currency: String(e.currency),
          at: String(e.at),
        }));
    },
  };
}

function recordedResult(body: Json | undefined): RecordedChargeResult | undefined {
  if (!body) return undefined;
  if (body.status === 'succeeded' && typeof body.chargeId === 'string' && body.chargeId !== '') {
    return { outcome: 'succeeded', chargeId: body.chargeId };
  }
  if (body.status === 'declined') {
    const code = typeof body.code === 'string' ? body.code : errorCode(body) ?? 'CARD_DECLINED';
    const message = typeof body.message === 'string' ? body.message : errorMessage(body) ?? 'declined';
    return { outcome: 'declined', code, message };
  }
  return undefined;
}

function unknownFromError(err: unknown): Extract<ChargeResult, { outcome: 'unknown' }> {
  const name = err instanceof Error || err instanceof DOMException ? err.name : '';
  if (name === 'TimeoutError' || name === 'AbortError') {
    return { outcome: 'unknown', code: 'PROVIDER_TIMEOUT', message: 'provider did not answer in time' };
  }
  const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
  const msg = err instanceof Error ? err.message : String(err);
  return { outcome: 'unknown', code: 'NETWORK_ERROR', message: `${msg}${cause}` };
}

function parseJson(text: string): Json | undefined {
  if (text === '') return undefined;
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : undefined;
  } catch {
    return undefined;
  }
}

const errorCode = (b: Json | undefined): string | undefined =>
  typeof b?.error?.code === 'string' && b.error.code !== '' ? b.error.code : undefined;
const errorMessage = (b: Json | undefined): string | undefined =>
  typeof b?.error?.message === 'string' ? b.error.message : undefined;

/** Retry-After as delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}
