/**
 * The replay fast path: a create first reads the payment its key's first generation would be, and a
 * live `keyExpiresAt` on it settles the answer (replay or 422) with that one read. Everything else
 * goes to the transaction as before. The store here honours key expiry like the DynamoDB condition
 * (`attribute_not_exists(pk) OR expiresAt <= :now`), and counts what the service asked of it.
 */
import { describe, expect, it } from 'vitest';
import type { CreatePaymentRequest } from '../../functions/core/create-request';
import { IdempotencyKeyMismatchError } from '../../functions/core/errors';
import type { Payment } from '../../functions/core/payment';
import { PaymentsService } from '../../functions/core/payments-service';
import type { IdempotencyRecord, InsertResult } from '../../functions/core/ports';
import { TEST_EPOCH } from '../helpers/clock';
import { FakeQueue } from '../helpers/fakes';

class ExpiringKeyStore {
  readonly keys = new Map<string, IdempotencyRecord>();
  readonly payments = new Map<string, Payment>();
  readonly calls = { get: 0, getKey: 0, insertWithKey: 0 };
  async get(id: string) {
    this.calls.get++;
    return this.payments.get(id);
  }
  async getKey(tenantId: string, key: string) {
    this.calls.getKey++;
    return this.keys.get(`${tenantId}#${key}`);
  }
  transition = () => Promise.reject(new Error('not used'));
  async insertWithKey(payment: Payment, key: IdempotencyRecord, now: number): Promise<InsertResult> {
    this.calls.insertWithKey++;
    const pk = `${key.tenantId}#${key.idempotencyKey}`;
    const held = this.keys.get(pk);
    const keyFree = !held || held.expiresAt <= now;
    const existing = this.payments.get(payment.id);
    if (!keyFree || existing) return { kind: 'conflict', ...(keyFree ? {} : { key: held }), ...(existing ? { payment: existing } : {}) };
    this.keys.set(pk, key);
    this.payments.set(payment.id, payment);
    return { kind: 'created' };
  }
  reset() {
    this.calls.get = this.calls.getKey = this.calls.insertWithKey = 0;
  }
}

const request = (over: Partial<CreatePaymentRequest> = {}): CreatePaymentRequest => ({
  idempotencyKey: 'order-7',
  amountMinor: 1000,
  currency: 'EUR',
  paymentMethod: { type: 'card', token: 'tok_success' },
  metadata: {},
  ...over,
});

function setup() {
  const store = new ExpiringKeyStore();
  let now = TEST_EPOCH;
  const service = (replayByRead?: boolean) =>
    new PaymentsService({ store, queue: new FakeQueue(), clock: () => new Date(now), idempotencyTtlSeconds: 3600, maxRetries: 3, stuckAfterSeconds: 120, ...(replayByRead === undefined ? {} : { replayByRead }) });
  return { store, service, advance: (ms: number) => (now += ms) };
}

describe('replay answered from one read of the payment', () => {
  it('the payment carries the expiry of the key it was created with', async () => {
    const { store, service } = setup();
    const { payment } = await service().create('t1', request());
    const key = await store.getKey('t1', 'order-7');
    expect(payment.keyExpiresAt).toBe(key!.expiresAt);
    expect(payment.keyExpiresAt).toBe(Math.floor(TEST_EPOCH / 1000) + 3600);
  });

  it('a replay is one get and no transaction', async () => {
    const { store, service } = setup();
    const first = await service().create('t1', request());
    store.reset();
    const again = await service().create('t1', request());
    expect(again).toEqual({ payment: first.payment, replayed: true });
    expect(store.calls).toEqual({ get: 1, getKey: 0, insertWithKey: 0 });
  });

  it('the same key with another request is 422 from that one read, and nothing is written', async () => {
    const { store, service } = setup();
    const first = await service().create('t1', request());
    store.reset();
    await expect(service().create('t1', request({ amountMinor: 999 }))).rejects.toBeInstanceOf(IdempotencyKeyMismatchError);
    expect(store.calls).toEqual({ get: 1, getKey: 0, insertWithKey: 0 });
    expect([...store.payments.values()]).toEqual([first.payment]);
  });

  it('another tenant with the same key is not a replay of it', async () => {
    const { service } = setup();
    const a = await service().create('t1', request());
    const b = await service().create('t2', request());
    expect(b.replayed).toBe(false);
    expect(b.payment.id).not.toBe(a.payment.id);
  });

  it('once the key has expired the read does not answer: the transaction takes the key for a new generation', async () => {
    const { store, service, advance } = setup();
    const first = await service().create('t1', request());
    advance(3600_000);
    store.reset();
    const reused = await service().create('t1', request({ amountMinor: 5 }));
    expect(reused.replayed).toBe(false);
    expect(reused.payment.generation).toBe(1);
    expect(reused.payment.id).not.toBe(first.payment.id);
    expect(store.calls.insertWithKey).toBeGreaterThan(0);
    // And the reused key's replays are answered by the transaction path (its first generation is stale).
    const again = await service().create('t1', request({ amountMinor: 5 }));
    expect(again).toMatchObject({ replayed: true, payment: { id: reused.payment.id } });
  });

  it('a payment written before keyExpiresAt was kept is answered by the transaction, not by the read', async () => {
    const { store, service } = setup();
    const { payment } = await service().create('t1', request());
    const { keyExpiresAt: _dropped, ...legacy } = payment;
    store.payments.set(payment.id, legacy as Payment);
    store.reset();
    const again = await service().create('t1', request());
    expect(again).toMatchObject({ replayed: true, payment: { id: payment.id } });
    expect(store.calls.insertWithKey).toBe(1);
  });

  it('with the read turned off every create is a transaction (the benchmark variant)', async () => {
    const { store, service } = setup();
    await service(false).create('t1', request());
    store.reset();
    const again = await service(false).create('t1', request());
    expect(again.replayed).toBe(true);
    expect(store.calls).toMatchObject({ get: 0, insertWithKey: 1 });
  });
});
