/**
 * The payment's one provider intent: made (or found again), stored on the payment before any
 * confirmation, and read back from the provider whenever we need to know where it stands.
 *
 * Why it is stored before it is confirmed: an intent whose id is not on the payment has never been
 * confirmed (the attempt confirms only the intent it recorded), so it holds no money. A payment without a
 * recorded intent can therefore only need one made or found, never money resolved, and the provider's key
 * retention can no longer turn a recovery into a second charged intent.
 *
 * How it is found or made, without ever creating a second one that could be charged:
 *   - while the provider still keeps the create key (`providerKeyRetentionSeconds` after the payment was
 *     created, less a margin), the create is sent again under the same key: it answers the intent made
 *     before, or makes the first one;
 *   - a create key whose saved answer is an error (Stripe saves a 5xx and replays it for 24 h) is not a
 *     fresh outcome: the intent is looked up by its metadata; if none carries the payment, the create
 *     moves to the next key generation;
 *   - past the key's retention, the intent is looked up by its metadata first; a create is sent only when
 *     none exists (search is reliable for intents that old), and it is then the first, not a second.
 */
import { ConcurrentUpdateError } from '../errors';
import type { Payment } from '../payment';
import { isOurs, ProviderError, type ProviderIntent } from '../ports/payment-provider';
import { lostRace } from './claim';
import type { Ctx } from './context';

/** A create key is trusted for this much less than the provider keeps it (clocks, calls in flight): 15 min, or a quarter of a short retention. */
const retentionMarginMs = (retentionMs: number): number => Math.min(15 * 60_000, retentionMs / 4);
/** Key generations tried in one call; each moves on only after a saved error and an empty lookup. */
const MAX_KEY_GENERATIONS = 3;

export type Obtained = { readonly payment: Payment; readonly intent: ProviderIntent } | { readonly lost: true };

/**
 * The payment's intent, found or made, and stored on the payment (same version). `lost` when the payment
 * changed under us: nothing may be confirmed then. Throws ProviderError when the provider cannot say.
 */
export async function obtainIntent(ctx: Ctx, p: Payment): Promise<Obtained> {
  const intent = await makeIntent(ctx, p);
  if (p.intentId === intent.id) return { payment: p, intent };
  try {
    return { payment: await ctx.deps.store.recordIntent(p, intent.id), intent };
  } catch (err) {
    if (!(err instanceof ConcurrentUpdateError)) throw err;
    lostRace(ctx, p, 'record_intent');
    return { lost: true };
  }
}

/**
 * The payment's intent, found or made at the provider, not stored. Making it moves no money, and the
 * same key answers the same intent, so it may run before the attempt is claimed: the claim then stores
 * it (one write instead of two), and only the claimer confirms it. Throws ProviderError when the
 * provider cannot say.
 */
export async function makeIntent(ctx: Ctx, p: Payment): Promise<ProviderIntent> {
  let intent: ProviderIntent | undefined;
  if (pastKeyRetention(ctx, p)) intent = await lookupIntent(ctx, p);
  for (let gen = 0; !intent; gen++) {
    try {
      intent = await createIntent(ctx, p, gen);
    } catch (err) {
      if (!(err instanceof ProviderError && err.kind === 'unknown' && err.extra.replayed) || gen + 1 >= MAX_KEY_GENERATIONS) throw err;
      ctx.log.warn('intent create key replays a saved error; looking the intent up', { paymentId: p.id, keyGeneration: gen, code: err.code });
      intent = await lookupIntent(ctx, p);
    }
  }
  return intent;
}

/**
 * The intent as the provider has it now, or undefined when the payment has none (so nothing can have been
 * charged for it). Without a recorded intent, one that may exist is found (and recorded) first.
 */
export async function currentIntent(ctx: Ctx, p: Payment): Promise<ProviderIntent | undefined> {
  let id = p.intentId;
  if (id === undefined) {
    if (!mayHaveIntent(p)) return undefined;
    const found = await lookupOrReplay(ctx, p);
    if (!found) return undefined;
    id = found.id;
    await ctx.deps.store.recordIntent(p, id).catch((err: unknown) => {
      if (!(err instanceof ConcurrentUpdateError)) throw err;
    });
  }
  return ctx.deps.provider.retrieveIntent(id);
}

/**
 * Every intent of the payment's current sequence that may still need cancelling (ours, not final), for a
 * payment being finished as not paid. Never creates one: without a recorded intent, one is looked up.
 */
export async function intentsToCancel(ctx: Ctx, p: Payment): Promise<string[]> {
  if (p.intentId !== undefined) return [p.intentId];
  if (!mayHaveIntent(p)) return [];
  const found = await candidates(ctx, p);
  // A succeeded one first: the payment is then a success, whatever else exists.
  found.sort((a, b) => Number(b.status === 'succeeded') - Number(a.status === 'succeeded'));
  return found.filter((i) => i.status !== 'canceled').map((i) => i.id);
}

/**
 * Whether the payment may have an intent that was or can be confirmed. An intent is confirmed only by the
 * claimer of an attempt that stored it, so before the first claim there is none: one made for a claim
 * that never happened (its worker died in between, or lost the claim) was never confirmed and never will
 * be (the next attempt's create answers that same intent, within the key's retention, and stores it).
 * Such an intent is left as the provider made it when the payment ends before any claim (cancelled or
 * expired while pending): nothing looks for it, and it stays unconfirmed at the provider, holding no
 * money, rather than cancelled. A listing of the provider's intents may therefore show an open intent
 * for a payment that ended pending.
 */
export const mayHaveIntent = (p: Payment): boolean => p.intentId !== undefined || p.attempt >= 1;

/** Whether the provider may have forgotten the payment's create key. */
function pastKeyRetention(ctx: Ctx, p: Payment): boolean {
  return ctx.clock().getTime() - Date.parse(p.createdAt) > ctx.keyRetentionMs - retentionMarginMs(ctx.keyRetentionMs);
}

function createIntent(ctx: Ctx, p: Payment, keyGeneration: number): Promise<ProviderIntent> {
  return ctx.deps.provider.createIntent({
    paymentId: p.id,
    amountMinor: p.amountMinor,
    currency: p.currency,
    ...(p.intentSeq ? { intentSeq: p.intentSeq } : {}),
    ...(keyGeneration ? { keyGeneration } : {}),
    ...(p.metadata && Object.keys(p.metadata).length > 0 ? { metadata: p.metadata } : {}),
  });
}

/** Finding without making: within the key's retention the create is replayed, else (or after a saved error) a lookup. */
async function lookupOrReplay(ctx: Ctx, p: Payment): Promise<ProviderIntent | undefined> {
  if (pastKeyRetention(ctx, p)) return lookupIntent(ctx, p);
  try {
    return await createIntent(ctx, p, 0);
  } catch (err) {
    if (err instanceof ProviderError && err.kind === 'unknown' && err.extra.replayed) return lookupIntent(ctx, p);
    throw err;
  }
}

/** The payment's intent by its metadata: a succeeded one if any, else the newest not cancelled, else the newest. */
async function lookupIntent(ctx: Ctx, p: Payment): Promise<ProviderIntent | undefined> {
  const found = await candidates(ctx, p);
  const rank = (i: ProviderIntent) => (i.status === 'succeeded' ? 2 : i.status === 'canceled' ? 0 : 1);
  found.sort((a, b) => rank(b) - rank(a) || b.created - a.created || b.id.localeCompare(a.id));
  return found[0];
}

/**
 * Intents carrying the payment's id, of its current sequence, not tagged for another deployment (an intent
 * with no tag at all was made before intents were tagged: it is this payment's, found by its id).
 */
async function candidates(ctx: Ctx, p: Payment): Promise<ProviderIntent[]> {
  const seq = p.intentSeq ?? 0;
  const found = await ctx.deps.provider.findIntentsForPayment(p.id);
  return found.filter((i) => i.paymentId === p.id && (i.intentSeq ?? 0) === seq && (!ctx.tag || i.service === undefined || isOurs(i, ctx.tag)));
}
