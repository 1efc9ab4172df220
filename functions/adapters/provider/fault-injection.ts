/**
 * Fault injection for recovery drills, added by wiring around the real provider adapter; the core
 * knows nothing of it. Never enabled in a deployed stage.
 */
import type { ConfirmIntentRequest, PaymentProvider } from '../../core/ports/payment-provider';

/** Thrown right after the provider confirmed an intent: a worker dying between the charge and the state write. */
export class InjectedCrashError extends Error {
  override readonly name = 'InjectedCrashError';
  constructor(readonly paymentId: string) {
    super(`injected crash after a successful confirmation of ${paymentId}`);
  }
}

/**
 * `FAULT_CRASH_AFTER_CHARGE`: '1' crashes after every successful confirmation; 'token' only after the
 * first attempt of payments made with the tok_crash_after_charge token; 'rate:<p>' after a random share
 * p of them (soak runs); anything else: off.
 */
export function crashAfterChargeRule(mode: string | undefined, random: () => number = Math.random): ((req: ConfirmIntentRequest) => boolean) | undefined {
  if (mode === '1') return () => true;
  if (mode === 'token') return (req) => req.paymentMethod === 'tok_crash_after_charge' && req.attempt === 1;
  const rate = /^rate:(0(\.\d+)?|1(\.0+)?)$/.exec(mode ?? '');
  if (rate) {
    const p = Number(rate[1]);
    return () => random() < p;
  }
  return undefined;
}

export function withCrashAfterCharge(provider: PaymentProvider, when: (req: ConfirmIntentRequest) => boolean): PaymentProvider {
  return {
    createIntent: (req) => provider.createIntent(req),
    retrieveIntent: (id) => provider.retrieveIntent(id),
    findIntentsForPayment: (id) => provider.findIntentsForPayment(id),
    cancelIntent: (id, paymentId) => provider.cancelIntent(id, paymentId),
    refund: (req) => provider.refund(req),
    retrieveRefund: (id) => provider.retrieveRefund(id),
    listRefunds: (intentId) => provider.listRefunds(intentId),
    listIntents: (q) => provider.listIntents(q),
    async confirmIntent(intentId, req) {
      const intent = await provider.confirmIntent(intentId, req);
      if (intent.status === 'succeeded' && when(req)) throw new InjectedCrashError(req.paymentId);
      return intent;
    },
  };
}
