/**
 * How a create reaches its answer (CreatePath). By default one read of the key's first payment answers a
 * replay, and a new key is one conditional put of that payment, which carries the key; only a key reused
 * after expiry takes the transaction. The store honours key expiry like the DynamoDB conditions
 * (`attribute_not_exists(pk) OR expiresAt <= :now`, `attribute_not_exists(id)`), recognises a put of the
 * same call sent again, lets a test land another create between the service's steps, and counts what the
 * service asked of it.
 */
import { describe, expect, it } from 'vitest';
import type { CreatePaymentRequest } from '../../functions/core/create-request';
import { IdempotencyKeyMismatchError, NotFoundError } from '../../functions/core/errors';
import { paymentIdFor } from '../../functions/core/ids';
import type { Payment } from '../../functions/core/payment';
import { deployedCreatePath, PaymentsService, type CreatePath } from '../../functions/core/payments-service';
import type { FirstInsertResult, IdempotencyRecord, InsertResult } from '../../functions/core/ports';
import { TEST_EPOCH } from '../helpers/clock';
import { FakeQueue } from '../helpers/fakes';

class ExpiringKeyStore {
  readonly keys = new Map<string, IdempotencyRecord>();
  readonly payments = new Map<string, Payment>();
  readonly writeIds = new Map<string, string>();
  readonly calls = { get: 0, getKey: 0, insertFirst: 0, insertWithKey: 0 };
  /** Runs before the next write (put or transaction) is judged: another create landing first. */
  beforeWrite?: () => void;
  async get(id: string) {
    this.calls.get++;
    return this.payments.get(id);
  }
  async getKey(tenantId: string, key: string) {
    this.calls.getKey++;
    return this.keys.get(`${tenantId}#${key}`);
  }
  transition = () => Promise.reject(new Error('not used'));
  private landOther() {
    const other = this.beforeWrite;
    this.beforeWrite = undefined;
    other?.();
  }
  async insertFirst(payment: Payment, writeId: string): Promise<FirstInsertResult> {
    this.calls.insertFirst++;
    this.landOther();
    const stored = this.payments.get(payment.id);
    if (stored) return this.writeIds.get(payment.id) === writeId ? { kind: 'created' } : { kind: 'exists', payment: stored };
    this.payments.set(payment.id, payment);
    this.writeIds.set(payment.id, writeId);
    return { kind: 'created' };
  }
  async insertWithKey(payment: Payment, key: IdempotencyRecord, now: number): Promise<InsertResult> {
    this.calls.insertWithKey++;
    this.landOther();
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
    this.calls.get = this.calls.getKey = this.calls.insertFirst = this.calls.insertWithKey = 0;
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
  const queue = new FakeQueue();
  let now = TEST_EPOCH;
  const service = (createPath?: CreatePath) =>
    new PaymentsService({ store, queue, clock: () => new Date(now), idempotencyTtlSeconds: 3600, maxRetries: 3, stuckAfterSeconds: 120, ...(createPath ? { createPath } : {}) });
  return { store, queue, service, advance: (ms: number) => (now += ms) };
}

describe('create: one read answers a replay, one put makes a new key', () => {
  it('a new key is one read and one put: no key record, no transaction; the payment carries its key', async () => {
    const { store, queue, service } = setup();
    const { payment, replayed } = await service().create('t1', request());
    expect(replayed).toBe(false);
    expect(store.calls).toEqual({ get: 1, getKey: 0, insertFirst: 1, insertWithKey: 0 });
    expect(store.keys.size).toBe(0);
    expect(payment).toMatchObject({ id: paymentIdFor('t1', 'order-7', 0), generation: 0, keyExpiresAt: Math.floor(TEST_EPOCH / 1000) + 3600 });
    expect(queue.sent.map((s) => s.message)).toEqual([{ paymentId: payment.id, reason: 'created' }]);
  });

  it('a replay is one get, nothing written and nothing sent', async () => {
    const { store, queue, service } = setup();
    const first = await service().create('t1', request());
    store.reset();
    queue.sent.length = 0;
    const again = await service().create('t1', request());
    expect(again).toEqual({ payment: first.payment, replayed: true });
    expect(store.calls).toEqual({ get: 1, getKey: 0, insertFirst: 0, insertWithKey: 0 });
    expect(queue.sent).toEqual([]);
  });

  it('the same key with another request is 422 from that one read, and nothing is written', async () => {
    const { store, service } = setup();
    const first = await service().create('t1', request());
    store.reset();
    await expect(service().create('t1', request({ amountMinor: 999 }))).rejects.toBeInstanceOf(IdempotencyKeyMismatchError);
    expect(store.calls).toEqual({ get: 1, getKey: 0, insertFirst: 0, insertWithKey: 0 });
    expect([...store.payments.values()]).toEqual([first.payment]);
  });

  it('another tenant with the same key is not a replay of it', async () => {
    const { service } = setup();
    const a = await service().create('t1', request());
    const b = await service().create('t2', request());
    expect(b.replayed).toBe(false);
    expect(b.payment.id).not.toBe(a.payment.id);
  });

  it('a create that lands between the read and the put makes this request its replay (or 422), never a second payment', async () => {
    const { store, queue, service } = setup();
    // The other create, made as the service makes it, lands after our read and before our put.
    const { service: other } = setup();
    const made = (await other().create('t1', request())).payment;
    store.beforeWrite = () => store.payments.set(made.id, made);
    const res = await service().create('t1', request());
    expect(res).toEqual({ payment: made, replayed: true });
    expect([...store.payments.keys()]).toEqual([made.id]);
    expect(queue.sent).toEqual([]);

    store.payments.clear();
    store.beforeWrite = () => store.payments.set(made.id, made);
    await expect(service().create('t1', request({ amountMinor: 999 }))).rejects.toBeInstanceOf(IdempotencyKeyMismatchError);
    expect(store.calls.insertWithKey).toBe(0);
    expect([...store.payments.keys()]).toEqual([made.id]);
  });

  it('a put of this very call sent again (its answer lost) is this call\'s create, and its message is sent', async () => {
    const { store, queue, service } = setup();
    const orig = store.insertFirst.bind(store);
    store.insertFirst = async (p, w) => {
      await orig(p, w); // lands, but the answer is lost; the SDK sends it again
      return orig(p, w);
    };
    const res = await service().create('t1', request());
    expect(res.replayed).toBe(false);
    expect(queue.sent.map((s) => s.message.paymentId)).toEqual([res.payment.id]);
  });

  it('once the key has expired, the transaction takes it for generation 1 (no put that could only fail)', async () => {
    const { store, service, advance } = setup();
    const first = await service().create('t1', request());
    advance(3600_000);
    store.reset();
    const reused = await service().create('t1', request({ amountMinor: 5 }));
    expect(reused.replayed).toBe(false);
    expect(reused.payment.generation).toBe(1);
    expect(reused.payment.id).not.toBe(first.payment.id);
    expect(store.calls).toEqual({ get: 1, getKey: 0, insertFirst: 0, insertWithKey: 1 });
    // The reused key's replays are answered by the transaction path (its first generation is stale).
    const again = await service().create('t1', request({ amountMinor: 5 }));
    expect(again).toMatchObject({ replayed: true, payment: { id: reused.payment.id } });
  });

  it('a key reused again and again after TTL deleted its record: the next generation is found from the payments, never a 503', async () => {
    const { store, service, advance } = setup();
    await service().create('t1', request());
    for (let use = 1; use <= 40; use++) {
      advance(3600_000);
      store.keys.clear(); // DynamoDB's TTL deleted the expired record
      store.reset();
      const reused = await service().create('t1', request({ amountMinor: 100 + use }));
      expect(reused).toMatchObject({ replayed: false, payment: { generation: use } });
      // At most two transactions (the first tries generation 1), and a handful of reads to find the
      // generation (about 2 log of the reuses).
      expect(store.calls.insertWithKey).toBeLessThanOrEqual(2);
      expect(store.calls.get).toBeLessThanOrEqual(2 + 2 * Math.ceil(Math.log2(use + 1)));
    }
    expect(store.payments.size).toBe(41);
  });

  it('a payment written before keyExpiresAt was kept is answered by the transaction, not by the read', async () => {
    const { store, service } = setup();
    const { payment } = await service('transaction').create('t1', request());
    const { keyExpiresAt: _dropped, ...legacy } = payment;
    store.payments.set(payment.id, legacy as Payment);
    store.reset();
    const again = await service().create('t1', request());
    expect(again).toMatchObject({ replayed: true, payment: { id: payment.id } });
    expect(store.calls).toMatchObject({ insertFirst: 0, insertWithKey: 1 });
  });

  it('the transaction path finds a live first payment with no key record (put by a concurrent create): a replay', async () => {
    const { store, service } = setup();
    const { service: other } = setup();
    const made = (await other().create('t1', request())).payment;
    store.beforeWrite = () => store.payments.set(made.id, made);
    const res = await service('read-tx').create('t1', request());
    expect(res).toEqual({ payment: made, replayed: true });
    expect([...store.payments.keys()]).toEqual([made.id]);
  });
});

describe('create paths kept for the benchmark', () => {
  it("'put': no read; a replay is the put's failed condition", async () => {
    const { store, service } = setup();
    await service('put').create('t1', request());
    store.reset();
    const again = await service('put').create('t1', request());
    expect(again.replayed).toBe(true);
    expect(store.calls).toEqual({ get: 0, getKey: 0, insertFirst: 1, insertWithKey: 0 });
  });

  it("'read-tx' creates with the transaction; 'transaction' answers everything from it", async () => {
    const { store, service } = setup();
    await service('read-tx').create('t1', request());
    expect(store.calls).toEqual({ get: 1, getKey: 0, insertFirst: 0, insertWithKey: 1 });
    expect(store.keys.size).toBe(1);
    store.reset();
    const again = await service('transaction').create('t1', request());
    expect(again.replayed).toBe(true);
    expect(store.calls).toMatchObject({ get: 0, insertFirst: 0, insertWithKey: 1 });
  });
});

describe('the deployed path (CREATE_BY_TRANSACTION)', () => {
  it('true writes new keys with a key record, as versions before the put did, and still reads put-made keys', async () => {
    expect(deployedCreatePath(false)).toBe('read-put');
    expect(deployedCreatePath(true)).toBe('read-tx');
    const { store, service } = setup();
    const byTx = await service(deployedCreatePath(true)).create('t1', request({ idempotencyKey: 'tx-made' }));
    expect(store.keys.get('t1#tx-made')).toMatchObject({ paymentId: byTx.payment.id });
    // A key the put made (the version after, or before a rollback) is replayed and looked up, not taken again.
    const byPut = await service(deployedCreatePath(false)).create('t1', request({ idempotencyKey: 'put-made' }));
    expect(store.keys.has('t1#put-made')).toBe(false);
    expect(await service(deployedCreatePath(true)).create('t1', request({ idempotencyKey: 'put-made' }))).toEqual({ payment: byPut.payment, replayed: true });
    expect((await service(deployedCreatePath(true)).keyRecord('t1', 'put-made')).payment.id).toBe(byPut.payment.id);
  });
});

describe('key lookups', () => {
  it('a key made by the put is found through its first payment, until it expires', async () => {
    const { service, advance } = setup();
    const { payment } = await service().create('t1', request());
    const found = await service().keyRecord('t1', 'order-7');
    expect(found.payment).toEqual(payment);
    expect(found.record).toMatchObject({ paymentId: payment.id, generation: 0, requestHash: payment.requestHash, expiresAt: payment.keyExpiresAt });
    expect(await service().keyState('t1', 'order-7', request())).toMatchObject({ state: 'in_use', matches: true });
    expect(await service().keyState('t1', 'order-7', request({ amountMinor: 1 }))).toMatchObject({ state: 'in_use', matches: false });
    await expect(service().keyRecord('t2', 'order-7')).rejects.toBeInstanceOf(NotFoundError);
    advance(3600_000);
    await expect(service().keyRecord('t1', 'order-7')).rejects.toBeInstanceOf(NotFoundError);
    expect(await service().keyState('t1', 'order-7')).toEqual({ state: 'available' });
  });

  it('a reused key is found through its key record, not the expired first payment', async () => {
    const { service, advance } = setup();
    await service().create('t1', request());
    advance(3600_000);
    const reused = await service().create('t1', request({ amountMinor: 5 }));
    const found = await service().keyRecord('t1', 'order-7');
    expect(found.record).toMatchObject({ paymentId: reused.payment.id, generation: 1 });
    expect(found.payment.id).toBe(reused.payment.id);
  });
});
