/**
 * The provider's API secret. In AWS it lives in Secrets Manager and is read through Powertools
 * Parameters (cached for the function instance's life, so one read per cold start); the function's
 * environment carries only the secret's id. The local stack has no Secrets Manager: there, and only
 * when no secret id is configured, `PROVIDER_API_KEY` supplies a test key.
 */
import { SecretsProvider } from '@aws-lambda-powertools/parameters/secrets';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { tracer } from '../../shared/tracer';

/** Built on first use, with its SDK client captured by the tracer like every other AWS client. */
let secrets: SecretsProvider | undefined;

export interface ProviderSecretConfig {
  readonly providerSecretId?: string;
  readonly providerApiKey?: string;
}

export async function providerApiKey(c: ProviderSecretConfig): Promise<string> {
  if (c.providerSecretId) {
    secrets ??= new SecretsProvider({ awsSdkV3Client: tracer.captureAWSv3Client(new SecretsManagerClient({})) });
    const value = await secrets.get(c.providerSecretId, { maxAge: 900 });
    if (typeof value !== 'string' || value.trim() === '') throw new Error(`provider secret ${c.providerSecretId} is empty`);
    return value.trim();
  }
  if (c.providerApiKey) return c.providerApiKey;
  throw new Error('no provider secret configured: set PROVIDER_SECRET_ID (or PROVIDER_API_KEY locally)');
}
