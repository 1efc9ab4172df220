/**
 * A key's first payment made by one conditional PutItem against DynamoDB Local: it lands with its index
 * attributes, a second put of another call gets the stored item back with the failed condition (one round
 * trip, no second read), and a put of the same call sent again (its answer lost) is recognised as that
 * call's create.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openShardFor, PaymentRepository, tenantShardFor } from '../../functions/adapters/dynamo/payment-repository';
import type { Payment } from '../../functions/core/payment';
import { startBackends, type Backends } from '../helpers/backends';
import { paymentFixture } from '../helpers/fakes';

let b: Backends;
let repo: PaymentRepository;
let table: string;
const commands: string[] = [];

beforeAll(async () => {
  b = await startBackends();
  const env = b.envOf('CreatePaymentFunction');
  table = env.PAYMENTS_TABLE!;
  repo = new PaymentRepository(b.doc, { payments: table, idempotency: env.IDEMPOTENCY_TABLE!, openPaymentsIndex: 'open-payments' });
  b.doc.middlewareStack.add(
    (next, context) => async (args) => {
      commands.push(String(context.commandName));
      return next(args);
    },
    { step: 'initialize', name: 'recordInsertFirstCommands' },
  );
});

afterAll(async () => {
  await b?.stop();
});

const fresh = (): Payment => paymentFixture({ id: `pay_${randomUUID().replaceAll('-', '')}`, tenantId: `tenant-${randomUUID()}`, keyExpiresAt: 2_000_000_000 });

describe('PaymentRepository.insertFirst', () => {
  it('creates the payment with the attributes its indexes are keyed on', async () => {
    const p = fresh();
    expect(await repo.insertFirst(p, 'w-1')).toEqual({ kind: 'created' });
    const stored = await repo.get(p.id);
    expect(stored).toMatchObject({ ...p, openShard: openShardFor(p.id), tenantShard: tenantShardFor(p.tenantId, p.id) });
  });

  it('another call finds the stored payment in the failed put itself, unchanged', async () => {
    const p = fresh();
    await repo.insertFirst(p, 'w-1');
    commands.length = 0;
    const res = await repo.insertFirst({ ...p, amountMinor: 1 }, 'w-2');
    expect(res).toMatchObject({ kind: 'exists', payment: { id: p.id, amountMinor: p.amountMinor, requestHash: p.requestHash, keyExpiresAt: 2_000_000_000 } });
    expect(commands).toEqual(['PutItemCommand']);
    expect((await repo.get(p.id))!.amountMinor).toBe(p.amountMinor);
  });

  it('the same call sent again is its own create, not a replay', async () => {
    const p = fresh();
    await repo.insertFirst(p, 'w-same');
    expect(await repo.insertFirst(p, 'w-same')).toEqual({ kind: 'created' });
  });
});
