/**
 * Cancel racing the worker's confirm, forced both ways, on the in-memory provider: a payment never ends
 * both canceled and charged, whichever reaches the provider first.
 */
import { describe, expect, it } from 'vitest';
import { CancelService } from '../../functions/core/cancel-service';
import { CircuitBreaker } from '../../functions/core/circuit-breaker';
import { AppError } from '../../functions/core/errors';
import { silentLogger } from '../../functions/core/ports';
import type { PaymentProvider } from '../../functions/core/ports/payment-provider';
import { PaymentProcessor } from '../../functions/core/processing/payment-processor';
import { FakeIntentProvider } from '../helpers/fake-intent-provider';
import { FakeClock, FakeQueue, FakeRepository, paymentFixture } from '../helpers/fakes';

function setup(wrap: (p: FakeIntentProvider, worker: () => PaymentProcessor) => PaymentProvider = (p) => p) {
  const clock = new FakeClock();
  const repo = new FakeRepository();
  const provider = new FakeIntentProvider(() => clock.t);
  const make = (prov: PaymentProvider) =>
    new PaymentProcessor({
      store: repo,
      provider: prov,
      queue: new FakeQueue(),
      breaker: new CircuitBreaker('p', { failureRateThreshold: 0 }),
      config: { retryBaseSeconds: 1, retryCapSeconds: 60, leaseSeconds: 30, providerTimeoutMs: 5000, openDeadlineSeconds: 86_400, providerKeyRetentionSeconds: 86_400 },
      clock: clock.now,
      random: () => 0.5,
      logger: silentLogger,
    });
  const worker = make(provider);
  const canceler = make(wrap(provider, () => worker));
  const counted: string[] = [];
  const cancels = new CancelService({ store: repo, processor: canceler, metrics: { count: (name) => void counted.push(name) } });
  repo.put(paymentFixture({ amountMinor: 1250, currency: 'EUR' }));
  const charged = () => provider.ledger.filter((e) => e.status === 'succeeded').length;
  const codeOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: unknown) => (e instanceof AppError ? e.code : String(e)));
  return { repo, provider, worker, canceler, cancels, charged, codeOf, counted, stored: () => repo.items.get('pay_1')! };
}

describe('cancel racing the worker', () => {
  it('cancel first: the payment is canceled, the worker then finds it final and charges nothing', async () => {
    const s = setup();
    const p = await s.cancels.cancel('tenant-1', 'pay_1', 'customer changed their mind');
    expect(p.status).toBe('canceled');
    await s.worker.process({ paymentId: 'pay_1', reason: 'created' });
    expect(s.stored().status).toBe('canceled');
    expect(s.charged()).toBe(0);
  });

  it('the worker claims and charges between the cancel reading the payment and writing it: success, never canceled', async () => {
    const s = setup();
    const stale = s.stored(); // pending, version 1: what the cancel read
    expect((await s.worker.process({ paymentId: 'pay_1', reason: 'created' })).kind).toBe('settled');
    expect(s.charged()).toBe(1);
    const r = await s.canceler.cancel(stale, 'api:tenant-1', 'too late');
    expect(r).toMatchObject({ kind: 'ignored', reason: 'concurrent_update' });
    expect(s.stored().status).toBe('success');
    expect(await s.codeOf(s.cancels.cancel('tenant-1', 'pay_1', undefined))).toBe('INVALID_STATE_TRANSITION');
    expect(s.charged()).toBe(1);
  });

  it('the provider intent is cancelled, then a worker claims and confirms before the cancel writes: not charged, not both', async () => {
    const s = setup((p, worker) =>
      new Proxy(p, {
        get(target, prop, receiver) {
          const v = Reflect.get(target, prop, receiver);
          if (prop !== 'cancelIntent') return typeof v === 'function' ? v.bind(target) : v;
          return async (...args: unknown[]) => {
            const out = await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
            // The worker runs an attempt right after the provider cancelled the intent.
            await worker().process({ paymentId: 'pay_1', reason: 'retry' });
            return out;
          };
        },
      }),
    );
    // Make the payment retrying with its intent recorded: the first confirm is a provider 5xx that did not charge.
    s.provider.confirmBehaviour = (_r, n) => (n === 0 ? 'error' : 'succeed');
    await s.worker.process({ paymentId: 'pay_1', reason: 'created' });
    expect(s.stored().status).toBe('retrying');
    expect(s.stored().intentId).toBeDefined();
    const code = await s.codeOf(s.cancels.cancel('tenant-1', 'pay_1', undefined));
    const end = s.stored();
    expect(s.charged()).toBe(0);
    expect(end.status).not.toBe('success');
    // The worker's claim moved the version, so the cancel's write lost: it answered 409 and the payment ended without money.
    expect(['ok', 'PAYMENT_PROCESSING', 'INVALID_STATE_TRANSITION']).toContain(code);
  });

  it('a canceled payment is final: a second cancel (a new key) is 409; PaymentsCanceled is counted once', async () => {
    const s = setup();
    expect((await s.cancels.cancel('tenant-1', 'pay_1', undefined)).status).toBe('canceled');
    expect(s.counted).toEqual(['PaymentsCanceled']);
    const calls = s.provider.calls.length;
    const again = await s.cancels.cancel('tenant-1', 'pay_1', undefined).catch((e: AppError) => e);
    expect(again).toMatchObject({ code: 'INVALID_STATE_TRANSITION', httpStatus: 409, retryable: false });
    expect(s.counted).toEqual(['PaymentsCanceled']);
    expect(s.provider.calls.length).toBe(calls); // refused before any provider call
  });

  it('processing answers 409 retryable with Retry-After; a final payment 409; another tenant 404', async () => {
    const s = setup();
    s.repo.put(paymentFixture({ id: 'pay_p', status: 'processing', leaseUntil: Date.now() + 60_000 }));
    const busy = await s.cancels.cancel('tenant-1', 'pay_p', undefined).catch((e: AppError) => e);
    expect(busy).toMatchObject({ code: 'PAYMENT_PROCESSING', httpStatus: 409, retryable: true, retryAfterSeconds: 5 });
    s.repo.put(paymentFixture({ id: 'pay_f', status: 'failed' }));
    expect(await s.codeOf(s.cancels.cancel('tenant-1', 'pay_f', undefined))).toBe('INVALID_STATE_TRANSITION');
    expect(await s.codeOf(s.cancels.cancel('tenant-2', 'pay_1', undefined))).toBe('PAYMENT_NOT_FOUND');
  });
});
