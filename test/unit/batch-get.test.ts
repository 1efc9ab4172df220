/**
 * Batched reads by key against a scripted DynamoDB: unprocessed keys are asked again but not forever, and
 * a payment's audit page asks only for the versions it still needs.
 */
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AuditRepository } from '../../functions/adapters/dynamo/audit-repository';
import { BATCH_GET_MAX_ROUNDS, batchGetByIds } from '../../functions/adapters/dynamo/batch-get';
import { entryKeyOf, type PaymentAuditRef } from '../../functions/core/audit';

type Key = Record<string, unknown>;
interface BatchInput {
  RequestItems: Record<string, { Keys: Key[] }>;
}

/** A document client answering BatchGetItem with `answer(keys)`; records the keys of every request. */
function scripted(table: string, answer: (keys: Key[]) => { items: Key[]; unprocessed?: Key[] }) {
  const requests: Key[][] = [];
  const doc = {
    send: async (cmd: { input: BatchInput }) => {
      const keys = cmd.input.RequestItems[table]!.Keys;
      requests.push(keys);
      const { items, unprocessed } = answer(keys);
      return { Responses: { [table]: items }, ...(unprocessed?.length ? { UnprocessedKeys: { [table]: { Keys: unprocessed } } } : {}) };
    },
  };
  return { doc: doc as unknown as DynamoDBDocumentClient, requests };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('batchGetByIds', () => {
  it('asks again for the keys left unprocessed until all are read', async () => {
    let first = true;
    const { doc, requests } = scripted('T', (keys) => {
      const answered = first ? keys.slice(0, 1) : keys;
      first = false;
      return { items: answered.map((k) => ({ ...k, found: true })), unprocessed: keys.slice(answered.length) };
    });
    const items = await batchGetByIds(doc, 'T', ['a', 'b', 'c'], { consistent: false });
    expect(items.map((i) => i.id).sort()).toEqual(['a', 'b', 'c']);
    expect(requests.map((r) => r.length)).toEqual([3, 2]);
  });

  it('gives up with an error, not a short answer, when keys stay unprocessed', async () => {
    vi.useFakeTimers();
    const { doc, requests } = scripted('T', (keys) => ({ items: [], unprocessed: keys }));
    const read = batchGetByIds(doc, 'T', ['a'], { consistent: true });
    const settled = expect(read).rejects.toThrow(/left 1 keys unprocessed/);
    await vi.runAllTimersAsync();
    await settled;
    expect(requests).toHaveLength(BATCH_GET_MAX_ROUNDS);
  });
});

describe('AuditRepository.listForPayment', () => {
  const payment: PaymentAuditRef = {
    id: 'pay_1',
    tenantId: 'ten_1',
    version: 300,
    versionAt: Array.from({ length: 300 }, (_, i) => Date.parse('2026-01-01T00:00:00.000Z') + i * 1000),
  };
  const entryOf = (k: Key) => {
    for (let v = 1; v <= payment.version; v++) {
      const key = entryKeyOf(payment, v)!;
      if (key.tenantSort === k.tenantSort) return { ...key, paymentId: payment.id, version: v };
    }
    throw new Error(`no entry for ${String(k.tenantSort)}`);
  };

  it('reads one key more than the page, not a full batch', async () => {
    const { doc, requests } = scripted('Audit', (keys) => ({ items: keys.map(entryOf) }));
    const repo = new AuditRepository(doc, { audit: 'Audit' });
    const page = await repo.listForPayment(payment, { limit: 10 });
    expect(page.entries.map((e) => e.version)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(page.nextCursor).toBeTruthy();
    expect(requests.map((r) => r.length)).toEqual([11]);
  });

  it('asks for more when entries are missing (the stream trails the table), and only as many as it lacks', async () => {
    const missing = new Set([2, 5]);
    const { doc, requests } = scripted('Audit', (keys) => ({ items: keys.map(entryOf).filter((e) => !missing.has(e.version)) }));
    const repo = new AuditRepository(doc, { audit: 'Audit' });
    const page = await repo.listForPayment(payment, { limit: 10 });
    expect(page.entries.map((e) => e.version)).toEqual([1, 3, 4, 6, 7, 8, 9, 10, 11, 12]);
    expect(requests.map((r) => r.length)).toEqual([11, 2]);
  });
});
