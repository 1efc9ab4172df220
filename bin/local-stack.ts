#!/usr/bin/env node
/**
 * `npm start`: synthesizes the CDK app and runs the whole stack locally (see packages/local-stack).
 *
 *   --stage <dev|staging|prod>   stage to synthesize (default dev)
 *   --no-synth                   use the existing cdk.out
 *   --cdk-out <dir>              cloud assembly directory (default cdk.out)
 *   --port <n>                   API port (default $PORT or 3000; 0 = any free port)
 *   --data-dir <dir>             persistent local data (default .local-data)
 *   --in-memory                  keep nothing on disk
 *   --provider-url <url>         PROVIDER_URL for the functions (default: the local provider simulator, if any)
 *   --schedule-scale <n>         run rate() schedules n times faster
 *   --dynamodb-endpoint <url>    use a running DynamoDB emulator (default $AWS_ENDPOINT_URL_DYNAMODB)
 *   --sqs-endpoint <url>         use a running SQS emulator (default $AWS_ENDPOINT_URL_SQS)
 *   --no-iam                     do not enforce the functions' IAM roles (default: enforced)
 *
 * Ctrl-C or SIGTERM stops every process and thread it started, then exits 0.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { checkJava, JavaRequirementError, shortId, startLocalStack, type LocalStack } from '@idempotent-payments/local-stack';
import { LOCAL_WEBHOOK_ENV, localProviderEnv, wireProviderWebhooks } from '../scripts/drill-env';

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const { values: args } = parseArgs({
  options: {
    stage: { type: 'string', default: 'dev' },
    'no-synth': { type: 'boolean', default: false },
    'cdk-out': { type: 'string', default: 'cdk.out' },
    port: { type: 'string' },
    'data-dir': { type: 'string', default: '.local-data' },
    'in-memory': { type: 'boolean', default: false },
    'provider-url': { type: 'string' },
    'schedule-scale': { type: 'string' },
    'dynamodb-endpoint': { type: 'string' },
    'sqs-endpoint': { type: 'string' },
    'no-iam': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});

if (args.help) {
  const doc = /\/\*\*([\s\S]*?)\*\//.exec(
    (await import('node:fs')).readFileSync(fileURLToPath(import.meta.url), 'utf8'),
  )?.[1];
  process.stdout.write(`${(doc ?? '').replace(/^ \* ?/gm, '').trim()}\n`);
  process.exit(0);
}

const port = Number(args.port ?? process.env.PORT ?? 3000);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`Bad port ${args.port ?? process.env.PORT}`);
  process.exit(2);
}
const dataDir = args['in-memory'] ? undefined : path.resolve(args['data-dir']!);

// Preflight: DynamoDB Local needs Java 17. Say so now, before a synth, not as `spawn java ENOENT` later.
if (!(args['dynamodb-endpoint'] ?? process.env.AWS_ENDPOINT_URL_DYNAMODB)) {
  try {
    checkJava();
  } catch (err) {
    if (!(err instanceof JavaRequirementError)) throw err;
    console.error(`Error: ${err.message}`);
    process.exit(1);
  }
}

let synthChild: ChildProcess | undefined;
let starting: Promise<LocalStack | undefined> | undefined;
interface LocalSimulator {
  url: string;
  stop(): Promise<void>;
  setWebhookEndpoint(e: { url: string; secret: string } | undefined): void;
}
let simulator: LocalSimulator | undefined;
let shuttingDown = false;

async function shutdown(signal: string) {
  if (shuttingDown) {
    console.error(`\n${signal} again: exiting now`);
    process.exit(1);
  }
  shuttingDown = true;
  console.log(`\n${signal}: stopping the local stack…`);
  await stopSynth();
  try {
    const stack = await starting?.catch(() => undefined);
    await stack?.stop();
    await simulator?.stop();
  } catch (err) {
    console.error(`error while stopping: ${(err as Error).message}`);
  }
  console.log('stopped');
  process.exit(0);
}
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));

/** Stops `cdk synth` and everything it spawned (npx → cdk → tsx → node): its own process group. */
async function stopSynth(): Promise<void> {
  const child = synthChild;
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const signalGroup = (sig: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, sig);
    } catch {
      /* already gone */
    }
  };
  signalGroup('SIGTERM');
  const timer = setTimeout(() => signalGroup('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
  // The group may outlive its leader for a moment.
  signalGroup('SIGKILL');
}

function synth(): Promise<void> {
  const cdkArgs = ['cdk', 'synth', '-c', `stage=${args.stage}`, '--quiet'];
  if (args['cdk-out'] !== 'cdk.out') cdkArgs.push('--output', args['cdk-out']!);
  console.log(`$ npx ${cdkArgs.join(' ')}`);
  return new Promise((resolve, reject) => {
    // A process group of its own, so that stopping it reaches the processes npx and cdk start.
    const child = spawn('npx', cdkArgs, { cwd: projectRoot, stdio: 'inherit', detached: true });
    synthChild = child;
    child.once('error', reject);
    child.once('exit', (code, sig) => {
      synthChild = undefined;
      if (code === 0) resolve();
      else reject(new Error(`cdk synth failed (${sig ?? `exit code ${code}`})`));
    });
  });
}

/** Starts packages/provider-simulator when that module exists (it is optional). */
async function startSimulator(): Promise<LocalSimulator | undefined> {
  const candidates = ['provider-simulator.ts', 'provider-simulator.js'].map((f) => path.join(projectRoot, 'packages', 'provider-simulator', 'src', f));
  const file = candidates.find((f) => existsSync(f));
  if (!file) return undefined;
  const mod = (await import(pathToFileURL(file).href)) as {
    startProviderSimulator?: (o: { port?: number; ledgerFile?: string }) => Promise<LocalSimulator>;
  };
  if (typeof mod.startProviderSimulator !== 'function') return undefined;
  if (dataDir) mkdirSync(dataDir, { recursive: true });
  return mod.startProviderSimulator({ ledgerFile: dataDir ? path.join(dataDir, 'provider-ledger.jsonl') : undefined });
}

async function main(): Promise<LocalStack | undefined> {
  if (!args['no-synth']) await synth();
  if (shuttingDown) return undefined;

  let providerUrl = args['provider-url'];
  if (!providerUrl) {
    simulator = await startSimulator();
    providerUrl = simulator?.url;
  }
  const extraEnv: Record<string, string> = { ...LOCAL_WEBHOOK_ENV, ...(providerUrl ? localProviderEnv(providerUrl) : {}) };
  const scheduleScale = args['schedule-scale'] !== undefined ? Number(args['schedule-scale']) : undefined;
  const dynamodbEndpoint = args['dynamodb-endpoint'] ?? process.env.AWS_ENDPOINT_URL_DYNAMODB;
  const sqsEndpoint = args['sqs-endpoint'] ?? process.env.AWS_ENDPOINT_URL_SQS;

  const stack = await startLocalStack({
    cdkOut: path.resolve(projectRoot, args['cdk-out']!),
    apiPort: port,
    dataDir,
    extraEnv,
    scheduleScale,
    endpoints: { dynamodb: dynamodbEndpoint, sqs: sqsEndpoint },
    iam: !args['no-iam'],
  });
  // The simulator's webhook events go to the local API's /webhooks/provider, signed with the local secret.
  if (simulator) wireProviderWebhooks(simulator, stack.apiUrl);

  const keys = [...stack.apiKeys].map(([key, who]) => `${key} (${who})`).join(', ');
  const lines = [
    '',
    `Local stack ${stack.stackName} is running`,
    `  API:       ${stack.apiUrl}`,
    `  API keys:  ${keys}  — send one in the x-api-key header`,
    `  DynamoDB:  ${stack.endpoints.dynamodb}`,
    `  SQS:       ${stack.endpoints.sqs}`,
    `  Lambda:    ${stack.endpoints.lambda}`,
    `  IAM:       ${stack.iam ? "each function's role enforced (its calls go through a proxy; sign with key id 'local' for full access)" : 'not enforced (--no-iam)'}`,
    `  Provider:  ${providerUrl ?? '(template value)'}${simulator ? `  (its webhook events → ${stack.apiUrl}/webhooks/provider)` : ''}`,
    `  Data:      ${dataDir ?? 'in memory'}`,
    '  Routes:',
    ...stack.routes.map((r) => `    ${r.method.padEnd(6)} ${r.path}  → ${r.functionId ? shortId(r.functionId) : r.integrationType}${r.apiKeyRequired ? '' : '  (no API key)'}`),
    '',
    '  Try it:',
    `  curl -s ${stack.apiUrl}/api/payments/process -H 'x-api-key: ${[...stack.apiKeys.keys()][0] ?? ''}' -H 'content-type: application/json' \\`,
    `    -d '{"idempotencyKey":"order-1","amount":49.99,"currency":"USD","paymentMethod":{"type":"card","token":"pm_card_visa"}}'`,
    '',
    'Press Ctrl-C to stop.',
  ];
  console.log(lines.join('\n'));
  return stack;
}

starting = main();
starting.catch(async (err) => {
  if (shuttingDown) return; // interrupted: shutdown() exits
  console.error(`local stack failed to start: ${(err as Error).stack ?? err}`);
  await simulator?.stop().catch(() => {});
  process.exit(1);
});
