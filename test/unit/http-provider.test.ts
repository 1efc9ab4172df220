import { describe, expect, it, vi } from 'vitest';
import { createHttpProvider, parseRetryAfter } from '../../functions/adapters/provider/http-provider';
import { ProviderLookupError, type ChargeRequest } from '../../functions/core/provider';

const req: ChargeRequest = {
  idempotencyKey: 'pay_1:1',
  paymentId: 'pay_1',
  amountMinor: 1250,
  currency: 'EUR',
  token: 'tok_success',
  metadata: { orderId: 'o-1' },
};

const json = (status: number, body: unknown, headers: Record<string, string> = {}): Response =>
  new Response(body === undefined ? null : typeof body === 'string' ? body : JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });

/** A fetch double answering every call with `respond`. */
function fakeFetch(respond: (url: string, init: RequestInit) => Response | Promise<Response>) {
  return vi.fn<typeof fetch>(async (input, init) => respond(String(input), init ?? {}));
}

/** A fetch double that never answers but honours the abort signal, like the real fetch. */
const hangingFetch = vi.fn<typeof fetch>(
  (_input, init) =>
    new Promise<Response>((_resolve, reject) => {
      const signal = init?.signal;
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
    }),
);

const provider = (f: typeof fetch, timeoutMs = 1000) => createHttpProvider({ baseUrl: 'http://sim.test/', timeoutMs, fetchImpl: f });

describe('http provider: charge', () => {
  it('posts the request with the idempotency key and maps 2xx to succeeded', async () => {
    const f = fakeFetch(() => json(200, { chargeId: 'ch_1', status: 'succeeded' }));
    await expect(provider(f).charge(req)).resolves.toEqual({ outcome: 'succeeded', chargeId: 'ch_1' });

    expect(f).toHaveBeenCalledTimes(1);
    const [url, init] = f.mock.calls[0]!;
    expect(url).toBe('http://sim.test/v1/charges');
    expect(init?.method).toBe('POST');
    expect((init?.headers as Record<string, string>)['idempotency-key']).toBe('pay_1:1');
    expect(init?.signal).toBeInstanceOf(AbortSignal);
    expect(JSON.parse(init?.body as string)).toEqual(req);
  });

  it('maps 402 to declined with the code from the body', async () => {
    const f = fakeFetch(() => json(402, { error: { code: 'INSUFFICIENT_FUNDS', message: 'no money' } }));
    await expect(provider(f).charge(req)).resolves.toEqual({ outcome: 'declined', code: 'INSUFFICIENT_FUNDS', message: 'no money' });
  });

  it('maps 402 without a readable body to CARD_DECLINED', async () => {
    const f = fakeFetch(() => json(402, 'oops'));
    await expect(provider(f).charge(req)).resolves.toMatchObject({ outcome: 'declined', code: 'CARD_DECLINED' });
  });

  it('maps other 4xx to declined with the body code', async () => {
    const invalid = fakeFetch(() => json(400, { error: { code: 'INVALID_TOKEN', message: 'bad token' } }));
    await expect(provider(invalid).charge(req)).resolves.toEqual({ outcome: 'declined', code: 'INVALID_TOKEN', message: 'bad token' });
    const mismatch = fakeFetch(() => json(409, { error: { code: 'IDEMPOTENCY_MISMATCH', message: 'x' } }));
    await expect(provider(mismatch).charge(req)).resolves.toMatchObject({ outcome: 'declined', code: 'IDEMPOTENCY_MISMATCH' });
    const bare = fakeFetch(() => json(404, undefined));
    await expect(provider(bare).charge(req)).resolves.toMatchObject({ outcome: 'declined', code: 'HTTP_404' });
  });

  it('maps 429 to retryable RATE_LIMITED and honours Retry-After seconds', async () => {
    const f = fakeFetch(() => json(429, { error: { code: 'RATE_LIMITED', message: 'slow down' } }, { 'retry-after': '2' }));
    await expect(provider(f).charge(req)).resolves.toEqual({
      outcome: 'retryable_error',
      code: 'RATE_LIMITED',
      message: 'slow down',
      retryAfterMs: 2000,
    });
  });

  it('maps 5xx to retryable PROVIDER_UNAVAILABLE, with or without a body', async () => {
    const withBody = fakeFetch(() => json(503, { error: { code: 'PROVIDER_UNAVAILABLE', message: 'down' } }));
    await expect(provider(withBody).charge(req)).resolves.toEqual({ outcome: 'retryable_error', code: 'PROVIDER_UNAVAILABLE', message: 'down' });
    const noBody = fakeFetch(() => new Response('<html>bad gateway</html>', { status: 502 }));
    const r = await provider(noBody).charge(req);
    expect(r).toMatchObject({ outcome: 'retryable_error', code: 'PROVIDER_UNAVAILABLE' });
    expect(r).not.toHaveProperty('retryAfterMs');
  });

  it('maps a timeout to unknown PROVIDER_TIMEOUT', async () => {
    const started = Date.now();
    await expect(provider(hangingFetch, 50).charge(req)).resolves.toMatchObject({ outcome: 'unknown', code: 'PROVIDER_TIMEOUT' });
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('maps a body that stalls past the deadline to unknown', async () => {
    const f = fakeFetch((_url, init) => {
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('{"chargeId":'));
          init.signal?.addEventListener('abort', () => controller.error(init.signal?.reason));
        },
      });
      return new Response(body, { status: 200 });
    });
    await expect(provider(f, 50).charge(req)).resolves.toMatchObject({ outcome: 'unknown', code: 'PROVIDER_TIMEOUT' });
  });

  it('maps an abort to unknown PROVIDER_TIMEOUT', async () => {
    const f = fakeFetch(() => {
      throw new DOMException('aborted', 'AbortError');
    });
    await expect(provider(f).charge(req)).resolves.toMatchObject({ outcome: 'unknown', code: 'PROVIDER_TIMEOUT' });
  });

  it('maps a network error to unknown NETWORK_ERROR', async () => {
    const f = fakeFetch(() => {
      throw new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED 127.0.0.1:1') });
    });
    const r = await provider(f).charge(req);
    expect(r).toMatchObject({ outcome: 'unknown', code: 'NETWORK_ERROR' });
    expect(r.outcome === 'unknown' && r.message).toContain('ECONNREFUSED');
  });

  it('treats a 2xx without a charge id as unknown (the charge may exist)', async () => {
    const f = fakeFetch(() => json(200, 'not json'));
    await expect(provider(f).charge(req)).resolves.toMatchObject({ outcome: 'unknown', code: 'INVALID_RESPONSE' });
  });
});

describe('http provider: lookup', () => {
  it('GETs the url-encoded key and maps a recorded success', async () => {
    const f = fakeFetch(() => json(200, { chargeId: 'ch_9', status: 'succeeded' }));
    await expect(provider(f).lookup('pay/1:2')).resolves.toEqual({ found: true, result: { outcome: 'succeeded', chargeId: 'ch_9' } });
    expect(f.mock.calls[0]![0]).toBe('http://sim.test/v1/charges/pay%2F1%3A2');
    expect(f.mock.calls[0]![1]?.method).toBe('GET');
  });

  it('maps a recorded decline', async () => {
    const f = fakeFetch(() => json(200, { chargeId: 'ch_9', status: 'declined', code: 'CARD_DECLINED', message: 'no' }));
    await expect(provider(f).lookup('k')).resolves.toEqual({
      found: true,
      result: { outcome: 'declined', code: 'CARD_DECLINED', message: 'no' },
    });
  });

  it('maps 404 to not found', async () => {
    const f = fakeFetch(() => json(404, { error: { code: 'NOT_FOUND', message: 'none' } }));
    await expect(provider(f).lookup('k')).resolves.toEqual({ found: false });
  });

  it('rejects with ProviderLookupError when it cannot tell', async () => {
    const down = fakeFetch(() => json(503, { error: { code: 'PROVIDER_UNAVAILABLE', message: 'down' } }, { 'retry-after': '3' }));
    const err = await provider(down).lookup('k').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderLookupError);
    expect(err).toMatchObject({ code: 'PROVIDER_UNAVAILABLE', retryAfterMs: 3000 });

    await expect(provider(hangingFetch, 30).lookup('k')).rejects.toMatchObject({ name: 'ProviderLookupError', code: 'PROVIDER_TIMEOUT' });
    const garbage = fakeFetch(() => json(200, { status: 'weird' }));
    await expect(provider(garbage).lookup('k')).rejects.toMatchObject({ code: 'INVALID_RESPONSE' });
  });
});

describe('parseRetryAfter', () => {
  it('reads delta seconds and HTTP dates', () => {
    expect(parseRetryAfter(null)).toBeUndefined();
    expect(parseRetryAfter('1')).toBe(1000);
    expect(parseRetryAfter('0.5')).toBe(500);
    const now = Date.parse('2030-01-01T00:00:00Z');
    expect(parseRetryAfter('Tue, 01 Jan 2030 00:00:05 GMT', now)).toBe(5000);
    expect(parseRetryAfter('Tue, 01 Jan 2029 00:00:05 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon')).toBeUndefined();
  });
});

describe('createHttpProvider', () => {
  it('rejects a non-positive timeout', () => {
    expect(() => createHttpProvider({ baseUrl: 'http://x', timeoutMs: 0 })).toThrow(RangeError);
  });
});
