/**
 * Tenancy and operator scope without I/O: who may retry or re-open what, the re-open budget, key
 * reuse past five expiries, hostile ids and metadata keys, the principal mapping and single decoding
 * of path parameters in the API adapter.
 */
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { parseCreatePaymentRequest } from '../../functions/core/create-request';
import { AppError } from '../../functions/core/errors';
import type { Payment } from '../../functions/core/payment';
import { publicError } from '../../functions/core/payment-view';
import { MAX_REOPENS, PaymentsService } from '../../functions/core/payments-service';
import type { IdempotencyRecord, InsertResult } from '../../functions/core/ports';
import type { Principal } from '../../functions/core/principal';
import { CachedPrincipalDirectory, type PrincipalRecord } from '../../functions/adapters/dynamo/principals';
import { apiHandler, json, principalOf } from '../../functions/shared/http';
import { FakeClock, FakeQueue, FakeRepository } from '../helpers/fakes';

/** FakeRepository plus the key table, with the adapter's conditions (key absent or expired; id unused). */
class KeyedStore extends FakeRepository {
  readonly keys = new Map<string, IdempotencyRecord>();
  override async getKey(tenantId: string, key: string): Promise<IdempotencyRecord | undefined> {
    return structuredClone(this.keys.get(`${tenantId}#${key}`));
  }
  override async insertWithKey(payment: Payment, key: IdempotencyRecord, now: number): Promise<InsertResult> {
    const pk = `${key.tenantId}#${key.idempotencyKey}`;
    const held = this.keys.get(pk);
    const keyBlocked = held !== undefined && held.expiresAt > now;
    const existing = this.items.get(payment.id);
    if (keyBlocked || existing) return { kind: 'conflict', key: keyBlocked ? structuredClone(held) : undefined, payment: existing && structuredClone(existing) };
    this.keys.set(pk, structuredClone(key));
    this.put(payment);
    return { kind: 'created' };
  }
}

const tenant = (tenantId: string): Principal => ({ kind: 'tenant', tenantId });
const operator: Principal = { kind: 'operator', name: 'alice' };

function setup() {
  const clock = new FakeClock();
  const store = new KeyedStore();
  const queue = new FakeQueue();
  const service = new PaymentsService({ store, queue, clock: clock.now, idempotencyTtlSeconds: 60, maxRetries: 3, stuckAfterSeconds: 120 });
  return { clock, store, queue, service };
}

const request = (key: string) => ({ idempotencyKey: key, amountMinor: 1000, currency: 'USD', paymentMethod: { type: 'card', token: 'tok_success' }, metadata: {} });

async function failedRetryable(s: ReturnType<typeof setup>, tenantId = 'tenant-1'): Promise<Payment> {
  const { payment } = await s.service.create(tenantId, request(`k-${Math.random()}`));
  const failed: Payment = {
    ...payment,
    status: 'failed',
    version: 5,
    retryCount: 3,
    lastError: { code: 'PROVIDER_UNAVAILABLE', message: 'x', retryable: true, timestamp: '' },
  };
  s.store.put(failed);
  return failed;
}

const codeOf = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
    return 'resolved';
  } catch (err) {
    return err instanceof AppError ? `${err.httpStatus} ${err.code}` : String(err);
  }
};

describe('operator scope of POST /retry', () => {
  it('lets a tenant run its own retrying payment now, and no other tenant', async () => {
    const s = setup();
    const { payment } = await s.service.create('tenant-1', request('r1'));
    s.store.put({ ...payment, status: 'retrying' });
    s.queue.sent.length = 0;
    await s.service.retryNow(tenant('tenant-1'), payment.id, undefined);
    expect(s.queue.sent.map((m) => m.message.reason)).toEqual(['operator_retry']);
    expect(await codeOf(s.service.retryNow(tenant('tenant-2'), payment.id, undefined))).toBe('404 PAYMENT_NOT_FOUND');
  });

  it('refuses a tenant re-opening a failed payment (403 OPERATOR_ONLY) and changes nothing', async () => {
    const s = setup();
    const failed = await failedRetryable(s);
    expect(await codeOf(s.service.retryNow(tenant('tenant-1'), failed.id, undefined))).toBe('403 OPERATOR_ONLY');
    expect((await s.store.get(failed.id))!.version).toBe(failed.version);
  });

  it('an operator re-opens any tenant payment as itself, on a new intent, at most MAX_REOPENS times', async () => {
    const s = setup();
    let p = await failedRetryable(s, 'tenant-2');
    for (let n = 1; n <= MAX_REOPENS; n++) {
      const reopened = await s.service.retryNow(operator, p.id, 'provider back');
      expect(reopened).toMatchObject({ status: 'retrying', reopenCount: n, intentSeq: n, lastChange: { action: 'operator_reopen', actor: 'operator:alice' } });
      p = { ...reopened, status: 'failed', version: reopened.version + 1 };
      s.store.put(p);
    }
    expect(await codeOf(s.service.retryNow(operator, p.id, undefined))).toBe('409 REOPEN_LIMIT_REACHED');
    expect((await s.store.get(p.id))!.status).toBe('failed');
  });

  it('answers ids no payment can have with 404, without reading the store', async () => {
    const s = setup();
    s.store.failNextGet = new Error('a DynamoDB ValidationException for a 2 KB key');
    for (const id of ['p'.repeat(3000), 'pay_%41', '../x', '']) {
      expect(await codeOf(s.service.get('tenant-1', id))).toBe('404 PAYMENT_NOT_FOUND');
      expect(await codeOf(s.service.retryNow(operator, id, undefined))).toBe('404 PAYMENT_NOT_FOUND');
    }
  });
});

describe('idempotency key reuse after expiry', () => {
  it('continues from the expired generation, however many reuses came before (no 503 after five)', async () => {
    const s = setup();
    const ids = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const { payment, replayed } = await s.service.create('tenant-1', request('reused'));
      expect(replayed).toBe(false);
      expect(payment.generation).toBe(i);
      ids.add(payment.id);
      s.clock.advance(61_000);
    }
    expect(ids.size).toBe(12);
  });
});

describe('hostile metadata keys', () => {
  it.each(['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', 'prototype'])('rejects %s with INVALID_METADATA', (key) => {
    const body = JSON.parse(`{"idempotencyKey":"k","amount":1,"currency":"USD","paymentMethod":{"type":"card","token":"tok_success"},"metadata":{"${key}":"x"}}`);
    let err: unknown;
    try {
      parseCreatePaymentRequest(body, undefined, { maxAmount: 1e6 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe('INVALID_METADATA');
  });
});

describe('lastError as shown', () => {
  it('never shows stored provider text or odd details', () => {
    const shown = publicError({
      code: 'PROVIDER_UNAVAILABLE',
      message: 'Provider unavailable (tok_fail_always)',
      details: { attempt: 2, outcome: 'unknown', raw: 'tok_fail_always '.repeat(1000), nested: { a: 1 } },
      retryable: true,
      timestamp: 't',
    });
    expect(JSON.stringify(shown)).not.toContain('tok_');
    expect(shown).toEqual({ code: 'PROVIDER_UNAVAILABLE', message: expect.any(String), details: { attempt: 2, outcome: 'unknown' }, retryable: true, timestamp: 't' });
    expect(publicError({ code: 'weird <code>', message: 'm', retryable: false, timestamp: 't' })!.code).toBe('PAYMENT_ERROR');
  });
});

/** The principals table in memory, with the records the tenants command writes; counts reads. */
function principalsTable(records: Record<string, string | { principal: string; status: 'active' | 'revoked' }>) {
  const items = new Map<string, PrincipalRecord>(
    Object.entries(records).map(([apiKeyId, r]) => {
      const { principal, status } = typeof r === 'string' ? { principal: r, status: 'active' as const } : r;
      return [apiKeyId, { apiKeyId, principal, status, createdAt: 't', updatedAt: 't' }];
    }),
  );
  let reads = 0;
  return {
    items,
    reads: () => reads,
    async get(id: string) {
      reads++;
      return items.get(id);
    },
  };
}

describe('API keys to principals', () => {
  const table = principalsTable({ id1: 'tenant:tenant-1', id1b: 'tenant:tenant-1', ops: 'operator:alice', gone: { principal: 'tenant:tenant-1', status: 'revoked' }, bad: 'admin:x' });
  const map = new CachedPrincipalDirectory(table, { cacheSeconds: 60 });

  it('maps several key ids to one tenant and refuses unknown, revoked or malformed ones', async () => {
    expect(await principalOf('id1', map)).toEqual(tenant('tenant-1'));
    expect(await principalOf('id1b', map)).toEqual(tenant('tenant-1'));
    expect(await principalOf('ops', map)).toEqual(operator);
    for (const id of ['tenant-1', 'operator:alice', 'gone', 'bad', '', undefined]) await expect(principalOf(id, map)).rejects.toThrow(/API key/);
  });

  it('caches a lookup for the configured time, an unknown id only briefly: a revoke or a new key takes effect without a deploy', async () => {
    let now = 1_000_000;
    const t = principalsTable({ k1: 'tenant:tenant-1' });
    const dir = new CachedPrincipalDirectory(t, { cacheSeconds: 60, missCacheSeconds: 5, now: () => now });
    expect(await dir.resolve('k1')).toEqual(tenant('tenant-1'));
    expect(await dir.resolve('k1')).toEqual(tenant('tenant-1'));
    expect(t.reads()).toBe(1);
    // Revoked by the tenants command: still served from this instance's cache until it expires.
    t.items.set('k1', { ...t.items.get('k1')!, status: 'revoked' });
    now += 59_000;
    expect(await dir.resolve('k1')).toEqual(tenant('tenant-1'));
    now += 2_000;
    expect(await dir.resolve('k1')).toBeUndefined();
    // A key added after an instance saw it unknown works once the short miss cache expires.
    expect(await dir.resolve('k2')).toBeUndefined();
    t.items.set('k2', { apiKeyId: 'k2', principal: 'tenant:tenant-2', status: 'active', createdAt: 't', updatedAt: 't' });
    now += 4_000;
    expect(await dir.resolve('k2')).toBeUndefined();
    now += 2_000;
    expect(await dir.resolve('k2')).toEqual(tenant('tenant-2'));
  });

  it('200 concurrent requests with a cold cache make one read', async () => {
    const t = principalsTable({ k1: 'tenant:tenant-1' });
    const dir = new CachedPrincipalDirectory(t, { cacheSeconds: 60 });
    const all = await Promise.all(Array.from({ length: 200 }, () => dir.resolve('k1')));
    expect(new Set(all.map((p) => JSON.stringify(p)))).toEqual(new Set([JSON.stringify(tenant('tenant-1'))]));
    expect(t.reads()).toBe(1);
  });

  const event = (apiKeyId: string, pathParameters: Record<string, string> = {}) =>
    ({ httpMethod: 'GET', resource: '/r', headers: {}, pathParameters, requestContext: { requestId: 'r', identity: { apiKeyId } } }) as unknown as APIGatewayProxyEvent;
  const echo = (access: 'tenant' | 'operator' | 'any') =>
    apiHandler(async (req) => json(200, { principal: req.principal, params: req.pathParameters }), { access, identity: () => ({ principals: map }) });

  it('keeps tenants off operator routes and operators off tenant routes', async () => {
    const op = await echo('operator')(event('id1'));
    expect(op.statusCode).toBe(403);
    expect(JSON.parse(op.body).error).toMatchObject({ code: 'OPERATOR_ONLY', timestamp: expect.any(String) });
    expect(JSON.parse((await echo('tenant')(event('ops'))).body).error.code).toBe('TENANT_ONLY');
    expect(JSON.parse((await echo('any')(event('ops'))).body).principal).toEqual(operator);
  });

  it('uses path parameters as the gateway decoded them, without decoding again', async () => {
    const res = await echo('tenant')(event('id1', { idempotencyKey: 'a%41-x', paymentID: '%70ay_1' }));
    expect(JSON.parse(res.body).params).toEqual({ idempotencyKey: 'a%41-x', paymentID: '%70ay_1' });
  });
});
