import { describe, expect, it } from 'vitest';
import { providerApiKey } from '../../functions/adapters/provider/provider-secret';
import { loadConfig } from '../../functions/shared/env';

describe('provider secret', () => {
  it('locally, a test key stands in for the secret only while no secret id is configured', async () => {
    await expect(providerApiKey(loadConfig({ PROVIDER_API_KEY: 'sk_test_local' }))).resolves.toBe('sk_test_local');
    expect(() => loadConfig({ PROVIDER_API_KEY: 'sk_test_local', PROVIDER_SECRET_ID: 'idempotent-payments/dev/provider-api-key' })).toThrow(/local-only/);
  });

  it('with neither, the function fails at start with a message naming both settings', async () => {
    await expect(providerApiKey(loadConfig({}))).rejects.toThrow(/PROVIDER_SECRET_ID.*PROVIDER_API_KEY/);
  });
});
