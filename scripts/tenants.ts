#!/usr/bin/env node
/**
 * `npm run tenants -- <command>`: tenants and operators of a deployed stack, without a deploy
 * (scripts/tenant-admin.ts says what each command does, in which order, and why).
 *
 *   add-key --tenant <id> [--plan <name>]    a new API key for a tenant (default plan: the stage's first)
 *   add-key --operator <name>                a new API key for an operator (the operators' plan)
 *   revoke-key --key-id <apiKeyId>           refuse a key from now on and delete it
 *   list                                     every key id and who it is (never the keys)
 *
 * Where: --stack <name> (default IdempotentPayments-dev) and --outputs-file <file> (default
 * cdk-outputs.json, written by `cdk deploy --outputs-file`): the stack's PrincipalsTableName,
 * TenantPlanId<plan> and OperatorPlanId outputs. AWS credentials and region from the environment, as
 * for the aws CLI; the caller needs apigateway:POST/DELETE on /apikeys and /usageplans/<id>/keys, and
 * dynamodb PutItem, UpdateItem, GetItem, Scan on the principals table.
 *
 * Rotation: add-key for the same tenant, hand over the new key, watch the access logs (apiKeyId) until
 * the old key is idle, then revoke-key the old one.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { APIGatewayClient, CreateApiKeyCommand, CreateUsagePlanKeyCommand, DeleteApiKeyCommand, NotFoundException } from '@aws-sdk/client-api-gateway';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { PrincipalsTable } from '../functions/adapters/dynamo/principals';
import { TenantAdmin, type KeyRegistry } from './tenant-admin';

const USAGE = (/\/\*\*([\s\S]*?)\*\//.exec(readFileSync(new URL(import.meta.url), 'utf8'))?.[1] ?? '').replace(/^ \* ?/gm, '').trim();

function fail(message: string, code = 2): never {
  process.stderr.write(`error: ${message}\n\n${USAGE}\n`);
  process.exit(code);
}

const { values: args, positionals } = (() => {
  try {
    return parseArgs({
      options: {
        tenant: { type: 'string' },
        operator: { type: 'string' },
        plan: { type: 'string' },
        'key-id': { type: 'string' },
        stack: { type: 'string', default: 'IdempotentPayments-dev' },
        'outputs-file': { type: 'string', default: 'cdk-outputs.json' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    return fail((err as Error).message);
  }
})();
if (args.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const command = positionals[0];
if (!command || positionals.length > 1 || !['add-key', 'revoke-key', 'list'].includes(command)) fail(`one command: add-key, revoke-key or list`);

let outputs: Record<string, string>;
try {
  const all = JSON.parse(readFileSync(args['outputs-file']!, 'utf8')) as Record<string, Record<string, string>>;
  outputs = all[args.stack!] ?? fail(`${args['outputs-file']} has no stack ${args.stack} (it has: ${Object.keys(all).join(', ') || 'none'})`);
} catch (err) {
  fail(`cannot read ${args['outputs-file']}: ${(err as Error).message} (deploy with --outputs-file ${args['outputs-file']})`);
}
const output = (name: string) => outputs[name] ?? fail(`stack ${args.stack} has no output ${name}: deploy the current version first`);

const apigw = new APIGatewayClient({});
const keys: KeyRegistry = {
  async createKey(name, description) {
    const r = await apigw.send(new CreateApiKeyCommand({ name, description, enabled: true, generateDistinctId: true }));
    if (!r.id || !r.value) throw new Error('API Gateway returned a key without id or value');
    return { id: r.id, value: r.value };
  },
  async addToPlan(planId, keyId) {
    await apigw.send(new CreateUsagePlanKeyCommand({ usagePlanId: planId, keyId, keyType: 'API_KEY' }));
  },
  async deleteKey(keyId) {
    await apigw.send(new DeleteApiKeyCommand({ apiKey: keyId })).catch((err) => {
      if (!(err instanceof NotFoundException)) throw err;
    });
  },
};
const admin = new TenantAdmin({
  keys,
  principals: new PrincipalsTable(DynamoDBDocumentClient.from(new DynamoDBClient({})), output('PrincipalsTableName')),
  stackName: args.stack!,
});

try {
  if (command === 'add-key') {
    if (!!args.tenant === !!args.operator) fail('add-key needs --tenant <id> or --operator <name>');
    const planId = args.operator
      ? output('OperatorPlanId')
      : args.plan
        ? output(`TenantPlanId${args.plan.replace(/[^A-Za-z0-9]/g, '')}`)
        : (Object.entries(outputs).find(([k]) => k.startsWith('TenantPlanId'))?.[1] ?? fail(`stack ${args.stack} has no tenant plan output`));
    const added = await admin.addKey(args.tenant ? `tenant:${args.tenant}` : `operator:${args.operator}`, planId);
    process.stdout.write(
      `${added.principal}: API key id ${added.apiKeyId} on plan ${added.planId}\n` +
        `key (shown once; send it as x-api-key): ${added.value}\n` +
        `It works once API Gateway has propagated it (usually within a minute).\n`,
    );
  } else if (command === 'revoke-key') {
    if (!args['key-id']) fail('revoke-key needs --key-id <apiKeyId>');
    const r = await admin.revokeKey(args['key-id']);
    process.stdout.write(`revoked ${r.apiKeyId} (${r.principal}); deleted in API Gateway\n`);
  } else {
    for (const r of await admin.list()) {
      process.stdout.write(`${r.apiKeyId.padEnd(14)} ${r.principal.padEnd(32)} ${r.status.padEnd(8)} ${r.createdAt}${r.revokedAt ? ` revoked ${r.revokedAt}` : ''}\n`);
    }
  }
} catch (err) {
  fail((err as Error).message, 1);
}
