/**
 * A secret's value from Secrets Manager, through Powertools Parameters: cached for `maxAgeSeconds` in
 * the function instance, so one read per cold start (and per expiry). The SDK client is captured by the
 * tracer like every other AWS client, and takes its endpoint from AWS_ENDPOINT_URL_SECRETS_MANAGER
 * locally.
 */
import { SecretsProvider } from '@aws-lambda-powertools/parameters/secrets';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { tracer } from '../shared/tracer';

/** Built on first use. */
let secrets: SecretsProvider | undefined;

export async function secretValue(secretId: string, maxAgeSeconds: number): Promise<string> {
  secrets ??= new SecretsProvider({ awsSdkV3Client: tracer.captureAWSv3Client(new SecretsManagerClient({})) });
  const value = await secrets.get(secretId, { maxAge: maxAgeSeconds });
  if (typeof value !== 'string' || value.trim() === '') throw new Error(`secret ${secretId} is empty`);
  return value.trim();
}
