/**
 * The payment's one provider intent: made (or found again) with the payment's own idempotency key, and
 * read back from the provider whenever we need to know where it stands.
 */
import type { Payment } from '../payment';
import type { ProviderIntent } from '../ports/payment-provider';
import type { Ctx } from './context';

/** Creates the payment's intent, or gets back the one already created for it (same provider key). */
export async function ensureIntent(ctx: Ctx, p: Payment): Promise<ProviderIntent> {
  return ctx.deps.provider.createIntent({
    paymentId: p.id,
    amountMinor: p.amountMinor,
    currency: p.currency,
    ...(p.intentSeq ? { intentSeq: p.intentSeq } : {}),
    ...(p.metadata && Object.keys(p.metadata).length > 0 ? { metadata: p.metadata } : {}),
  });
}

/**
 * The intent as the provider has it now. Without a recorded intent id the create is replayed to learn
 * the id (a replayed create answers with the intent as it was created, so it is retrieved afterwards).
 * Throws ProviderError when the provider cannot say.
 */
export async function currentIntent(ctx: Ctx, p: Payment): Promise<ProviderIntent> {
  const id = p.intentId ?? (await ensureIntent(ctx, p)).id;
  return ctx.deps.provider.retrieveIntent(id);
}

/** An intent can exist only once an attempt was claimed: the create happens inside the first attempt. */
export const mayHaveIntent = (p: Payment): boolean => p.intentId !== undefined || p.attempt >= 1;
