/**
 * A typed client for the Idempotent Payments API: the types are generated from docs/openapi.yaml
 * (api-types.ts, `npm run client:generate`), the calls go through openapi-fetch, and every call
 * retries by the policy in retry-policy.ts.
 *
 * createPayment makes one idempotency key per logical payment (or takes the caller's) and sends that
 * same key on every retry, so a lost response or a timeout can never create a second payment: the
 * retry gets the first payment back with `replayed: true`.
 */
import createClient from 'openapi-fetch';
import type { components, paths } from './api-types';
import { isRetryable, retryDelayMs, type Idempotency, type Outcome, type RetryOptions } from './retry-policy';

export type { components, paths } from './api-types';
export { isRetryable, retryDelayMs, type RetryOptions } from './retry-policy';

export type Payment = components['schemas']['Payment'];
export type PaymentStatus = components['schemas']['PaymentStatus'];
export type PaymentList = components['schemas']['PaymentList'];
export type CreatePaymentRequest = components['schemas']['CreatePaymentRequest'];
export type ErrorDetail = components['schemas']['ErrorDetail'];
type ErrorBody = components['schemas']['ErrorResponse']['error'];

export interface PaymentsClientOptions {
  /** e.g. http://127.0.0.1:3000 or https://<api>.execute-api.<region>.amazonaws.com/<stage> */
  readonly baseUrl: string;
  readonly apiKey: string;
  readonly retry?: RetryOptions;
  /** Default globalThis.fetch. */
  readonly fetch?: (request: Request) => Promise<Response>;
  /** For tests: how to wait, and the jitter source. */
  readonly sleep?: (ms: number) => Promise<void>;
  readonly random?: () => number;
  /** Called before each retry (logging, metrics). */
  readonly onRetry?: (info: { attempt: number; delayMs: number; status?: number; code?: string }) => void;
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
    this.requestId = error?.requestId;
  }
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

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

  /** Runs one call with retries; returns the success body and response, or throws the last error. */
  async function send<T>(idempotency: Idempotency, call: () => Promise<Result<T>>): Promise<{ data: T; response: Response }> {
    for (let attempt = 0; ; attempt++) {
      let outcome: Outcome;
      let failure: unknown;
      try {
        const { data, error, response } = await call();
        if (response.ok) return { data: data as T, response };
        const body = (error as { error?: ErrorBody } | undefined)?.error;
        outcome = { status: response.status, code: body?.code, retryAfter: response.headers.get('retry-after') };
        failure = new PaymentsApiError(response.status, body);
      } catch (err) {
        // No answer: the request may or may not have been applied.
        outcome = {};
        failure = err;
      }
      if (attempt + 1 >= maxAttempts || !isRetryable(outcome, idempotency)) throw failure;
      const delayMs = retryDelayMs(attempt, outcome, options.retry, random);
      options.onRetry?.({ attempt: attempt + 1, delayMs, status: outcome.status, code: outcome.code });
      await sleep(delayMs);
    }
  }

  return {
    /** The generated openapi-fetch client, for calls without the retry policy. */
    http,

    /**
     * Creates a payment, or returns the one its idempotency key already holds (`replayed: true`). One key
     * per call (or `idempotencyKey`, to continue a payment across process restarts), sent on every retry.
     */
    async createPayment(input: Omit<CreatePaymentRequest, 'idempotencyKey'>, opts: { idempotencyKey?: string } = {}) {
      const idempotencyKey = opts.idempotencyKey ?? globalThis.crypto.randomUUID();
      const { data, response } = await send('safe', () =>
        http.POST('/api/payments/process', { body: input, headers: { 'Idempotency-Key': idempotencyKey } }),
      );
      return { payment: data, replayed: response.headers.get('idempotent-replayed') === 'true', idempotencyKey };
    },

    async getPayment(paymentID: string): Promise<Payment> {
      return (await send('safe', () => http.GET('/api/payments/{paymentID}', { params: { path: { paymentID } } }))).data;
    },

    async getPaymentStatus(paymentID: string) {
      return (await send('safe', () => http.GET('/api/payments/{paymentID}/status', { params: { path: { paymentID } } }))).data;
    },

    /** One page of the tenant's payments, newest first; pass `nextCursor` back as `cursor`. */
    async listPayments(query: { status?: PaymentStatus; limit?: number; cursor?: string } = {}): Promise<PaymentList> {
      return (await send('safe', () => http.GET('/api/payments', { params: { query } }))).data;
    },

    /** Every payment of the tenant (optionally in one status), page by page. */
    async *allPayments(query: { status?: PaymentStatus; limit?: number } = {}): AsyncGenerator<Payment> {
      let cursor: string | undefined;
      do {
        const page = await this.listPayments({ ...query, ...(cursor ? { cursor } : {}) });
        yield* page.items;
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
    },

    async getKeyRecord(idempotencyKey: string) {
      return (await send('safe', () => http.GET('/api/payments/key/{idempotencyKey}', { params: { path: { idempotencyKey } } }))).data;
    },

    async validateKey(body: components['schemas']['ValidateKeyRequest']) {
      return (await send('safe', () => http.POST('/api/payments/validate-key', { body }))).data;
    },

    /** Operator action: retried only on answers that mean nothing happened (429, 503, CONCURRENT_UPDATE). */
    async retryPayment(paymentID: string, reason?: string): Promise<Payment> {
      return (await send('unsafe', () => http.POST('/api/payments/{paymentID}/retry', { params: { path: { paymentID } }, body: reason ? { reason } : {} }))).data;
    },

    async listAuditEntries(query: NonNullable<paths['/api/audit/payments']['get']['parameters']['query']> = {}) {
      return (await send('safe', () => http.GET('/api/audit/payments', { params: { query } }))).data;
    },

    async startRecovery() {
      return (await send('unsafe', () => http.POST('/api/recovery/process'))).data;
    },

    async getRecoveryStatus() {
      return (await send('safe', () => http.GET('/api/recovery/status'))).data;
    },
  };
}

export type PaymentsClient = ReturnType<typeof createPaymentsClient>;
