/**
 * Listing a tenant's payments from the sharded by-tenant index on DynamoDB Local: exact newest-first
 * order across shards and pages, status filter, tenant-bound cursors, and only index queries. Also the
 * repository's transition guards that only DynamoDB's condition language can show.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PaymentRepository, TENANT_SHARDS, tenantShardFor } from '../../functions/adapters/dynamo/payment-repository';
import { ConcurrentUpdateError } from '../../functions/core/errors';
import type { Payment, PaymentStatus } from '../../functions/core/payment';
import { startBackends, type Backends } from '../helpers/backends';
import { isoAt } from '../helpers/clock';

let b: Backends;
let repo: PaymentRepository;
const commands: Array<{ name: string; input: Record<string, unknown> }> = [];

beforeAll(async () => {
  b = await startBackends();
  const env = b.envOf('PaymentQueriesFunction');
  repo = new PaymentRepository(b.doc, {
    payments: env.PAYMENTS_TABLE!,
    idempotency: env.IDEMPOTENCY_TABLE!,
    openPaymentsIndex: 'open-payments',
    byTenantIndex: env.PAYMENTS_BY_TENANT_INDEX!,
  });
  b.doc.middlewareStack.add(
    (next, context) => async (args) => {
      commands.push({ name: String(context.commandName), input: args.input as Record<string, unknown> });
      return next(args);
    },
    { step: 'initialize', name: 'recordCommands' },
  );
});

afterAll(async () => {
  await b?.stop();
});

/** `n` payments of a new tenant, created a second apart; some statuses moved on. */
async function seed(n: number, statusOf: (i: number) => PaymentStatus = () => 'pending') {
  const tenantId = `tenant-${randomUUID()}`;
  const created: Payment[] = [];
  for (let i = 0; i < n; i++) {
    const at = isoAt(i * 1000);
    const p: Payment = {
      id: `pay_${randomUUID().replaceAll('-', '')}`,
      tenantId,
      idempotencyKey: `k-${i}`,
      generation: 0,
      requestHash: 'h',
      amountMinor: 100 + i,
      currency: 'USD',
      paymentMethod: { type: 'card', token: 'tok_success' },
      metadata: {},
      status: 'pending',
      version: 1,
      attempt: 0,
      retryCount: 0,
      maxRetries: 3,
      createdAt: at,
      updatedAt: at,
      lastChange: { action: 'created', actor: 'test' },
    };
    const result = await repo.insertWithKey(p, { tenantId, idempotencyKey: p.idempotencyKey, paymentId: p.id, generation: 0, requestHash: 'h', createdAt: at, expiresAt: 2e9 }, 0);
    expect(result.kind).toBe('created');
    const status = statusOf(i);
    created.push(status === 'pending' ? p : await repo.transition(p, { to: status === 'failed' ? 'expired' : status, change: { action: 'test', actor: 'test' }, now: new Date(at) }));
  }
  // Newest first.
  return { tenantId, newestFirst: created.reverse() };
}

async function listAll(tenantId: string, limit: number, status?: PaymentStatus) {
  const pages: string[][] = [];
  let cursor: string | undefined;
  do {
    const page = await repo.listByTenant({ tenantId, limit, status, cursor });
    expect(page.items.length).toBeLessThanOrEqual(limit);
    pages.push(page.items.map((p) => p.id));
    cursor = page.nextCursor ?? undefined;
  } while (cursor && pages.length < 100);
  return pages;
}

describe("GET /api/payments: a tenant's payments from the by-tenant index", () => {
  it('spreads one tenant over several index partitions', async () => {
    const { tenantId, newestFirst } = await seed(40);
    const shards = new Set(newestFirst.map((p) => tenantShardFor(tenantId, p.id)));
    expect(shards.size).toBeGreaterThan(TENANT_SHARDS / 2);
  });

  it('pages through every payment exactly once, newest first, whatever the page size', async () => {
    const { tenantId, newestFirst } = await seed(23);
    for (const limit of [1, 4, 7, 23, 100]) {
      const pages = await listAll(tenantId, limit);
      expect(pages.flat()).toEqual(newestFirst.map((p) => p.id));
      expect(pages.slice(0, -1).every((p) => p.length === limit)).toBe(true);
    }
  });

  it('filters by status across shards and pages, exactly', async () => {
    // Sparse matches: a shard's query returns fewer matches than asked while holding more below.
    const { tenantId, newestFirst } = await seed(64, (i) => (i % 7 === 0 ? 'expired' : 'pending'));
    const expired = newestFirst.filter((p) => p.status === 'expired').map((p) => p.id);
    expect(expired).toHaveLength(10);
    for (const limit of [2, 3]) expect((await listAll(tenantId, limit, 'expired')).flat()).toEqual(expired);
    expect((await listAll(tenantId, 100, 'success')).flat()).toEqual([]);
  });

  it('reads by index queries and reads of those ids only, never a scan', async () => {
    const { tenantId } = await seed(5);
    commands.length = 0;
    await listAll(tenantId, 2);
    expect(commands.length).toBeGreaterThan(0);
    for (const c of commands) {
      // The index holds keys only (written once per payment); the payments of a page are read by id.
      if (c.name === 'BatchGetItemCommand') expect(Object.keys((c.input as { RequestItems: object }).RequestItems)).toEqual([expect.stringMatching(/^PaymentsTable/)]);
      else expect(c).toMatchObject({ name: 'QueryCommand', input: { IndexName: 'payments-by-tenant' } });
    }
    expect(commands.some((c) => c.name === 'BatchGetItemCommand')).toBe(true);
  });

  it('a filtered listing sees each payment as it is now, not as the index last saw it', async () => {
    const { tenantId, newestFirst } = await seed(3);
    const moved = newestFirst[1]!;
    await repo.transition(moved, { to: 'expired', change: { action: 'test', actor: 'test' }, now: new Date() });
    expect((await listAll(tenantId, 10, 'expired')).flat()).toEqual([moved.id]);
    expect((await listAll(tenantId, 10, 'pending')).flat()).toEqual([newestFirst[0]!.id, newestFirst[2]!.id]);
  });

  it("a cursor works only for the tenant and the filter it was made for", async () => {
    const mine = await seed(3);
    const theirs = await seed(3);
    const first = await repo.listByTenant({ tenantId: mine.tenantId, limit: 1 });
    expect(first.nextCursor).toBeTruthy();
    const code = (p: Promise<unknown>) => p.then(() => 'ok', (e) => (e as { code: string }).code);
    expect(await code(repo.listByTenant({ tenantId: theirs.tenantId, limit: 1, cursor: first.nextCursor! }))).toBe('INVALID_CURSOR');
    expect(await code(repo.listByTenant({ tenantId: mine.tenantId, limit: 1, status: 'pending', cursor: first.nextCursor! }))).toBe('INVALID_CURSOR');
    expect(await code(repo.listByTenant({ tenantId: mine.tenantId, limit: 1, cursor: 'not-a-cursor' }))).toBe('INVALID_CURSOR');
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(first.nextCursor!, 'base64url').toString()), d: -1 })).toString('base64url');
    expect(await code(repo.listByTenant({ tenantId: mine.tenantId, limit: 1, cursor: forged }))).toBe('INVALID_CURSOR');
    expect(await code(repo.listByTenant({ tenantId: mine.tenantId, limit: 1, cursor: first.nextCursor! }))).toBe('ok');
  });
});

describe('transition: the intent id a payment holds', () => {
  it('is never replaced by a transition read before a same-version recordIntent stored another', async () => {
    const { newestFirst } = await seed(1);
    const p = newestFirst[0]!;
    // recordIntent keeps the version, so the claim below still matches the version and status it read.
    await repo.recordIntent(p, 'pi_found');
    const claim = (intentId: string) =>
      repo.transition(p, { to: 'processing', now: new Date(), change: { action: 'attempt_started', actor: 'test' }, set: { attempt: 1, leaseUntil: Date.now() + 60_000, intentId } });
    await expect(claim('pi_made')).rejects.toBeInstanceOf(ConcurrentUpdateError);
    expect(await repo.get(p.id)).toMatchObject({ status: 'pending', version: 1, intentId: 'pi_found' });
    await expect(claim('pi_found')).resolves.toMatchObject({ status: 'processing', version: 2, intentId: 'pi_found' });
  });
});
