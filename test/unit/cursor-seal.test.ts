/**
 * Listing cursors are signed: an edited cursor of the caller's own tenant is refused before any read.
 * Issue 19 found that 76 of 202 single-character edits of a payments cursor were accepted (the store
 * checks only shape and tenant); signed, none is.
 */
import { describe, expect, it } from 'vitest';
import { decodeListCursor, encodeListCursor } from '../../functions/adapters/dynamo/payment-repository';
import { cursorScope, hmacCursorSeal, type CursorSeal } from '../../functions/core/cursor-seal';
import { AppError } from '../../functions/core/errors';
import { listPayments } from '../../functions/core/list-payments';
import type { PaymentListQuery } from '../../functions/core/ports';
import { testCursorSeal } from '../helpers/fakes';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.';

/** Every cursor one character away (substitutions at every position). */
function singleEdits(cursor: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < cursor.length; i++) {
    for (const c of ALPHABET) if (c !== cursor[i]) out.push(cursor.slice(0, i) + c + cursor.slice(i + 1));
  }
  return out;
}

const codeOf = async (p: Promise<unknown>) => p.then(() => 'accepted', (err: unknown) => (err instanceof AppError ? err.code : `threw ${String(err)}`));

/** What GET /api/payments does with a cursor: open it (if signed), then the store decodes it. */
async function acceptedByListing(seal: CursorSeal | undefined, cursor: string, tenantId = 't1', status?: 'failed'): Promise<boolean> {
  try {
    const inner = seal ? await seal.open(cursorScope('payments', tenantId, status), cursor) : cursor;
    decodeListCursor(inner, tenantId, status);
    return true;
  } catch (err) {
    if (err instanceof AppError && err.code === 'INVALID_CURSOR') return false;
    throw err;
  }
}

describe('signed listing cursors', () => {
  const inner = encodeListCursor('t1', undefined, { before: '2030-01-01T00:00:00.000Z#pay_abc', done: 5 });

  it('without a signature, many single-character edits of a cursor are accepted by the store (the drift)', async () => {
    const edits = singleEdits(inner);
    let accepted = 0;
    for (const e of edits) if (await acceptedByListing(undefined, e)) accepted++;
    expect(accepted).toBeGreaterThan(0);
  });

  it('signed, no single-character edit is accepted, and the cursor itself is', async () => {
    const seal = testCursorSeal();
    const cursor = await seal.seal(cursorScope('payments', 't1', undefined), inner);
    expect(cursor).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/);
    expect(await acceptedByListing(seal, cursor)).toBe(true);
    const edits = singleEdits(cursor);
    expect(edits.length).toBeGreaterThan(1000);
    const accepted: string[] = [];
    for (const e of edits) if (await acceptedByListing(seal, e)) accepted.push(e);
    expect(accepted).toEqual([]);
  });

  it('a cursor is valid only for the tenant and filter it was made for, and only under its key', async () => {
    const seal = testCursorSeal();
    const cursor = await seal.seal(cursorScope('payments', 't1', undefined), inner);
    expect(await codeOf(seal.open(cursorScope('payments', 't2', undefined), cursor))).toBe('INVALID_CURSOR');
    expect(await codeOf(seal.open(cursorScope('payments', 't1', 'failed'), cursor))).toBe('INVALID_CURSOR');
    expect(await codeOf(seal.open(cursorScope('audit', 't1'), cursor))).toBe('INVALID_CURSOR');
    const otherKey = hmacCursorSeal(async () => 'another-signing-key-of-the-stage');
    expect(await codeOf(otherKey.open(cursorScope('payments', 't1', undefined), cursor))).toBe('INVALID_CURSOR');
    // The unsigned form handed out before this change, truncations and garbage.
    for (const bad of [inner, `${inner}.`, cursor.slice(0, -1), `${cursor}A`, '.', '', 'x.yyyyyyyyyyyyyyyyyyyyyy']) {
      expect(await codeOf(seal.open(cursorScope('payments', 't1', undefined), bad)), bad).toBe('INVALID_CURSOR');
    }
  });

  it('the key is read once, and a failed read is retried on the next use', async () => {
    let reads = 0;
    let fail = true;
    const seal = hmacCursorSeal(async () => {
      reads++;
      if (fail) throw new Error('Secrets Manager unavailable');
      return 'a-signing-key-of-enough-length';
    });
    await expect(seal.seal('s', 'c')).rejects.toThrow('unavailable');
    fail = false;
    await seal.seal('s', 'c');
    await seal.open('s', await seal.seal('s', 'c'));
    expect(reads).toBe(2);
    await expect(hmacCursorSeal(async () => 'short').seal('s', 'c')).rejects.toThrow('at least 16 bytes');
  });

  it('listPayments hands out signed cursors and gives the store back its own', async () => {
    const seen: PaymentListQuery[] = [];
    const lister = {
      listByTenant: async (q: PaymentListQuery) => {
        seen.push(q);
        return { items: [], nextCursor: 'store-cursor' };
      },
    };
    const seal = testCursorSeal();
    const first = await listPayments(lister, seal, 't1', { limit: 2, status: 'failed' });
    expect(first.nextCursor).toMatch(/^store-cursor\.[A-Za-z0-9_-]{22}$/);
    await listPayments(lister, seal, 't1', { limit: 2, status: 'failed', cursor: first.nextCursor! });
    expect(seen[1]).toMatchObject({ tenantId: 't1', status: 'failed', cursor: 'store-cursor' });
    expect(await codeOf(listPayments(lister, seal, 't1', { limit: 2, cursor: first.nextCursor! }))).toBe('INVALID_CURSOR');
    expect(seen).toHaveLength(2);
  });
});
