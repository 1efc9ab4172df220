/**
 * The Stripe adapter against a fake HTTP client plugged into the real SDK: what goes on the wire
 * (paths, form bodies, idempotency keys) and how every answer maps to a ProviderError kind. The same
 * adapter meets the real failure modes of a server in test/integration/provider-simulator.test.ts.
 */
import Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import { STRIPE_API_VERSION, createStripeProvider, toIntent } from '../../functions/adapters/provider/stripe-provider';
import { ProviderError } from '../../functions/core/ports/payment-provider';

interface SentRequest {
  readonly host: string;
  readonly port: string;
  readonly path: string;
  readonly method: string;
  readonly headers: Record<string, unknown>;
  readonly body: string;
  readonly protocol: string;
}

interface FakeAnswer {
  readonly status: number;
  /** A value is sent as JSON; a string is sent as is. */
  readonly body: unknown;
  readonly headers?: Record<string, string>;
}

class FakeResponse extends Stripe.HttpClientResponse {
  constructor(
    status: number,
    headers: Record<string, string>,
    private readonly text: string,
  ) {
    super(status, headers);
  }
  override getRawResponse(): unknown {
    return {};
  }
  override toStream(): never {
    throw new Error('not streamed');
  }
  override toJSON(): Promise<unknown> {
    return new Promise((resolve, reject) => {
      try {
        resolve(JSON.parse(this.text));
      } catch (e) {
        reject(e);
      }
    });
  }
}

/** An SDK HTTP client that records requests and answers from `respond` (or throws what it throws). */
class FakeHttpClient extends Stripe.HttpClient {
  readonly sent: SentRequest[] = [];
  constructor(private readonly respond: (r: SentRequest) => FakeAnswer) {
    super();
  }
  override getClientName(): string {
    return 'fake';
  }
  override makeRequest(host: string, port: string, path: string, method: string, headers: object, body: string, protocol: string): Promise<FakeResponse> {
    const r: SentRequest = { host, port: String(port), path, method, headers: headers as Record<string, unknown>, body, protocol };
    this.sent.push(r);
    try {
      const a = this.respond(r);
      const text = typeof a.body === 'string' ? a.body : JSON.stringify(a.body);
      return Promise.resolve(new FakeResponse(a.status, { 'request-id': 'req_1', ...a.headers }, text));
    } catch (e) {
      return Promise.reject(e);
    }
  }
}

const intentJson = (over: Record<string, unknown> = {}) => ({
  id: 'pi_1',
  object: 'payment_intent',
  amount: 4200,
  amount_received: 0,
  currency: 'eur',
  status: 'requires_payment_method',
  metadata: { payment_id: 'pay_1' },
  created: 1_700_000_000,
  latest_charge: null,
  last_payment_error: null,
  ...over,
});

function setup(respond: (r: SentRequest) => FakeAnswer) {
  const http = new FakeHttpClient(respond);
  const provider = createStripeProvider({
    apiKey: 'sk_test_unit',
    host: '127.0.0.1',
    port: 4010,
    protocol: 'http',
    timeoutMs: 1000,
    httpClient: http,
    tag: { service: 'idempotent-payments', stage: 'unit' },
  });
  return { http, provider };
}

const form = (body: string): Record<string, string> => Object.fromEntries(new URLSearchParams(body));
const header = (r: SentRequest, name: string): unknown => Object.entries(r.headers).find(([k]) => k.toLowerCase() === name.toLowerCase())?.[1];

async function providerError(p: Promise<unknown>): Promise<ProviderError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!(e instanceof ProviderError)) throw new Error(`expected ProviderError, got ${String(e)}`);
  return e;
}

describe('stripe provider: requests', () => {
  it('creates the intent under the payment key, amount in minor units, currency lower case, payment id, sequence and our tag in metadata', async () => {
    const { http, provider } = setup(() => ({ status: 200, body: intentJson({ metadata: { payment_id: 'pay_1', intent_seq: '0', service: 'idempotent-payments', stage: 'unit' } }) }));
    const intent = await provider.createIntent({ paymentId: 'pay_1', amountMinor: 4200, currency: 'EUR', metadata: { tenant: 't1' } });
    expect(intent).toEqual({
      id: 'pi_1',
      paymentId: 'pay_1',
      status: 'requires_payment_method',
      amountMinor: 4200,
      currency: 'EUR',
      amountReceived: 0,
      created: 1_700_000_000,
      service: 'idempotent-payments',
      stage: 'unit',
      intentSeq: 0,
    });
    const r = http.sent[0]!;
    expect(r).toMatchObject({ host: '127.0.0.1', port: '4010', protocol: 'http', method: 'POST', path: '/v1/payment_intents' });
    expect(form(r.body)).toEqual({
      amount: '4200',
      currency: 'eur',
      'metadata[tenant]': 't1',
      'metadata[payment_id]': 'pay_1',
      'metadata[intent_seq]': '0',
      'metadata[service]': 'idempotent-payments',
      'metadata[stage]': 'unit',
      confirm: 'false',
    });
    expect(header(r, 'Idempotency-Key')).toBe('intent-pay_1');
    expect(header(r, 'Stripe-Version')).toBe(STRIPE_API_VERSION);
    expect(header(r, 'Authorization')).toBe('Bearer sk_test_unit');
  });

  it('the next key generation and a re-opened payment\'s sequence are in the create key; ISK goes out in Stripe\'s two-decimal form', async () => {
    const { http, provider } = setup(() => ({ status: 200, body: intentJson({ amount: 50_000, currency: 'isk' }) }));
    const intent = await provider.createIntent({ paymentId: 'pay_1', intentSeq: 2, keyGeneration: 1, amountMinor: 500, currency: 'ISK' });
    expect(intent.amountMinor).toBe(500);
    expect(form(http.sent[0]!.body)).toMatchObject({ amount: '50000', currency: 'isk', 'metadata[intent_seq]': '2' });
    expect(header(http.sent[0]!, 'Idempotency-Key')).toBe('intent-pay_1-r2-k1');
  });

  it('confirms, cancels and refunds under their keys: a cancel key per call, a refund key from our refund record', async () => {
    const { http, provider } = setup((r) =>
      r.path === '/v1/refunds'
        ? { status: 200, body: { id: 're_1', object: 'refund', amount: 500, currency: 'eur', payment_intent: 'pi_1', status: 'pending', metadata: { refund_id: 'rf_1' } } }
        : { status: 200, body: intentJson({ status: r.path.endsWith('/cancel') ? 'canceled' : 'succeeded' }) },
    );
    await provider.confirmIntent('pi_1', { paymentId: 'pay_1', attempt: 2, paymentMethod: 'pm_card_visa' });
    await provider.cancelIntent('pi_1', 'pay_1');
    await provider.cancelIntent('pi_1', 'pay_1');
    await expect(
      provider.refund({ refundId: 'rf_1', keyGeneration: 1, intentId: 'pi_1', paymentId: 'pay_1', amountMinor: 500, currency: 'EUR', reason: 'orphan capture' }),
    ).resolves.toEqual({ id: 're_1', intentId: 'pi_1', amountMinor: 500, currency: 'EUR', status: 'pending', refundId: 'rf_1' });
    const [c, x1, x2, f] = http.sent;
    expect(c).toMatchObject({ path: '/v1/payment_intents/pi_1/confirm' });
    expect(form(c!.body)).toEqual({ payment_method: 'pm_card_visa' });
    expect(header(c!, 'Idempotency-Key')).toBe('confirm-pay_1-2');
    expect(x1).toMatchObject({ path: '/v1/payment_intents/pi_1/cancel' });
    expect(header(x1!, 'Idempotency-Key')).toMatch(/^cancel-pi_1-[0-9a-f-]{13}$/);
    expect(header(x2!, 'Idempotency-Key')).not.toBe(header(x1!, 'Idempotency-Key'));
    expect(form(f!.body)).toEqual({
      payment_intent: 'pi_1',
      amount: '500',
      'metadata[refund_id]': 'rf_1',
      'metadata[payment_id]': 'pay_1',
      'metadata[service]': 'idempotent-payments',
      'metadata[stage]': 'unit',
      'metadata[reason]': 'orphan capture',
    });
    expect(header(f!, 'Idempotency-Key')).toBe('refund-rf_1-k1');
  });

  it("reads a refund with its charge and lists an intent's refunds", async () => {
    const refund = (id: string) => ({ id, object: 'refund', amount: 500, currency: 'eur', payment_intent: 'pi_1', status: 'failed', failure_reason: 'expired_or_canceled_card', metadata: { refund_id: 'rf_1' } });
    const { http, provider } = setup((r) => (r.path.startsWith('/v1/refunds?') ? { status: 200, body: { object: 'list', data: [refund('re_1')], has_more: false } } : { status: 200, body: refund('re_1') }));
    await expect(provider.retrieveRefund('re_1')).resolves.toMatchObject({ status: 'failed', failureReason: 'expired_or_canceled_card', refundId: 'rf_1' });
    expect(http.sent[0]!.path).toBe('/v1/refunds/re_1?expand[0]=charge');
    await expect(provider.listRefunds('pi_1')).resolves.toEqual([expect.objectContaining({ id: 're_1', refundId: 'rf_1' })]);
    expect(Object.fromEntries(new URL(`http://x${http.sent[1]!.path}`).searchParams)).toEqual({ payment_intent: 'pi_1', limit: '100' });
  });

  it('searches by metadata and lists a window with a cursor', async () => {
    const { http, provider } = setup((r) =>
      r.path.startsWith('/v1/payment_intents/search')
        ? { status: 200, body: { object: 'search_result', data: [intentJson()], has_more: false } }
        : { status: 200, body: { object: 'list', data: [intentJson({ id: 'pi_2' }), intentJson({ id: 'pi_3' })], has_more: true } },
    );
    await expect(provider.findIntentsForPayment("pay_'1")).resolves.toEqual([]); // metadata says pay_1, not pay_'1
    const q = new URL(`http://x${http.sent[0]!.path}`).searchParams;
    expect(q.get('query')).toBe("metadata['payment_id']:'pay_\\'1'");
    const page = await provider.listIntents({ from: new Date(1_000_000), to: new Date(2_000_500), startingAfter: 'pi_0', limit: 2 });
    expect(page.intents.map((i) => i.id)).toEqual(['pi_2', 'pi_3']);
    expect(page.nextCursor).toBe('pi_3');
    const l = new URL(`http://x${http.sent[1]!.path}`).searchParams;
    // The charge is expanded: each intent says what was refunded.
    expect(Object.fromEntries(l)).toEqual({ 'created[gte]': '1000', 'created[lt]': '2001', limit: '2', 'expand[0]': 'data.latest_charge', starting_after: 'pi_0' });
  });
});

describe('stripe provider: error mapping', () => {
  const declined = intentJson({ last_payment_error: { type: 'card_error', code: 'card_declined', decline_code: 'insufficient_funds', message: 'no funds' } });
  it.each<[string, FakeAnswer, Partial<ProviderError> & { extra?: object }]>([
    ['402 card error', { status: 402, body: { error: { type: 'card_error', code: 'card_declined', decline_code: 'insufficient_funds', message: 'no funds', payment_intent: declined } } }, { kind: 'declined', code: 'card_declined', extra: { declineCode: 'insufficient_funds', httpStatus: 402, intent: expect.objectContaining({ id: 'pi_1', lastError: { code: 'card_declined', message: 'no funds', declineCode: 'insufficient_funds' } }) } }],
    ['400 unexpected state', { status: 400, body: { error: { type: 'invalid_request_error', code: 'payment_intent_unexpected_state', message: 'no', payment_intent: intentJson({ status: 'succeeded' }) } } }, { kind: 'rejected', code: 'payment_intent_unexpected_state', extra: { httpStatus: 400, intent: expect.objectContaining({ status: 'succeeded' }) } }],
    ['404 resource missing', { status: 404, body: { error: { type: 'invalid_request_error', code: 'resource_missing', message: 'No such payment_intent' } } }, { kind: 'rejected', code: 'resource_missing', extra: { httpStatus: 404 } }],
    ['429 rate limit', { status: 429, body: { error: { type: 'invalid_request_error', code: 'rate_limit', message: 'slow down' } }, headers: { 'retry-after': '2' } }, { kind: 'throttled', code: 'rate_limit', extra: { httpStatus: 429, retryAfterMs: 2000 } }],
    ['429 lock timeout', { status: 429, body: { error: { type: 'invalid_request_error', code: 'lock_timeout', message: 'locked' } } }, { kind: 'throttled', code: 'lock_timeout', extra: { httpStatus: 429 } }],
    ['409 key in flight', { status: 409, body: { error: { type: 'idempotency_error', code: 'idempotency_key_in_use', message: 'in progress' } } }, { kind: 'throttled', code: 'idempotency_key_in_use', extra: { httpStatus: 409 } }],
    ['400 key reused with other params', { status: 400, body: { error: { type: 'idempotency_error', message: 'Keys for idempotent requests can only be used with the same parameters' } } }, { kind: 'rejected', code: 'idempotency_error', extra: { httpStatus: 400 } }],
    ['401 authentication', { status: 401, body: { error: { type: 'invalid_request_error', message: 'Invalid API Key provided' } } }, { kind: 'outage', code: 'HTTP_401', extra: { httpStatus: 401 } }],
    ['403 permission', { status: 403, body: { error: { type: 'invalid_request_error', code: 'secret_key_required', message: 'nope' } } }, { kind: 'outage', code: 'secret_key_required', extra: { httpStatus: 403 } }],
    ['500 api error', { status: 500, body: { error: { type: 'api_error', message: 'oops' } } }, { kind: 'unknown', code: 'HTTP_500', extra: { httpStatus: 500 } }],
    // Stripe replays a saved 5xx under the same key: the adapter says so, it is not a fresh outcome.
    ['500 replayed from the idempotency store', { status: 500, body: { error: { type: 'api_error', message: 'oops' } }, headers: { 'idempotent-replayed': 'true' } }, { kind: 'unknown', code: 'HTTP_500', extra: { httpStatus: 500, replayed: true } }],
    // The SDK treats any JSON without `error` as an answer; an answer that is not an intent is unreadable.
    ['503 without a Stripe error body', { status: 503, body: { message: 'upstream' } }, { kind: 'unknown', code: 'INVALID_RESPONSE' }],
    ['502 html body', { status: 502, body: '<html>bad gateway</html>' }, { kind: 'unknown', code: 'INVALID_RESPONSE' }],
    ['200 not json', { status: 200, body: 'garbage' }, { kind: 'unknown', code: 'INVALID_RESPONSE' }],
    ['200 intent without status', { status: 200, body: { id: 'pi_1', amount: 1 } }, { kind: 'unknown', code: 'INVALID_RESPONSE' }],
    ['200 intent without amount', { status: 200, body: { id: 'pi_1', status: 'succeeded' } }, { kind: 'unknown', code: 'INVALID_RESPONSE' }],
    ['200 without id', { status: 200, body: { object: 'payment_intent', status: 'succeeded', amount: 1 } }, { kind: 'unknown', code: 'INVALID_RESPONSE' }],
  ])('%s', async (_name, answer, expected) => {
    const { provider } = setup(() => answer);
    const err = await providerError(provider.confirmIntent('pi_1', { paymentId: 'pay_1', attempt: 1, paymentMethod: 'tok_x' }));
    expect(err).toMatchObject(expected);
  });

  it('a timeout is unknown TIMEOUT; a refused connection is unknown NETWORK_ERROR', async () => {
    const timedOut = setup(() => {
      throw Stripe.HttpClient.makeTimeoutError();
    });
    await expect(providerError(timedOut.provider.retrieveIntent('pi_1'))).resolves.toMatchObject({ kind: 'unknown', code: 'TIMEOUT' });
    const refused = setup(() => {
      throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:4010'), { code: 'ECONNREFUSED' });
    });
    await expect(providerError(refused.provider.retrieveIntent('pi_1'))).resolves.toMatchObject({ kind: 'unknown', code: 'NETWORK_ERROR' });
  });

  it('an error raised before the request leaves is rejected request_not_sent, never unknown, and nothing is sent', async () => {
    const { http, provider } = setup(() => ({ status: 200, body: intentJson() }));
    const err = await providerError(provider.createIntent({ paymentId: 'pay_1', amountMinor: 4200, currency: 'EUR', metadata: { note: 'a\ud800b' } }));
    expect(err).toMatchObject({ kind: 'rejected', code: 'request_not_sent', extra: { notSent: true } });
    const thrown = setup(() => {
      throw new TypeError('client cannot send');
    });
    // The SDK wraps what fails after the request left in a connection error; anything else never left.
    await expect(providerError(thrown.provider.retrieveIntent('pi_1'))).resolves.toMatchObject({ kind: 'unknown', code: 'NETWORK_ERROR' });
    expect(http.sent).toHaveLength(0);
  });

  it('a reset connection is retried once by the SDK with the same idempotency key, then unknown', async () => {
    const reset = setup(() => {
      throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    });
    const err = await providerError(reset.provider.confirmIntent('pi_1', { paymentId: 'pay_1', attempt: 1, paymentMethod: 'tok_x' }));
    expect(err).toMatchObject({ kind: 'unknown', code: 'NETWORK_ERROR' });
    expect(reset.http.sent.map((r) => header(r, 'Idempotency-Key'))).toEqual(['confirm-pay_1-1', 'confirm-pay_1-1']);
  });
});

describe('toIntent', () => {
  it('turns Stripe amounts into ours: MGA is whole units at Stripe, three-decimal currencies keep their unit', () => {
    expect(toIntent(intentJson({ amount: 10, currency: 'mga' })).amountMinor).toBe(1000);
    expect(toIntent(intentJson({ amount: 12_300, currency: 'kwd' })).amountMinor).toBe(12_300);
    expect(toIntent(intentJson({ amount: 500, currency: 'jpy' })).amountMinor).toBe(500);
  });

  it('maps an expanded charge, the last error and upper-cases the currency', () => {
    expect(
      toIntent(
        intentJson({
          status: 'succeeded',
          amount_received: 4200,
          latest_charge: { id: 'ch_1', object: 'charge', amount_refunded: 200 },
          last_payment_error: { type: 'card_error', code: 'expired_card', message: 'expired' },
        }),
      ),
    ).toEqual({
      id: 'pi_1',
      paymentId: 'pay_1',
      status: 'succeeded',
      amountMinor: 4200,
      currency: 'EUR',
      amountReceived: 4200,
      amountRefunded: 200,
      latestChargeId: 'ch_1',
      lastError: { code: 'expired_card', message: 'expired' },
      created: 1_700_000_000,
    });
  });

  it('takes no charge id from an intent that did not capture (latest_charge may be a failed attempt)', () => {
    expect(toIntent(intentJson({ latest_charge: 'ch_failed' })).latestChargeId).toBeUndefined();
  });

  it('refuses an unknown status', () => {
    expect(() => toIntent(intentJson({ status: 'weird' }))).toThrow(ProviderError);
  });
});

describe('createStripeProvider', () => {
  it('needs a key and a positive timeout', () => {
    expect(() => createStripeProvider({ apiKey: '' })).toThrow();
    expect(() => createStripeProvider({ apiKey: 'sk_test_x', timeoutMs: 0 })).toThrow(RangeError);
  });
});
