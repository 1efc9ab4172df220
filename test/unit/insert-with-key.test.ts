/**
 * The create transaction under contention: a cancellation that judged only the payment (the key item
 * held by a concurrent transaction) is not an answer. Taken as one, the service read it as "key free,
 * this generation's payment exists" and created the next generation: a second payment for one key
 * (seen in the 200-concurrent-creates integration test on a loaded machine).
 */
import { TransactionCanceledException, TransactionConflictException } from '@aws-sdk/client-dynamodb';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { marshall } from '@aws-sdk/util-dynamodb';
import { describe, expect, it } from 'vitest';
import { keyPk, PaymentRepository } from '../../functions/adapters/dynamo/payment-repository';
import { requestFingerprint } from '../../functions/core/create-request';
import { ServiceUnavailableError } from '../../functions/core/errors';
import { PaymentsService } from '../../functions/core/payments-service';
import type { IdempotencyRecord } from '../../functions/core/ports';
import { FakeQueue, paymentFixture } from '../helpers/fakes';

const payment = paymentFixture({ id: 'pay_k0', idempotencyKey: 'k', generation: 0 });
const key: IdempotencyRecord = { tenantId: 'tenant-1', idempotencyKey: 'k', paymentId: 'pay_k0', generation: 0, requestHash: requestFingerprint(payment), createdAt: payment.createdAt, expiresAt: 2_000_000_000 };

const cancelled = (reasons: Array<{ Code: string; Item?: object }>) =>
  new TransactionCanceledException({
    message: 'Transaction cancelled',
    $metadata: {},
    CancellationReasons: reasons.map((r) => ({ Code: r.Code, ...(r.Item ? { Item: marshall(r.Item as Record<string, unknown>, { removeUndefinedValues: true }) } : {}) })),
  });

function repoAnswering(answers: Error[]) {
  let sends = 0;
  const doc = {
    send: async () => {
      sends++;
      const next = answers.shift();
      if (next) throw next;
      return {};
    },
  } as unknown as DynamoDBDocumentClient;
  return { repo: new PaymentRepository(doc, { payments: 'P', idempotency: 'K', openPaymentsIndex: 'open' }), sends: () => sends };
}

describe('PaymentRepository.insertWithKey under contention', () => {
  it('retries a cancellation where the key was in conflict and only the payment condition failed, then answers with the key', async () => {
    const { repo, sends } = repoAnswering([
      cancelled([{ Code: 'TransactionConflict' }, { Code: 'ConditionalCheckFailed', Item: payment }]),
      cancelled([{ Code: 'ConditionalCheckFailed', Item: { ...key, pk: keyPk('tenant-1', 'k') } }, { Code: 'ConditionalCheckFailed', Item: payment }]),
    ]);
    const result = await repo.insertWithKey(payment, key, 1_900_000_000, 'w1');
    expect(sends()).toBe(2);
    expect(result).toMatchObject({ kind: 'conflict', key: { paymentId: 'pay_k0', idempotencyKey: 'k' }, payment: { id: 'pay_k0' } });
  });

  it('still answers at once when the key condition was judged (free key, existing payment: a reuse after expiry)', async () => {
    const { repo, sends } = repoAnswering([cancelled([{ Code: 'None' }, { Code: 'ConditionalCheckFailed', Item: payment }])]);
    const result = await repo.insertWithKey(payment, key, 1_900_000_000, 'w2');
    expect(sends()).toBe(1);
    expect(result).toMatchObject({ kind: 'conflict', payment: { id: 'pay_k0' } });
    expect((result as { key?: unknown }).key).toBeUndefined();
  });
});

describe('PaymentsService.create when the key turns out to be held', () => {
  it('a conflict on the payment alone, with the key live when read again, is a replay, not a next generation', async () => {
    const inserted: number[] = [];
    const store = {
      get: async () => payment,
      transition: async () => payment,
      // The key is held by the request that created pay_k0; its transaction landed between our two reads.
      getKey: async () => key,
      insertFirst: () => Promise.reject(new Error('not used: the read found the payment')),
      insertWithKey: async (p: { generation: number }) => {
        inserted.push(p.generation);
        return p.generation === 0 ? { kind: 'conflict' as const, payment } : { kind: 'created' as const };
      },
    };
    const service = new PaymentsService({ store, queue: new FakeQueue(), clock: () => new Date(1_800_000_000_000), idempotencyTtlSeconds: 86_400, maxRetries: 3, stuckAfterSeconds: 120 });
    const res = await service.create('tenant-1', { idempotencyKey: 'k', amountMinor: payment.amountMinor, currency: payment.currency, paymentMethod: payment.paymentMethod, metadata: payment.metadata });
    expect(inserted).toEqual([0]);
    expect(res).toMatchObject({ replayed: true, payment: { id: 'pay_k0' } });
  });
});

describe('PaymentRepository.insertFirst under contention', () => {
  const conflict = () => new TransactionConflictException({ message: 'Transaction is ongoing for the item', $metadata: {} });

  it('waits out a transaction in flight on the item, then creates', async () => {
    const { repo, sends } = repoAnswering([conflict(), conflict()]);
    expect(await repo.insertFirst(payment, 'w1')).toEqual({ kind: 'created' });
    expect(sends()).toBe(3);
  });

  it('a conflict that outlasts the retries is a 503 to retry, not a 500', async () => {
    const { repo, sends } = repoAnswering(Array.from({ length: 20 }, conflict));
    await expect(repo.insertFirst(payment, 'w1')).rejects.toBeInstanceOf(ServiceUnavailableError);
    expect(sends()).toBe(9);
  });
});
