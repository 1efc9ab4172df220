/**
 * The provider's API secret. In AWS it lives in Secrets Manager and is read through Powertools
 * Parameters (cached for the function instance's life, so one read per cold start); the function's
 * environment carries only the secret's id. The local stack has no Secrets Manager: there, and only
 * when no secret id is configured, `PROVIDER_API_KEY` supplies a test key.
 */
import { getSecret } from '@aws-lambda-powertools/parameters/secrets';

export interface ProviderSecretConfig {
  readonly providerSecretId?: string;
  readonly providerApiKey?: string;
}

export async function providerApiKey(c: ProviderSecretConfig): Promise<string> {
  if (c.providerSecretId) {
    const value = await getSecret(c.providerSecretId, { maxAge: 900 });
    if (typeof value !== 'string' || value.trim() === '') throw new Error(`provider secret ${c.providerSecretId} is empty`);
    return value.trim();
  }
  if (c.providerApiKey) return c.providerApiKey;
  throw new Error('no provider secret configured: set PROVIDER_SECRET_ID (or PROVIDER_API_KEY locally)');
}
