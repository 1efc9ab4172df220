import type { APIGatewayProxyEvent, DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import { marshall } from '@aws-sdk/util-dynamodb';
import { describe, expect, it } from 'vitest';
import {
  decodeCursor,
  encodeCursor,
  type AppendResult,
  type AuditPage,
  type AuditReader,
  type AuditWriter,
  type PaymentListOptions,
  type TenantListOptions,
} from '../../functions/adapters/dynamo/audit-repository';
import { auditApiRoute, parseAuditQuery } from '../../functions/api/audit-api';
import { createAuditStreamHandler } from '../../functions/audit/audit-stream';
import {
  auditKeyOf,
  entryFromImages,
  entryKeyOf,
  GENESIS_HASH,
  hashEntry,
  parseIsoInstant,
  verifyChain,
  type AuditEntry,
  type AuditKey,
  type PaymentAuditRef,
} from '../../functions/core/audit';
import { canonicalJson } from '../../functions/core/fingerprint';
import type { Payment } from '../../functions/core/payment';
import { apiHandler } from '../../functions/shared/http';
import { testCursorSeal } from '../helpers/fakes';

const TOKEN = 'tok_live_4242424242424242';
const T0 = Date.parse('2024-05-01T10:00:00.000Z');
const at = (s: number) => new Date(T0 + s * 1000).toISOString();

function basePayment(overrides: Partial<Payment> = {}): Payment {
  return {
    id: 'pay_0000000000000000000000000a',
    tenantId: 'tenant-a',
    idempotencyKey: 'key-1',
    generation: 0,
    requestHash: 'f'.repeat(64),
    amountMinor: 1250,
    currency: 'EUR',
    paymentMethod: { type: 'card', token: TOKEN },
    metadata: { orderId: 'o-1' },
    status: 'pending',
    version: 1,
    attempt: 0,
    retryCount: 0,
    maxRetries: 3,
    createdAt: at(0),
    updatedAt: at(0),
    openShard: 'open#03',
    dueAt: T0 + 120_000,
    lastChange: { action: 'created', actor: 'api:tenant-a' },
    ...overrides,
  };
}

/** create → processing → retrying → processing → success, as the worker would write it. */
function lifecycle(id = 'pay_0000000000000000000000000a', tenantId = 'tenant-a'): Payment[] {
  const v1 = basePayment({ id, tenantId, lastChange: { action: 'created', actor: `api:${tenantId}` } });
  const v2: Payment = {
    ...v1,
    status: 'processing',
    version: 2,
    attempt: 1,
    leaseUntil: T0 + 61_000,
    updatedAt: at(1),
    lastChange: { action: 'attempt_started', actor: 'worker' },
  };
  const v3: Payment = {
    ...v2,
    status: 'retrying',
    version: 3,
    retryCount: 1,
    leaseUntil: undefined,
    nextAttemptAt: T0 + 5_000,
    lastError: { code: 'PROVIDER_TIMEOUT', message: 'provider timed out', retryable: true, timestamp: at(2) },
    updatedAt: at(2),
    lastChange: { action: 'attempt_failed', actor: 'worker', reason: 'PROVIDER_TIMEOUT' },
  };
  const v4: Payment = {
    ...v3,
    status: 'processing',
    version: 4,
    attempt: 2,
    leaseUntil: T0 + 66_000,
    updatedAt: at(5),
    lastChange: { action: 'attempt_started', actor: 'worker' },
  };
  const v5: Payment = {
    ...v4,
    status: 'success',
    version: 5,
    leaseUntil: undefined,
    openShard: undefined,
    dueAt: undefined,
    processedAt: at(6),
    providerChargeId: 'ch_123',
    updatedAt: at(6),
    lastChange: { action: 'attempt_succeeded', actor: 'worker' },
  };
  // Each version carries the update times of every version so far, as the repository appends them.
  return withVersionTimes([v1, v2, v3, v4, v5]);
}

function withVersionTimes(images: Payment[]): Payment[] {
  return images.map((p, i) => ({ ...p, versionAt: images.slice(0, i + 1).map((q) => Date.parse(q.updatedAt)) }));
}

function chainOf(images: Payment[]): AuditEntry[] {
  const out: AuditEntry[] = [];
  images.forEach((img, i) => out.push(entryFromImages(img, images[i - 1], out[i - 1]?.hash ?? GENESIS_HASH)));
  return out;
}

function rehash(e: Omit<AuditEntry, 'hash'>): AuditEntry {
  return { ...e, hash: hashEntry(e) } as AuditEntry;
}

describe('entryFromImages', () => {
  const chain = chainOf(lifecycle());

  it('builds version 1 with a genesis link, no from status and the tenant sort key', () => {
    const e = chain[0]!;
    expect(e).toMatchObject({
      paymentId: 'pay_0000000000000000000000000a',
      version: 1,
      tenantId: 'tenant-a',
      action: 'created',
      actor: 'api:tenant-a',
      fromStatus: null,
      toStatus: 'pending',
      timestamp: at(0),
      prevHash: GENESIS_HASH,
      tenantSort: `${at(0)}#pay_0000000000000000000000000a#0000000001`,
    });
    expect(e.reason).toBeUndefined();
    expect(e.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(e.details).toMatchObject({
      amountMinor: 1250,
      currency: 'EUR',
      paymentMethod: { type: 'card', token: '********4242' },
      attempt: 0,
      retryCount: 0,
      maxRetries: 3,
      lastErrorCode: null,
    });
    // Version 1 lists every audited field as new; internal fields are not audited.
    expect(e.details.changes.amountMinor).toEqual({ old: null, new: 1250 });
    expect(e.details.changes.metadata).toEqual({ old: null, new: { orderId: 'o-1' } });
    for (const internal of ['requestHash', 'openShard', 'dueAt', 'status', 'version', 'updatedAt', 'lastChange']) {
      expect(e.details.changes).not.toHaveProperty(internal);
    }
  });

  it('links each version to the previous hash and records the transition', () => {
    expect(chain.map((e) => [e.fromStatus, e.toStatus])).toEqual([
      [null, 'pending'],
      ['pending', 'processing'],
      ['processing', 'retrying'],
      ['retrying', 'processing'],
      ['processing', 'success'],
    ]);
    for (let i = 1; i < chain.length; i++) expect(chain[i]!.prevHash).toBe(chain[i - 1]!.hash);
    expect(chain[2]!.reason).toBe('PROVIDER_TIMEOUT');
  });

  it('diffs only the fields that changed, with old and new values', () => {
    expect(chain[1]!.details.changes).toEqual({
      attempt: { old: 0, new: 1 },
      leaseUntil: { old: null, new: new Date(T0 + 61_000).toISOString() },
    });
    expect(chain[2]!.details.changes).toEqual({
      retryCount: { old: 0, new: 1 },
      leaseUntil: { old: new Date(T0 + 61_000).toISOString(), new: null },
      nextAttemptAt: { old: null, new: new Date(T0 + 5_000).toISOString() },
      lastError: { old: null, new: { code: 'PROVIDER_TIMEOUT', message: 'provider timed out', retryable: true, timestamp: at(2) } },
    });
    expect(chain[2]!.details.lastErrorCode).toBe('PROVIDER_TIMEOUT');
    expect(chain[2]!.details.retryCount).toBe(1);
    expect(Object.keys(chain[4]!.details.changes).sort()).toEqual(['leaseUntil', 'processedAt', 'providerChargeId']);
  });

  it('is deterministic', () => {
    expect(chainOf(lifecycle())).toEqual(chain);
  });
});

describe('entryKeyOf', () => {
  const t = (s: number) => Date.parse('2026-01-01T00:00:00.000Z') + s * 1000;
  const iso = (ms: number) => new Date(ms).toISOString();

  it('keys every version of a payment that kept all its times', () => {
    const p = { id: 'pay_1', tenantId: 'ten_1', version: 3, versionAt: [t(1), t(2), t(3)] };
    expect(entryKeyOf(p, 1)).toEqual(auditKeyOf('ten_1', 'pay_1', 1, iso(t(1))));
    expect(entryKeyOf(p, 3)).toEqual(auditKeyOf('ten_1', 'pay_1', 3, iso(t(3))));
    expect(entryKeyOf(p, 0)).toBeUndefined();
    expect(entryKeyOf(p, 4)).toBeUndefined();
  });

  it('a payment that began keeping times at a later version: its list ends with the current version, and older versions have no key', () => {
    const p = { id: 'pay_1', tenantId: 'ten_1', version: 5, versionAt: [t(4), t(5)] };
    expect(entryKeyOf(p, 5)).toEqual(auditKeyOf('ten_1', 'pay_1', 5, iso(t(5))));
    expect(entryKeyOf(p, 4)).toEqual(auditKeyOf('ten_1', 'pay_1', 4, iso(t(4))));
    expect(entryKeyOf(p, 3)).toBeUndefined();
    expect(entryKeyOf(p, 1)).toBeUndefined();
    expect(entryKeyOf({ id: 'pay_1', tenantId: 'ten_1', version: 2 }, 2)).toBeUndefined();
  });
});

describe('hashEntry', () => {
  const [e] = chainOf(lifecycle());

  it('is the SHA-256 of every field but the hash, independent of key order', () => {
    const reordered = Object.fromEntries(Object.entries(e!).reverse()) as unknown as AuditEntry;
    expect(hashEntry(reordered)).toBe(e!.hash);
    expect(hashEntry({ ...e!, hash: 'anything' })).toBe(e!.hash);
  });

  it('changes when any field changes', () => {
    const variants: Array<Partial<AuditEntry>> = [
      { version: 2 },
      { tenantId: 'tenant-b' },
      { action: 'x' },
      { actor: 'y' },
      { reason: 'z' },
      { toStatus: 'failed' },
      { timestamp: at(9) },
      { prevHash: '1'.repeat(64) },
      { tenantSort: 'other' },
      { details: { ...e!.details, amountMinor: 1251 } },
    ];
    const hashes = new Set(variants.map((v) => hashEntry({ ...e!, ...v })));
    expect(hashes.size).toBe(variants.length);
    expect(hashes.has(e!.hash)).toBe(false);
  });
});

describe('verifyChain', () => {
  const chain = chainOf(lifecycle());

  it('accepts an intact chain and an empty one', () => {
    expect(verifyChain(chain)).toEqual({ ok: true, count: 5 });
    expect(verifyChain([])).toEqual({ ok: true, count: 0 });
  });

  it('names an altered entry (HASH_MISMATCH)', () => {
    const tampered = chain.map((e) => (e.version === 3 ? { ...e, details: { ...e.details, amountMinor: 1 } } : e));
    expect(verifyChain(tampered)).toMatchObject({ ok: false, paymentId: chain[0]!.paymentId, version: 3, problem: 'HASH_MISMATCH' });
  });

  it('names the entry after an altered-and-rehashed one (BROKEN_LINK)', () => {
    const tampered = chain.map((e) => (e.version === 3 ? rehash({ ...e, actor: 'mallory' }) : e));
    expect(verifyChain(tampered)).toMatchObject({ ok: false, version: 4, problem: 'BROKEN_LINK' });
  });

  it('catches a removed entry (MISSING_VERSION)', () => {
    const removed = chain.filter((e) => e.version !== 2);
    expect(verifyChain(removed)).toMatchObject({ ok: false, version: 3, expectedVersion: 2, problem: 'MISSING_VERSION' });
    expect(verifyChain(chain.slice(1))).toMatchObject({ ok: false, version: 2, problem: 'MISSING_VERSION' });
  });

  it('catches reordering and duplicates', () => {
    const swapped = [chain[0]!, chain[2]!, chain[1]!, chain[3]!, chain[4]!];
    expect(verifyChain(swapped)).toMatchObject({ ok: false, version: 3, problem: 'MISSING_VERSION' });
    const dup = [chain[0]!, chain[1]!, chain[1]!, chain[2]!];
    expect(verifyChain(dup)).toMatchObject({ ok: false, version: 2, index: 2, problem: 'DUPLICATE' });
  });

  it('catches a first entry that does not start from genesis, and entries of another payment', () => {
    const v1 = rehash({ ...chain[0]!, prevHash: 'a'.repeat(64) });
    expect(verifyChain([v1, ...chain.slice(1)])).toMatchObject({ ok: false, version: 1, problem: 'BROKEN_LINK' });
    const other = chainOf(lifecycle('pay_other', 'tenant-a'));
    expect(verifyChain([chain[0]!, other[1]!])).toMatchObject({ ok: false, paymentId: 'pay_other', version: 2, problem: 'BROKEN_LINK' });
  });
});

describe('the card token never reaches an entry', () => {
  const shapes: Array<[string, (t: string) => Partial<Payment>]> = [
    ['plain', () => ({})],
    ['token in metadata value and key', (t) => ({ metadata: { note: `card ${t} used`, [t]: 'x' } })],
    ['token in the error message and details', (t) => ({
      lastError: { code: 'DECLINED', message: `declined card ${t}`, details: { token: t, nested: [t] }, retryable: false, timestamp: at(1) },
    })],
    ['token in the change reason and actor', (t) => ({ lastChange: { action: `charge ${t}`, actor: `op:${t}`, reason: `asked about ${t}` } })],
    ['token in idempotency key and charge id', (t) => ({ idempotencyKey: `k-${t}`, providerChargeId: `ch-${t}` })],
    ['no payment method', () => ({ paymentMethod: undefined as unknown as Payment['paymentMethod'] })],
  ];
  const tokens = [TOKEN, 'abcd', 'tok_12345', 'x'.repeat(300), '4242424242424242'];

  for (const token of tokens) {
    for (const [name, shape] of shapes) {
      it(`${name} (token length ${token.length})`, () => {
        const v1 = basePayment({ paymentMethod: { type: 'card', token }, ...shape(token) });
        const v2: Payment = { ...v1, ...shape(token), status: 'processing', version: 2, updatedAt: at(1), attempt: 1 };
        // Also a token replaced between versions: both old and new must be masked.
        const v3: Payment = { ...v2, version: 3, updatedAt: at(2), paymentMethod: { type: 'card', token: `${token}-new` } };
        const chain = chainOf([v1, v2, v3]);
        for (const e of chain) {
          const text = canonicalJson(e);
          expect(text).not.toContain(token);
          expect(text).not.toContain(`${token}-new`);
        }
        expect(verifyChain(chain).ok).toBe(true);
      });
    }
  }
});

describe('parseIsoInstant', () => {
  it.each([
    ['2024-05-01', '2024-05-01T00:00:00.000Z'],
    ['2024-05-01T12:30', '2024-05-01T12:30:00.000Z'],
    ['2024-05-01T12:30:15Z', '2024-05-01T12:30:15.000Z'],
    ['2024-05-01T12:30:15.5+02:00', '2024-05-01T10:30:15.500Z'],
    ['2024-02-29T00:00:00.000Z', '2024-02-29T00:00:00.000Z'],
  ])('%s → %s', (input, out) => expect(parseIsoInstant(input)).toBe(out));

  it.each(['', 'yesterday', '2024-02-30', '2023-02-29', '2024-13-01', '2024-05-01T24:00:00Z', '2024-05-01T12:00:00+25:00', '1969-12-31', '2024-5-1', '1714560000000'])(
    'rejects %j',
    (input) => expect(parseIsoInstant(input)).toBeUndefined(),
  );
});

describe('cursors', () => {
  it('round-trips and rejects anything but a key of the query', () => {
    const c = encodeCursor({ paymentId: 'p1', version: 7 });
    expect(c).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeCursor(c, { paymentId: 'string', version: 'number' }, { paymentId: 'p1' })).toEqual({ paymentId: 'p1', version: 7 });
    const bad = [
      'not base64!',
      Buffer.from('not json').toString('base64url'),
      encodeCursor({ paymentId: 'p2', version: 7 }),
      encodeCursor({ paymentId: 'p1', version: '7' } as never),
      encodeCursor({ paymentId: 'p1', version: 0 }),
      encodeCursor({ paymentId: 'p1', version: 7, extra: 'x' }),
      Buffer.from('[1,2]').toString('base64url'),
      'A'.repeat(5000),
    ];
    for (const cursor of bad) {
      expect(() => decodeCursor(cursor, { paymentId: 'string', version: 'number' }, { paymentId: 'p1' })).toThrow(
        expect.objectContaining({ code: 'INVALID_CURSOR', httpStatus: 400 }),
      );
    }
  });
});

// ---- stream handler with an in-memory audit log ----------------------------------------------

const silentLog = { debug() {}, info() {}, warn() {}, error() {} };

class MemoryAudit implements AuditWriter {
  readonly items = new Map<string, AuditEntry>();
  appends = 0;
  gets = 0;
  // Kept by payment#version for the tests to read; found by the table's key, as DynamoDB would.
  async get(key: AuditKey) {
    this.gets++;
    return [...this.items.values()].find((e) => e.tenantShard === key.tenantShard && e.tenantSort === key.tenantSort);
  }
  async append(entry: AuditEntry): Promise<AppendResult> {
    this.appends++;
    const existing = this.items.get(`${entry.paymentId}#${entry.version}`);
    if (!existing) {
      this.items.set(`${entry.paymentId}#${entry.version}`, structuredClone(entry));
      return { status: 'written' };
    }
    return canonicalJson(existing) === canonicalJson(entry) ? { status: 'duplicate' } : { status: 'conflict', existing };
  }
  chain(paymentId: string): AuditEntry[] {
    return [...this.items.values()].filter((e) => e.paymentId === paymentId).sort((a, b) => a.version - b.version);
  }
}

let seq = 0;
function record(next: Payment | undefined, prev?: Payment, eventName?: 'INSERT' | 'MODIFY' | 'REMOVE'): DynamoDBRecord {
  seq++;
  const img = (p: Payment) => marshall(p, { removeUndefinedValues: true }) as never;
  return {
    eventID: `e${seq}`,
    eventName: eventName ?? (prev ? 'MODIFY' : 'INSERT'),
    eventVersion: '1.1',
    eventSource: 'aws:dynamodb',
    awsRegion: 'us-east-1',
    dynamodb: {
      Keys: { id: { S: (next ?? prev)!.id } },
      ...(next ? { NewImage: img(next) } : {}),
      ...(prev ? { OldImage: img(prev) } : {}),
      SequenceNumber: String(1000 + seq),
      SizeBytes: 100,
      StreamViewType: 'NEW_AND_OLD_IMAGES',
    },
  };
}
const eventOf = (...records: DynamoDBRecord[]): DynamoDBStreamEvent => ({ Records: records });
const recordsOf = (images: Payment[]) => images.map((p, i) => record(p, images[i - 1]));

describe('audit stream handler', () => {
  it('appends one entry per version in order and chains them', async () => {
    const store = new MemoryAudit();
    const handler = createAuditStreamHandler({ repository: store });
    const res = await handler(eventOf(...recordsOf(lifecycle())));
    expect(res.batchItemFailures).toEqual([]);
    const chain = store.chain('pay_0000000000000000000000000a');
    expect(chain.map((e) => e.version)).toEqual([1, 2, 3, 4, 5]);
    expect(chain).toEqual(chainOf(lifecycle()));
    expect(verifyChain(chain)).toEqual({ ok: true, count: 5 });
  });

  it('links a version to the hash this instance stored for its predecessor in an earlier invocation, without reading it back', async () => {
    const store = new MemoryAudit();
    const handler = createAuditStreamHandler({ repository: store });
    const records = recordsOf(lifecycle());
    for (const r of records) expect((await handler(eventOf(r))).batchItemFailures).toEqual([]);
    expect(store.gets).toBe(0);
    expect(store.chain('pay_0000000000000000000000000a')).toEqual(chainOf(lifecycle()));
    // Another instance (a cold start) knows nothing yet: it reads the predecessor once.
    const other = createAuditStreamHandler({ repository: store });
    const v5 = lifecycle()[4]!;
    const next = { ...v5, version: 6, versionAt: [...v5.versionAt!, Date.parse(v5.updatedAt)] };
    await other(eventOf(record(next, lifecycle()[4]!)));
    expect(store.gets).toBe(1);
    expect(verifyChain(store.chain('pay_0000000000000000000000000a'))).toEqual({ ok: true, count: 6 });
  });

  it('is idempotent under redelivery', async () => {
    const store = new MemoryAudit();
    const handler = createAuditStreamHandler({ repository: store });
    const records = recordsOf(lifecycle());
    await handler(eventOf(...records));
    const before = structuredClone([...store.items.entries()]);
    expect((await handler(eventOf(...records))).batchItemFailures).toEqual([]);
    expect([...store.items.entries()]).toEqual(before);
  });

  it('fails a version whose predecessor is not audited yet, and succeeds on redelivery in order', async () => {
    const store = new MemoryAudit();
    const handler = createAuditStreamHandler({ repository: store });
    const [r1, r2, r3] = recordsOf(lifecycle().slice(0, 3));
    expect((await handler(eventOf(r1!))).batchItemFailures).toEqual([]);
    const res = await handler(eventOf(r3!, r2!));
    expect(res.batchItemFailures).toEqual([{ itemIdentifier: r3!.dynamodb!.SequenceNumber }]);
    expect(store.chain('pay_0000000000000000000000000a').map((e) => e.version)).toEqual([1, 2]);
    expect((await handler(eventOf(r2!, r3!))).batchItemFailures).toEqual([]);
    const chain = store.chain('pay_0000000000000000000000000a');
    expect(chain.map((e) => e.version)).toEqual([1, 2, 3]);
    expect(verifyChain(chain).ok).toBe(true);
  });

  it('fails every later version of a payment whose earlier record failed in the batch, but not other payments', async () => {
    const store = new MemoryAudit();
    const append = store.append.bind(store);
    store.append = async (e) => {
      if (e.paymentId === 'pay_a' && e.version === 1) throw new Error('throttled');
      return append(e);
    };
    const handler = createAuditStreamHandler({ repository: store, logger: silentLog });
    const a = recordsOf(lifecycle('pay_a'));
    const b = recordsOf(lifecycle('pay_b'));
    const res = await handler(eventOf(a[0]!, b[0]!, a[1]!, a[2]!, b[1]!));
    expect(res.batchItemFailures.map((f) => f.itemIdentifier)).toEqual([a[0], a[1], a[2]].map((r) => r!.dynamodb!.SequenceNumber));
    expect(store.chain('pay_b').map((e) => e.version)).toEqual([1, 2]);
    expect(store.chain('pay_a')).toEqual([]);
  });

  it('repairs a dropped stream record: the next version writes the lost entry from its old image, and the chain verifies', async () => {
    const store = new MemoryAudit();
    const warnings: string[] = [];
    const handler = createAuditStreamHandler({ repository: store, logger: { ...silentLog, warn: (m) => warnings.push(m) } });
    const [r1, r2, r3, r4, r5] = recordsOf(lifecycle());
    expect((await handler(eventOf(r1!))).batchItemFailures).toEqual([]);
    void r2; // version 2's record is lost for good (retries ran out)
    expect((await handler(eventOf(r3!, r4!))).batchItemFailures).toEqual([]);
    expect((await handler(eventOf(r5!))).batchItemFailures).toEqual([]);
    const chain = store.chain('pay_0000000000000000000000000a');
    expect(chain.map((e) => e.version)).toEqual([1, 2, 3, 4, 5]);
    expect(verifyChain(chain)).toEqual({ ok: true, count: 5 });
    const full = chainOf(lifecycle());
    // The repaired entry says so; its transition is right, its field diff is unknown.
    expect(chain[1]).toMatchObject({ version: 2, repairedFrom: 'next_version_old_image', fromStatus: full[1]!.fromStatus, toStatus: full[1]!.toStatus, details: { changes: {} } });
    expect(warnings).toEqual(["audit gap repaired from the next version's old image"]);
    // A lost version 1 is rebuilt exactly.
    const s2 = new MemoryAudit();
    const h2 = createAuditStreamHandler({ repository: s2, logger: silentLog });
    const [q1, q2] = recordsOf(lifecycle('pay_b'));
    void q1;
    expect((await h2(eventOf(q2!))).batchItemFailures).toEqual([]);
    expect(s2.chain('pay_b')).toEqual(chainOf(lifecycle('pay_b')).slice(0, 2));
  });

  it('two lost versions in a row cannot be repaired: the record keeps failing rather than linking across the gap', async () => {
    const store = new MemoryAudit();
    const handler = createAuditStreamHandler({ repository: store, logger: silentLog });
    const [r1, , , r4] = recordsOf(lifecycle());
    await handler(eventOf(r1!));
    const res = await handler(eventOf(r4!));
    expect(res.batchItemFailures).toEqual([{ itemIdentifier: r4!.dynamodb!.SequenceNumber }]);
    expect(store.chain('pay_0000000000000000000000000a').map((e) => e.version)).toEqual([1]);
  });

  it('writes nothing for REMOVE events or for a modify that keeps the version', async () => {
    const store = new MemoryAudit();
    const handler = createAuditStreamHandler({ repository: store });
    const [v1] = lifecycle();
    await handler(eventOf(record(v1!)));
    const touched = { ...v1!, metadata: { orderId: 'o-2' } };
    const res = await handler(eventOf(record(touched, v1!), record(undefined, v1!, 'REMOVE')));
    expect(res.batchItemFailures).toEqual([]);
    expect(store.items.size).toBe(1);
    expect(store.appends).toBe(1);
  });

  it('keeps a conflicting stored entry, chains the next version to it, and verification names it', async () => {
    const store = new MemoryAudit();
    const handler = createAuditStreamHandler({ repository: store });
    const records = recordsOf(lifecycle());
    await handler(eventOf(records[0]!, records[1]!));
    // Someone altered the stored version 2 in place.
    const stored = store.items.get('pay_0000000000000000000000000a#2')!;
    const altered: AuditEntry = { ...stored, actor: 'mallory' };
    store.items.set('pay_0000000000000000000000000a#2', altered);
    // Redelivery of version 2 meets the altered entry: kept, reported as conflict, not retried.
    const res = await handler(eventOf(records[1]!, records[2]!));
    expect(res.batchItemFailures).toEqual([]);
    expect(store.items.get('pay_0000000000000000000000000a#2')).toEqual(altered);
    expect(store.items.get('pay_0000000000000000000000000a#3')!.prevHash).toBe(altered.hash);
    expect(verifyChain(store.chain('pay_0000000000000000000000000a'))).toMatchObject({ ok: false, version: 2, problem: 'HASH_MISMATCH' });
  });

  it('fails a malformed image instead of skipping it', async () => {
    const store = new MemoryAudit();
    const handler = createAuditStreamHandler({ repository: store });
    const bad = { ...lifecycle()[0]!, tenantId: undefined } as unknown as Payment;
    const r = record(bad);
    const res = await handler(eventOf(r));
    expect(res.batchItemFailures).toEqual([{ itemIdentifier: r.dynamodb!.SequenceNumber }]);
  });
});

// ---- API route with fakes -------------------------------------------------------------------

class FakeReader implements AuditReader {
  calls: Array<{ kind: 'payment' | 'tenant'; key: string; opts: PaymentListOptions | TenantListOptions }> = [];
  constructor(private readonly entries: AuditEntry[]) {}
  async get(key: AuditKey) {
    return this.entries.find((e) => e.tenantShard === key.tenantShard && e.tenantSort === key.tenantSort);
  }
  async listForPayment(payment: PaymentAuditRef, opts: PaymentListOptions = {}): Promise<AuditPage> {
    this.calls.push({ kind: 'payment', key: payment.id, opts });
    return { entries: this.entries.filter((e) => e.paymentId === payment.id), nextCursor: null };
  }
  async listForTenant(tenantId: string, opts: TenantListOptions = {}): Promise<AuditPage> {
    this.calls.push({ kind: 'tenant', key: tenantId, opts });
    return { entries: this.entries.filter((e) => e.tenantId === tenantId), nextCursor: 'next' };
  }
}

function apiEvent(query: Record<string, string>, tenant = 'tenant-a'): APIGatewayProxyEvent {
  return {
    httpMethod: 'GET',
    resource: '/api/audit/payments',
    path: '/api/audit/payments',
    headers: {},
    multiValueHeaders: {},
    queryStringParameters: query,
    multiValueQueryStringParameters: null,
    pathParameters: null,
    stageVariables: null,
    body: null,
    isBase64Encoded: false,
    requestContext: { requestId: 'req-1', identity: { apiKeyId: tenant } } as never,
  };
}

describe('audit API route', () => {
  const images = lifecycle();
  const chain = chainOf(images);
  const payments = new Map([[images[4]!.id, images[4]!]]);
  const setup = () => {
    const reader = new FakeReader(chain);
    const handler = apiHandler(auditApiRoute({ audit: reader, payments: { get: async (id) => payments.get(id) }, cursors: testCursorSeal() }));
    return { reader, call: async (q: Record<string, string>, tenant?: string) => {
      const res = await handler(apiEvent(q, tenant));
      return { status: res.statusCode, body: JSON.parse(res.body) };
    } };
  };

  it('lists a payment ascending by default, without internal fields, and verifies on request', async () => {
    const { reader, call } = setup();
    const res = await call({ paymentID: images[0]!.id, verify: 'true' });
    expect(res.status).toBe(200);
    expect(res.body.count).toBe(5);
    expect(res.body.nextCursor).toBeNull();
    expect(res.body.entries[0]).not.toHaveProperty('tenantSort');
    expect(res.body.entries[0]).toMatchObject({ paymentID: images[0]!.id, version: 1, toStatus: 'pending', hash: chain[0]!.hash });
    expect(res.body.verification).toMatchObject({ ok: true, count: 5, paymentVersion: 5, upToDate: true });
    expect(reader.calls[0]).toMatchObject({ kind: 'payment', opts: { order: 'asc', limit: 100 } });
  });

  it("answers 404 for another tenant's payment or a missing one", async () => {
    const { call } = setup();
    expect((await call({ paymentID: images[0]!.id }, 'tenant-b')).body.error.code).toBe('PAYMENT_NOT_FOUND');
    expect((await call({ paymentID: 'pay_missing' })).status).toBe(404);
  });

  it('lists the caller tenant in a range, newest first by default', async () => {
    const { reader, call } = setup();
    const res = await call({ from: '2024-05-01', to: '2024-05-02T00:00:00Z', limit: '10' });
    expect(res.status).toBe(200);
    // The store's cursor, signed for this tenant and query.
    expect(res.body.nextCursor).toMatch(/^next\.[A-Za-z0-9_-]{22}$/);
    expect(reader.calls[0]).toEqual({
      kind: 'tenant',
      key: 'tenant-a',
      opts: { from: '2024-05-01T00:00:00.000Z', to: '2024-05-02T00:00:00.000Z', limit: 10, cursor: undefined, order: 'desc' },
    });
  });

  it.each([
    [{ limit: '0' }, 'INVALID_QUERY_PARAMETER'],
    [{ limit: '1001' }, 'INVALID_QUERY_PARAMETER'],
    [{ limit: '1.5' }, 'INVALID_QUERY_PARAMETER'],
    [{ order: 'up' }, 'INVALID_QUERY_PARAMETER'],
    [{ from: 'yesterday' }, 'INVALID_QUERY_PARAMETER'],
    [{ from: '2024-05-02', to: '2024-05-01' }, 'INVALID_QUERY_PARAMETER'],
    [{ verify: 'true' }, 'INVALID_QUERY_PARAMETER'],
    [{ verify: 'yes', paymentID: 'pay_x' }, 'INVALID_QUERY_PARAMETER'],
    [{ paymentID: 'pay_x', from: '2024-05-01' }, 'INVALID_QUERY_PARAMETER'],
    [{ paymentId: 'pay_x' }, 'INVALID_QUERY_PARAMETER'],
    [{ paymentID: 'bad id!' }, 'INVALID_QUERY_PARAMETER'],
    [{ cursor: '' }, 'INVALID_CURSOR'],
  ])('rejects %j with 400 %s', async (query, code) => {
    expect(() => parseAuditQuery(query as Record<string, string>)).toThrow();
    const { call } = setup();
    const res = await call(query as Record<string, string>);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe(code);
  });
});
