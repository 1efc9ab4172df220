/**
 * The provider's API secret. In AWS it lives in Secrets Manager and is read through Powertools
 * Parameters (cached for the function instance's life, so one read per cold start); the function's
 * environment carries only the secret's id. Local runs point the functions at the provider simulator
 * with an empty secret id and a test key in `PROVIDER_API_KEY` (accepted only then).
 */
import { secretValue } from '../secret-value';

export interface ProviderSecretConfig {
  readonly providerSecretId?: string;
  readonly providerApiKey?: string;
}

export async function providerApiKey(c: ProviderSecretConfig): Promise<string> {
  if (c.providerSecretId) return secretValue(c.providerSecretId, 900);
  if (c.providerApiKey) return c.providerApiKey;
  throw new Error('no provider secret configured: set PROVIDER_SECRET_ID (or PROVIDER_API_KEY locally)');
}

export interface WebhookSecretConfig {
  readonly providerWebhookSecretId?: string;
  readonly providerWebhookSecret?: string;
}

/**
 * The provider webhook endpoint's signing secret (Stripe shows it once per endpoint: whsec_...), from
 * Secrets Manager like the API key; locally `PROVIDER_WEBHOOK_SECRET`, shared with the simulator.
 * Cached for 5 minutes, so a rotated secret is picked up without a deploy.
 */
export async function providerWebhookSecret(c: WebhookSecretConfig): Promise<string> {
  if (c.providerWebhookSecretId) return secretValue(c.providerWebhookSecretId, 300);
  if (c.providerWebhookSecret) return c.providerWebhookSecret;
  throw new Error('no provider webhook secret configured: set PROVIDER_WEBHOOK_SECRET_ID (or PROVIDER_WEBHOOK_SECRET locally)');
}
