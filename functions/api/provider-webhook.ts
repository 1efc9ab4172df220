import { providerWebhookSecret } from '../adapters/provider/provider-secret';
import { verifyStripeEvent, WebhookSignatureError, type VerifyOptions } from '../adapters/provider/stripe-webhook';
import { InvalidWebhookSignatureError } from '../core/errors';
import type { Logger, Metrics } from '../core/ports';
import type { ProviderEventHandler } from '../core/provider-events';
import { json, publicApiHandler, type PublicRequest } from '../shared/http';
import { wiring } from '../wiring';

/**
 * POST /webhooks/provider — no API key: the caller is authenticated by the provider's signature over the
 * exact body bytes. A missing, wrong or stale signature is 400 and nothing is read or queued. A verified
 * event is acknowledged with 200 whatever it is about (core/provider-events.ts decides whether it queues a
 * resolve); an error reading our tables or queueing is a 5xx, so the provider sends the event again.
 */
export function providerWebhookRoute(deps: { secret: () => Promise<string>; handle: ProviderEventHandler; logger: Logger; metrics: Metrics; verify?: VerifyOptions }) {
  return async (req: PublicRequest) => {
    let event;
    try {
      event = verifyStripeEvent(req.rawBody ?? '', req.headers['stripe-signature'], await deps.secret(), deps.verify);
    } catch (err) {
      if (!(err instanceof WebhookSignatureError)) throw err;
      deps.metrics.count('ProviderEvents', 1, { outcome: 'bad_signature' });
      deps.logger.warn('provider webhook refused: bad signature', { reason: err.message });
      throw new InvalidWebhookSignatureError();
    }
    const outcomes = await deps.handle(event);
    return json(200, { received: true, id: event.id, outcomes });
  };
}

export const handler = publicApiHandler((req) => {
  const w = wiring();
  return providerWebhookRoute({ secret: () => providerWebhookSecret(w.config()), handle: w.providerEvents(), logger: w.logger, metrics: w.metrics })(req);
});
