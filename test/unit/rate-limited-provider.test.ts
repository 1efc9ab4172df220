/** Every provider call goes through the shared budget; a refused slot sends nothing; a provider 429 pauses the fleet. */
import { describe, expect, it } from 'vitest';
import { DEFAULT_PROVIDER_PAUSE_MS, withRateBudget } from '../../functions/adapters/provider/rate-limited-provider';
import { ProviderError, type PaymentProvider } from '../../functions/core/ports/payment-provider';
import { BudgetExhaustedError, type RateBudget } from '../../functions/core/ports/rate-budget';
import { errorOutcome } from '../../functions/core/processing/provider-outcome';

const NOW = Date.UTC(2030, 0, 1);
const intent = { id: 'pi_1', paymentId: 'pay_1', status: 'succeeded', amountMinor: 100, currency: 'USD', amountReceived: 100, created: 1 } as const;

function setup(opts: { refuse?: boolean; fail?: ProviderError } = {}) {
  const events: string[] = [];
  const budget: RateBudget = {
    async take() {
      events.push('take');
      if (opts.refuse) throw new BudgetExhaustedError(1500);
    },
    async pauseUntil(ms) {
      events.push(`pause ${ms - NOW}`);
    },
  };
  const call = async () => {
    events.push('call');
    if (opts.fail) throw opts.fail;
    return intent;
  };
  const provider = {
    createIntent: call,
    confirmIntent: call,
    retrieveIntent: call,
    findIntentsForPayment: call,
    cancelIntent: call,
    refund: call,
    retrieveRefund: call,
    listRefunds: call,
    listIntents: call,
  } as unknown as PaymentProvider;
  return { events, provider: withRateBudget(provider, budget, () => NOW) };
}

describe('provider calls through the rate budget', () => {
  it('takes a slot before every operation, then calls', async () => {
    const s = setup();
    await s.provider.confirmIntent('pi_1', { paymentId: 'pay_1', attempt: 1, paymentMethod: 'tok' });
    await s.provider.retrieveIntent('pi_1');
    await s.provider.listIntents({ from: new Date(0), to: new Date(1) });
    expect(s.events).toEqual(['take', 'call', 'take', 'call', 'take', 'call']);
  });

  it('no slot: nothing is sent, and the payment sees a throttle that says when to come back (no charge possible)', async () => {
    const s = setup({ refuse: true });
    const err = await s.provider.confirmIntent('pi_1', { paymentId: 'pay_1', attempt: 1, paymentMethod: 'tok' }).catch((e) => e);
    expect(s.events).toEqual(['take']);
    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({ kind: 'throttled', code: 'RATE_BUDGET', extra: { retryAfterMs: 1500 } });
    expect(errorOutcome(err)).toMatchObject({ kind: 'retryable', retryAfterMs: 1500 });
  });

  it("a provider 429 pauses the whole fleet for its Retry-After (1 s when it names none); a lock timeout pauses nobody", async () => {
    const with429 = setup({ fail: new ProviderError('throttled', 'rate_limit', 'too many', { httpStatus: 429, retryAfterMs: 4000 }) });
    await expect(with429.provider.createIntent({ paymentId: 'pay_1', amountMinor: 1, currency: 'USD' })).rejects.toMatchObject({ code: 'rate_limit' });
    expect(with429.events).toEqual(['take', 'call', 'pause 4000']);
    const bare = setup({ fail: new ProviderError('throttled', 'rate_limit', 'too many', { httpStatus: 429 }) });
    await expect(bare.provider.retrieveIntent('pi_1')).rejects.toBeInstanceOf(ProviderError);
    expect(bare.events).toEqual(['take', 'call', `pause ${DEFAULT_PROVIDER_PAUSE_MS}`]);
    const lock = setup({ fail: new ProviderError('throttled', 'lock_timeout', 'locked', { httpStatus: 429 }) });
    await expect(lock.provider.retrieveIntent('pi_1')).rejects.toBeInstanceOf(ProviderError);
    expect(lock.events).toEqual(['take', 'call']);
  });
});
