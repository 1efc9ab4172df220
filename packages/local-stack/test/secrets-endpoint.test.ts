/**
 * The local Secrets Manager answers GetSecretValue for the template's secrets, through the AWS SDK
 * as a function calls it, and keeps a generated value across restarts when there is a data directory.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, describe, expect, it } from 'vitest';
import { startSecretsEndpoint } from '../src/secrets-endpoint';
import { localSecretArn, resolveValue } from '../src/template';

const template = {
  Resources: {
    SigningKey1A2B: { Type: 'AWS::SecretsManager::Secret', Properties: { GenerateSecretString: { PasswordLength: 48, ExcludePunctuation: true } } },
    Named: { Type: 'AWS::SecretsManager::Secret', Properties: { Name: 'app/dev/literal', SecretString: 'literal-value' } },
  },
};
const dir = mkdtempSync(path.join(tmpdir(), 'secrets-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const client = (url: string) => new SecretsManagerClient({ endpoint: url, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });

describe('local Secrets Manager', () => {
  it('resolves a secret Ref to its local ARN and answers GetSecretValue by ARN or name', async () => {
    const arn = resolveValue({ Ref: 'SigningKey1A2B' }, template, { tables: {}, queues: {} });
    expect(arn).toBe(localSecretArn('SigningKey1A2B'));
    const endpoint = await startSecretsEndpoint({ template, dataDir: dir, log: () => {} });
    try {
      const sm = client(endpoint.url);
      const generated = await sm.send(new GetSecretValueCommand({ SecretId: arn }));
      expect(generated.SecretString).toMatch(/^[A-Za-z0-9]{48}$/);
      expect(generated.VersionStages).toEqual(['AWSCURRENT']);
      expect((await sm.send(new GetSecretValueCommand({ SecretId: 'app/dev/literal' }))).SecretString).toBe('literal-value');
      await expect(sm.send(new GetSecretValueCommand({ SecretId: 'nope' }))).rejects.toMatchObject({ name: 'ResourceNotFoundException' });

      // A restart on the same data directory answers the same generated value.
      const again = await startSecretsEndpoint({ template, dataDir: dir, log: () => {} });
      try {
        expect((await client(again.url).send(new GetSecretValueCommand({ SecretId: arn }))).SecretString).toBe(generated.SecretString);
      } finally {
        await again.stop();
      }
    } finally {
      await endpoint.stop();
    }
  });
});
