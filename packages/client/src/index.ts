/**
 * A typed client for the Idempotent Payments API: the types are generated from docs/openapi.yaml
 * (api-types.ts, `npm run client:generate`), the calls go through openapi-fetch, and every call
 * retries by the policy in retry-policy.ts.
 *
 * createPayment makes one idempotency key per logical payment (or takes the caller's) and sends that
 * same key on every retry, so a lost response or a timeout can never create a second payment: the
 * retry gets the first payment back with `replayed: true`. Refunds (createRefund) and the actions
 * (retryPayment, cancelPayment, startRecovery) do the same with an Idempotency-Key header. Every attempt has a timeout, and every call takes an
 * AbortSignal that cancels it, retries included.
 */
import createClient from 'openapi-fetch';
import type { components, paths } from './api-types.js';
import { isRetryable, retryDelayMs, type Idempotency, type Outcome, type RetryOptions } from './retry-policy.js';

export type { components, paths } from './api-types.js';
export { isRetryable, retryDelayMs, type Idempotency, type Outcome, type RetryOptions } from './retry-policy.js';
export { verifyWebhook, WEBHOOK_SIGNATURE_HEADER, type WebhookVerdict } from './verify-webhook.js';

export type Payment = components['schemas']['Payment'];
export type PaymentStatus = components['schemas']['PaymentStatus'];
export type PaymentList = components['schemas']['PaymentList'];
export type PaymentStatusView = components['schemas']['PaymentStatusView'];
export type CreatePaymentRequest = components['schemas']['CreatePaymentRequest'];
export type ValidateKeyRequest = components['schemas']['ValidateKeyRequest'];
export type KeyValidation = components['schemas']['KeyValidation'];
export type KeyRecord = components['schemas']['KeyRecord'];
export type AuditPage = components['schemas']['AuditPage'];
export type RecoveryRunStarted = components['schemas']['RecoveryRunStarted'];
export type RecoveryStatus = components['schemas']['RecoveryStatus'];
export type Refund = components['schemas']['Refund'];
export type RefundList = components['schemas']['RefundList'];
export type CreateRefundRequest = components['schemas']['CreateRefundRequest'];
export type ErrorDetail = components['schemas']['ErrorDetail'];
export type WebhookEventType = components['schemas']['WebhookEventType'];
export type WebhookEndpoint = components['schemas']['WebhookEndpoint'];
export type WebhookEndpointWithSecret = components['schemas']['WebhookEndpointWithSecret'];
export type WebhookEndpointList = components['schemas']['WebhookEndpointList'];
export type WebhookEvent = components['schemas']['WebhookEvent'];
export type WebhookEventList = components['schemas']['WebhookEventList'];
export type EventResend = components['schemas']['EventResend'];
export type AuditQuery = NonNullable<paths['/api/audit/payments']['get']['parameters']['query']>;
type ErrorBody = components['schemas']['ErrorResponse']['error'];

/** Default time one attempt may take: a little over API Gateway's 29 s, so its 504 can arrive. */
export const DEFAULT_TIMEOUT_MS = 30_000;

export interface PaymentsClientOptions {
  /** e.g. http://127.0.0.1:3000 or https://<api>.execute-api.<region>.amazonaws.com/<stage> */
  readonly baseUrl: string;
  readonly apiKey: string;
  readonly retry?: RetryOptions;
  /** Time one attempt may take before it is abandoned (and retried when safe). Default 30 s. */
  readonly timeoutMs?: number;
  /** Default globalThis.fetch. */
  readonly fetch?: (request: Request) => Promise<Response>;
  /** For tests: how to wait (rejecting when the signal aborts), and the jitter source. */
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly random?: () => number;
  /** Called before each retry (logging, metrics). */
  readonly onRetry?: (info: { attempt: number; delayMs: number; status?: number; code?: string }) => void;
}

/** Per call. */
export interface CallOptions {
  /** Cancels the call, its retries included: the promise rejects with the signal's reason. */
  readonly signal?: AbortSignal;
  /** Time one attempt may take; default the client's `timeoutMs`. */
  readonly timeoutMs?: number;
}

/** Per call of a create or an action: the idempotency key to send (default: a new one for this call). */
export interface IdempotentCallOptions extends CallOptions {
  readonly idempotencyKey?: string;
}

/** The API's error, after the retries (if any) ran out or were not allowed. */
export class PaymentsApiError extends Error {
  override readonly name = 'PaymentsApiError';
  readonly code: string;
  readonly retryable: boolean;
  readonly details: readonly ErrorDetail[];
  readonly requestId?: string;
  constructor(
    readonly status: number,
    error: Partial<ErrorBody> | undefined,
  ) {
    super(error?.message ?? `HTTP ${status}`);
    this.code = error?.code ?? `HTTP_${status}`;
    this.retryable = error?.retryable ?? false;
    this.details = error?.details ?? [];
    if (error?.requestId !== undefined) this.requestId = error.requestId;
  }
}

const abortReason = (signal: AbortSignal): unknown => signal.reason ?? new DOMException('The operation was aborted', 'AbortError');

function defaultSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** One attempt's signal: aborted by the caller's signal or by the attempt's own timeout. */
function attemptSignal(caller: AbortSignal | undefined, timeoutMs: number) {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort(new DOMException(`No answer within ${timeoutMs} ms`, 'TimeoutError'));
  }, timeoutMs);
  const onAbort = () => controller.abort(abortReason(caller!));
  if (caller?.aborted) onAbort();
  else caller?.addEventListener('abort', onAbort, { once: true });
  return {
    signal: controller.signal,
    timedOut: () => timedOut,
    done: () => {
      clearTimeout(timer);
      caller?.removeEventListener('abort', onAbort);
    },
  };
}

type Result<T> = { data?: T; error?: unknown; response: Response };

export function createPaymentsClient(options: PaymentsClientOptions) {
  const http = createClient<paths>({
    baseUrl: options.baseUrl.replace(/\/$/, ''),
    headers: { 'x-api-key': options.apiKey },
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
  const sleep = options.sleep ?? defaultSleep;
  const random = options.random ?? Math.random;
  const maxAttempts = options.retry?.maxAttempts ?? 4;
  const newKey = () => globalThis.crypto.randomUUID();

  /** Runs one call with retries; returns the success body and response, or throws the last error. */
  async function send<T>(idempotency: Idempotency, opts: CallOptions, call: (signal: AbortSignal) => Promise<Result<T>>): Promise<{ data: T; response: Response }> {
    const timeoutMs = opts.timeoutMs ?? options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    for (let attempt = 0; ; attempt++) {
      if (opts.signal?.aborted) throw abortReason(opts.signal);
      let outcome: Outcome;
      let failure: unknown;
      const a = attemptSignal(opts.signal, timeoutMs);
      try {
        const { data, error, response } = await call(a.signal);
        if (response.ok) return { data: data as T, response };
        const body = (error as { error?: ErrorBody } | undefined)?.error;
        outcome = { status: response.status, code: body?.code, retryAfter: response.headers.get('retry-after') };
        failure = new PaymentsApiError(response.status, body);
      } catch (err) {
        if (opts.signal?.aborted) throw abortReason(opts.signal);
        // No answer (network error, or the attempt's timeout): the request may or may not have been applied.
        outcome = {};
        failure = a.timedOut() ? a.signal.reason : err;
      } finally {
        a.done();
      }
      if (attempt + 1 >= maxAttempts || !isRetryable(outcome, idempotency)) throw failure;
      const delayMs = retryDelayMs(attempt, outcome, options.retry, random);
      options.onRetry?.({ attempt: attempt + 1, delayMs, ...(outcome.status !== undefined ? { status: outcome.status } : {}), ...(outcome.code !== undefined ? { code: outcome.code } : {}) });
      await sleep(delayMs, opts.signal);
    }
  }

  const client = {
    /** The generated openapi-fetch client, for calls without the retry policy. */
    http,

    /**
     * Creates a payment, or returns the one its idempotency key already holds (`replayed: true`). One key
     * per call (or `idempotencyKey`, to continue a payment across process restarts), sent on every retry.
     */
    async createPayment(input: Omit<CreatePaymentRequest, 'idempotencyKey'>, opts: IdempotentCallOptions = {}) {
      const idempotencyKey = opts.idempotencyKey ?? newKey();
      const { data, response } = await send('safe', opts, (signal) =>
        http.POST('/api/payments/process', { body: input, headers: { 'Idempotency-Key': idempotencyKey }, signal }),
      );
      return { payment: data, replayed: response.headers.get('idempotent-replayed') === 'true', idempotencyKey };
    },

    async getPayment(paymentID: string, opts: CallOptions = {}): Promise<Payment> {
      return (await send('safe', opts, (signal) => http.GET('/api/payments/{paymentID}', { params: { path: { paymentID } }, signal }))).data;
    },

    async getPaymentStatus(paymentID: string, opts: CallOptions = {}): Promise<PaymentStatusView> {
      return (await send('safe', opts, (signal) => http.GET('/api/payments/{paymentID}/status', { params: { path: { paymentID } }, signal }))).data;
    },

    /** One page of the tenant's payments, newest first; pass `nextCursor` back as `cursor`. */
    async listPayments(query: { status?: PaymentStatus; limit?: number; cursor?: string } = {}, opts: CallOptions = {}): Promise<PaymentList> {
      return (await send('safe', opts, (signal) => http.GET('/api/payments', { params: { query }, signal }))).data;
    },

    /** Every payment of the tenant (optionally in one status), page by page. */
    async *allPayments(query: { status?: PaymentStatus; limit?: number } = {}, opts: CallOptions = {}): AsyncGenerator<Payment> {
      let cursor: string | undefined;
      do {
        const page = await client.listPayments({ ...query, ...(cursor ? { cursor } : {}) }, opts);
        yield* page.items;
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
    },

    async getKeyRecord(idempotencyKey: string, opts: CallOptions = {}): Promise<KeyRecord> {
      return (await send('safe', opts, (signal) => http.GET('/api/payments/key/{idempotencyKey}', { params: { path: { idempotencyKey } }, signal }))).data;
    },

    async validateKey(body: ValidateKeyRequest, opts: CallOptions = {}): Promise<KeyValidation> {
      return (await send('safe', opts, (signal) => http.POST('/api/payments/validate-key', { body, signal }))).data;
    },

    /**
     * Runs a retrying payment now, or (operator key) re-opens a failed one. Sent with an Idempotency-Key
     * (one per call unless given), so a retry after a lost answer gets the first answer, not a second action.
     */
    async retryPayment(paymentID: string, opts: IdempotentCallOptions & { reason?: string } = {}): Promise<Payment> {
      const key = opts.idempotencyKey ?? newKey();
      const body = opts.reason !== undefined ? { reason: opts.reason } : {};
      return (
        await send('safe', opts, (signal) =>
          http.POST('/api/payments/{paymentID}/retry', { params: { path: { paymentID }, header: { 'Idempotency-Key': key } }, body, signal }),
        )
      ).data;
    },

    /**
     * Refunds a successful payment (without `amount`: what remains), or returns the refund this key already
     * holds (`replayed: true`). One key per call unless given, sent on every retry: a lost answer never
     * refunds twice.
     */
    async createRefund(paymentID: string, input: CreateRefundRequest = {}, opts: IdempotentCallOptions = {}) {
      const idempotencyKey = opts.idempotencyKey ?? newKey();
      const { data, response } = await send('safe', opts, (signal) =>
        http.POST('/api/payments/{paymentID}/refunds', { params: { path: { paymentID }, header: { 'Idempotency-Key': idempotencyKey } }, body: input, signal }),
      );
      return { refund: data, replayed: response.headers.get('idempotent-replayed') === 'true', idempotencyKey };
    },

    async listRefunds(paymentID: string, query: { limit?: number; cursor?: string } = {}, opts: CallOptions = {}): Promise<RefundList> {
      return (await send('safe', opts, (signal) => http.GET('/api/payments/{paymentID}/refunds', { params: { path: { paymentID }, query }, signal }))).data;
    },

    /**
     * Cancels a pending or retrying payment, under an Idempotency-Key like retryPayment (a retry after a
     * lost answer gets the first answer). A processing payment is 409 PAYMENT_PROCESSING: ask again
     * after its Retry-After.
     */
    async cancelPayment(paymentID: string, opts: IdempotentCallOptions & { reason?: string } = {}): Promise<Payment> {
      const key = opts.idempotencyKey ?? newKey();
      const body = opts.reason !== undefined ? { reason: opts.reason } : {};
      return (
        await send('safe', opts, (signal) =>
          http.POST('/api/payments/{paymentID}/cancel', { params: { path: { paymentID }, header: { 'Idempotency-Key': key } }, body, signal }),
        )
      ).data;
    },

    async listAuditEntries(query: AuditQuery = {}, opts: CallOptions = {}): Promise<AuditPage> {
      return (await send('safe', opts, (signal) => http.GET('/api/audit/payments', { params: { query }, signal }))).data;
    },

    /** Operator: starts a reconciliation run (or returns the active one), under an Idempotency-Key like retryPayment. */
    async startRecovery(opts: IdempotentCallOptions = {}): Promise<RecoveryRunStarted> {
      const key = opts.idempotencyKey ?? newKey();
      return (await send('safe', opts, (signal) => http.POST('/api/recovery/process', { params: { header: { 'Idempotency-Key': key } }, signal }))).data;
    },

    async getRecoveryStatus(opts: CallOptions = {}): Promise<RecoveryStatus> {
      return (await send('safe', opts, (signal) => http.GET('/api/recovery/status', { signal }))).data;
    },

    /**
     * Registers a webhook endpoint; the answer holds its secret, shown only here and by rotateWebhookSecret.
     * Not retried after a lost answer (a second call would register a second endpoint): list, then decide.
     */
    async createWebhookEndpoint(body: { url: string; events?: WebhookEventType[] }, opts: CallOptions = {}): Promise<WebhookEndpointWithSecret> {
      return (await send('unsafe', opts, (signal) => http.POST('/api/webhook-endpoints', { body, signal }))).data;
    },

    async listWebhookEndpoints(opts: CallOptions = {}): Promise<WebhookEndpointList> {
      return (await send('safe', opts, (signal) => http.GET('/api/webhook-endpoints', { signal }))).data;
    },

    async deleteWebhookEndpoint(endpointID: string, opts: CallOptions = {}): Promise<void> {
      await send('safe', opts, (signal) => http.DELETE('/api/webhook-endpoints/{endpointID}', { params: { path: { endpointID } }, signal }));
    },

    /** A new secret; the old one keeps signing for 24 h (deliveries carry a v1 per secret meanwhile). Not retried blind: a repeat rotates again. */
    async rotateWebhookSecret(endpointID: string, opts: CallOptions = {}): Promise<WebhookEndpointWithSecret> {
      return (await send('unsafe', opts, (signal) => http.POST('/api/webhook-endpoints/{endpointID}/rotate-secret', { params: { path: { endpointID } }, signal }))).data;
    },

    /** One page of the tenant's events, newest first; pass `nextCursor` back as `cursor`. */
    async listEvents(query: { limit?: number; cursor?: string } = {}, opts: CallOptions = {}): Promise<WebhookEventList> {
      return (await send('safe', opts, (signal) => http.GET('/api/events', { params: { query }, signal }))).data;
    },

    /** Queues the event again for the tenant's endpoints (receivers dedupe by event id, so a repeat is harmless). */
    async resendEvent(eventID: string, opts: CallOptions = {}): Promise<EventResend> {
      return (await send('safe', opts, (signal) => http.POST('/api/events/{eventID}/resend', { params: { path: { eventID } }, signal }))).data;
    },
  };
  return client;
}

export type PaymentsClient = ReturnType<typeof createPaymentsClient>;
