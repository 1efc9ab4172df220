/**
 * The HTTP contract every route shares: Retry-After on retryable errors only, `details` always an
 * array, Location on 201, amountMinor beside amount, and the listing's query parameters.
 */
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { createPaymentRoute } from '../../functions/api/create-payment';
import { AppError, ConcurrentUpdateError, IdempotencyKeyMismatchError, InvalidStateTransitionError, ServiceUnavailableError } from '../../functions/core/errors';
import { LIST_DEFAULT_LIMIT, parseListParams } from '../../functions/core/list-payments';
import { PaymentsService } from '../../functions/core/payments-service';
import { apiHandler, type ApiRequest } from '../../functions/shared/http';
import { logger } from '../../functions/shared/logger';
import { FakeClock, FakeQueue, KeyedStore } from '../helpers/fakes';

function event(body?: unknown) {
  return {
    httpMethod: 'POST',
    resource: '/api/payments/process',
    path: '/api/payments/process',
    headers: { 'content-type': 'application/json' },
    multiValueHeaders: {},
    pathParameters: null,
    queryStringParameters: null,
    multiValueQueryStringParameters: null,
    stageVariables: null,
    body: body === undefined ? null : JSON.stringify(body),
    isBase64Encoded: false,
    requestContext: { requestId: 'req-1', identity: { apiKeyId: 'tenant-1' } } as never,
  } as never;
}

// The 5xx cases log an error by design; keep the run quiet.
beforeAll(() => {
  vi.spyOn(logger, 'error').mockImplementation(() => {});
});

const failing = (err: unknown) => apiHandler(async (_req: ApiRequest) => {
  throw err;
});

describe('error responses', () => {
  it.each([
    ['503 SERVICE_UNAVAILABLE', new ServiceUnavailableError(), 503],
    ['409 CONCURRENT_UPDATE', new ConcurrentUpdateError(undefined), 409],
    ['500 for an unexpected error', new Error('boom'), 500],
  ])('%s is retryable and carries Retry-After', async (_name, err, status) => {
    const res = await failing(err)(event());
    expect(res.statusCode).toBe(status);
    expect(JSON.parse(res.body).error.retryable).toBe(true);
    expect(res.headers?.['Retry-After']).toBe('1');
  });

  it.each([
    ['400', new AppError('INVALID_JSON', 'bad', 400)],
    ['409 INVALID_STATE_TRANSITION', new InvalidStateTransitionError('success', 'processing')],
    ['422', new IdempotencyKeyMismatchError('pay_1')],
  ])('%s is not retryable and carries no Retry-After', async (_name, err) => {
    const res = await failing(err)(event());
    expect(JSON.parse(res.body).error.retryable).toBe(false);
    expect(res.headers).not.toHaveProperty('Retry-After');
  });

  it('details is always an array of {code, message, field?} objects', async () => {
    for (const err of [new IdempotencyKeyMismatchError('pay_1'), new InvalidStateTransitionError('success', 'processing')]) {
      const { details } = JSON.parse((await failing(err)(event())).body).error;
      expect(Array.isArray(details)).toBe(true);
      for (const d of details) expect(d).toMatchObject({ code: expect.any(String), message: expect.any(String) });
    }
    const validation = JSON.parse((await createHandler()(event({ idempotencyKey: 'k', amount: -1 }))).body).error;
    expect(validation.details.map((d: { field: string }) => d.field)).toEqual(expect.arrayContaining(['amount', 'currency']));
  });
});

function createHandler() {
  const clock = new FakeClock();
  const payments = new PaymentsService({
    store: new KeyedStore(),
    queue: new FakeQueue(),
    clock: clock.now,
    idempotencyTtlSeconds: 86_400,
    maxRetries: 3,
    stuckAfterSeconds: 120,
  });
  return apiHandler(createPaymentRoute({ payments, maxAmount: 1_000_000 }));
}

describe('201 created', () => {
  it('carries Location and amountMinor, on the first response and on a replay', async () => {
    const create = createHandler();
    const body = { idempotencyKey: 'order-1', amount: 12.3, currency: 'KWD', paymentMethod: { type: 'card', token: 'tok_success' } };
    const first = await create(event(body));
    const replay = await create(event(body));
    for (const res of [first, replay]) {
      const payment = JSON.parse(res.body);
      expect(res.statusCode).toBe(201);
      expect(payment).toMatchObject({ amount: 12.3, amountMinor: 12_300, currency: 'KWD' });
      expect(res.headers?.Location).toBe(`/api/payments/${payment.id}`);
    }
    expect(replay.headers?.['Idempotent-Replayed']).toBe('true');
  });
});

describe('GET /api/payments query parameters', () => {
  const code = (q: Record<string, string>) => {
    try {
      parseListParams(q);
      return 'ok';
    } catch (err) {
      return (err as AppError).code;
    }
  };

  it('defaults the page size and accepts status, limit 1..100 and a cursor', () => {
    expect(parseListParams({})).toEqual({ limit: LIST_DEFAULT_LIMIT, status: undefined });
    expect(parseListParams({ status: 'failed', limit: '100', cursor: 'abc' })).toEqual({ status: 'failed', limit: 100, cursor: 'abc' });
    expect(code({ limit: '1' })).toBe('ok');
  });

  it.each([
    [{ limit: '0' }, 'INVALID_QUERY_PARAMETER'],
    [{ limit: '101' }, 'INVALID_QUERY_PARAMETER'],
    [{ limit: '2.5' }, 'INVALID_QUERY_PARAMETER'],
    [{ status: 'done' }, 'INVALID_QUERY_PARAMETER'],
    [{ state: 'failed' }, 'INVALID_QUERY_PARAMETER'],
    [{ cursor: '' }, 'INVALID_CURSOR'],
  ])('%o is %s', (q, expected) => {
    expect(code(q)).toBe(expected);
  });
});
