/**
 * A minimal Secrets Manager on 127.0.0.1 for the template's AWS::SecretsManager::Secret resources, so a
 * function reads a secret the stack generates (a signing key, say) through @aws-sdk/client-secrets-manager
 * (AWS_ENDPOINT_URL_SECRETS_MANAGER) as it would in AWS. Only GetSecretValue, of the current version.
 *
 * A secret's value is its SecretString, or for GenerateSecretString a random string made once (of its
 * PasswordLength, letters and digits; kept in the data directory when there is one, so it survives a
 * restart like the secret would). Access is not checked against the functions' roles.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { localSecretArn, resourcesOfType, type CfnTemplate } from './template';
import { listenOnLoopback, type LogFn } from './util';

interface LocalSecret {
  readonly arn: string;
  readonly name: string;
  readonly value: string;
  readonly versionId: string;
  readonly createdAt: number;
}

const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function generated(length: number): string {
  const bytes = randomBytes(length * 2);
  let out = '';
  // Rejection sampling keeps the characters uniform.
  for (const b of bytes) {
    if (out.length === length) break;
    if (b < 248) out += ALPHANUMERIC[b % ALPHANUMERIC.length];
  }
  return out.length === length ? out : generated(length);
}

/** The template's secrets with their local values (generated ones persisted in `file` when given). */
export function templateSecrets(template: CfnTemplate, file?: string): Map<string, LocalSecret> {
  const saved: Record<string, string> = file && existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {};
  const secrets = new Map<string, LocalSecret>();
  for (const [id, r] of resourcesOfType(template, 'AWS::SecretsManager::Secret')) {
    const props = r.Properties ?? {};
    const literal = typeof props.SecretString === 'string' ? props.SecretString : undefined;
    const value = literal ?? (saved[id] ??= generated(Number(props.GenerateSecretString?.PasswordLength ?? 32)));
    const name = typeof props.Name === 'string' ? props.Name : id;
    secrets.set(id, { arn: localSecretArn(id), name, value, versionId: randomUUID(), createdAt: Math.floor(Date.now() / 1000) });
  }
  if (file) writeFileSync(file, JSON.stringify(saved, null, 2));
  return secrets;
}

export interface RunningSecretsEndpoint {
  readonly url: string;
  stop(): Promise<void>;
}

export async function startSecretsEndpoint(opts: { template: CfnTemplate; dataDir?: string; log: LogFn; port?: number }): Promise<RunningSecretsEndpoint> {
  const secrets = templateSecrets(opts.template, opts.dataDir ? path.join(opts.dataDir, 'secrets.json') : undefined);
  const find = (id: string) => [...secrets.values()].find((s) => s.arn === id || s.name === id || id.startsWith(`${s.arn}-`));
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const reply = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': randomUUID() });
        res.end(JSON.stringify(body));
      };
      const target = String(req.headers['x-amz-target'] ?? '');
      if (target !== 'secretsmanager.GetSecretValue') {
        opts.log(`[secrets] ${target || req.method} is not emulated locally`);
        return reply(400, { __type: 'InvalidRequestException', message: `${target} is not emulated locally` });
      }
      let secretId = '';
      try {
        secretId = String(JSON.parse(Buffer.concat(chunks).toString('utf8')).SecretId ?? '');
      } catch {
        return reply(400, { __type: 'InvalidRequestException', message: 'body is not JSON' });
      }
      const s = find(secretId);
      if (!s) return reply(400, { __type: 'ResourceNotFoundException', message: "Secrets Manager can't find the specified secret." });
      reply(200, { ARN: s.arn, Name: s.name, VersionId: s.versionId, SecretString: s.value, VersionStages: ['AWSCURRENT'], CreatedDate: s.createdAt });
    });
  });
  return listenOnLoopback(server, opts.port ?? 0);
}
