/**
 * Runs the template's Lambda functions locally. Each AWS::Lambda::Function gets its own worker thread
 * (its own module graph and its own process.env) that imports the function's bundle from cdk.out and
 * serves invocations, several at a time. The parent thread enforces the function's Timeout, and a
 * worker that dies or stops responding is replaced on the next invocation, as Lambda replaces a
 * sandbox.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import type { FunctionDefinition } from './function-definitions';
import type { InvocationOutcome, InvokeOptions, LambdaError } from './function-invocation';
import { LOCAL_ACCOUNT, LOCAL_REGION } from './local-account';
import { errorMessage, shortId, type LogFn } from './util';

/** The worker bootstrap, next to this file (function-worker.mjs). */
const WORKER_FILE = new URL('./function-worker.mjs', import.meta.url);

/** How long a function may take to import its bundle (Lambda's init phase limit is 10 s). */
const INIT_TIMEOUT_MS = 30_000;

interface Pending {
  readonly requestId: string;
  readonly started: number;
  readonly timer: NodeJS.Timeout;
  resolve(outcome: InvocationOutcome): void;
}

interface Sandbox {
  readonly worker: Worker;
  readonly ready: Promise<void>;
  readonly pending: Map<number, Pending>;
  lastError?: LambdaError;
  dead: boolean;
  /** The worker's OS thread id (Linux), reported when it is ready. */
  osThreadId?: number;
  /** Set while checking, after a timeout, whether the worker still responds. */
  checking?: Promise<void>;
}

/** Invocations of one function that run at once in its worker thread; the rest wait (see `slot`). */
const MAX_IN_FLIGHT = 16;

const failure = (requestId: string, started: number, error: LambdaError): InvocationOutcome => ({
  ok: false,
  requestId,
  durationMs: Date.now() - started,
  error,
});

export class LocalFunction {
  private sandbox?: Sandbox;
  private seq = 0;
  private inFlight = 0;
  private readonly waiting: Array<() => void> = [];
  private stopped = false;
  private readonly pongs = new Map<number, () => void>();

  /** The OS thread of the current sandbox (Linux only; undefined before the first invocation). */
  get osThreadId(): number | undefined {
    return this.sandbox && !this.sandbox.dead ? this.sandbox.osThreadId : undefined;
  }

  constructor(
    readonly def: FunctionDefinition,
    private readonly log: LogFn,
  ) {}

  get id(): string {
    return this.def.id;
  }

  get arn(): string {
    return `arn:aws:lambda:${LOCAL_REGION}:${LOCAL_ACCOUNT}:function:${this.def.id}`;
  }

  /** Starts the worker and runs the init phase now rather than on the first invocation. */
  async warm(): Promise<LambdaError | undefined> {
    try {
      await this.ensureSandbox().ready;
      return undefined;
    } catch (err) {
      return err as LambdaError;
    }
  }

  /** Runs one invocation. Never rejects: failures are `{ok: false}` outcomes, as Lambda reports them. */
  async invoke(event: unknown, opts: InvokeOptions = {}): Promise<InvocationOutcome> {
    const requestId = opts.requestId ?? randomUUID();
    if (this.stopped) return failure(requestId, Date.now(), { errorType: 'Runtime.Stopped', errorMessage: 'The local stack is stopping' });
    let eventJson: string;
    try {
      eventJson = event === undefined ? '{}' : JSON.stringify(event);
    } catch (err) {
      return failure(requestId, Date.now(), { errorType: 'InvalidRequestContentException', errorMessage: `Could not serialize the event: ${errorMessage(err)}` });
    }
    const release = await this.slot();
    try {
      return await this.dispatch(eventJson, requestId, opts);
    } finally {
      release();
    }
  }

  /**
   * In Lambda each instance serves one request at a time, on its own CPU share, so a function's Timeout
   * measures that request alone. Here one worker thread serves them all: with hundreds in flight on two
   * cores every one of them would run slowly and time out together. So at most MAX_IN_FLIGHT run at once
   * and the rest wait for a slot (as a burst waits for Lambda to scale), and the Timeout counts from the
   * start of each invocation.
   */
  private slot(): Promise<() => void> {
    const release = () => {
      const next = this.waiting.shift();
      if (next) next();
      else this.inFlight--;
    };
    if (this.inFlight < MAX_IN_FLIGHT) {
      this.inFlight++;
      return Promise.resolve(release);
    }
    return new Promise((resolve) => this.waiting.push(() => resolve(release)));
  }

  private async dispatch(eventJson: string, requestId: string, opts: InvokeOptions): Promise<InvocationOutcome> {
    const started = Date.now();
    const fail = (error: LambdaError): InvocationOutcome => failure(requestId, started, error);
    let sandbox: Sandbox;
    try {
      for (;;) {
        sandbox = this.ensureSandbox();
        await sandbox.ready;
        // After a timeout, wait to know whether this sandbox is still usable.
        if (!sandbox.checking) break;
        await sandbox.checking;
      }
    } catch (err) {
      return fail(err as LambdaError);
    }
    if (sandbox.dead || this.stopped) return fail(sandbox.lastError ?? { errorType: 'Runtime.ExitError', errorMessage: 'The function worker exited' });

    const timeoutMs = this.def.timeoutSeconds * 1000;
    const deadlineMs = Date.now() + timeoutMs;
    const id = ++this.seq;
    return new Promise<InvocationOutcome>((resolve) => {
      const timer = setTimeout(() => {
        if (!sandbox.pending.delete(id)) return;
        const at = new Date().toISOString();
        resolve(fail({
          errorType: 'Sandbox.Timedout',
          errorMessage: `${at} ${requestId} Task timed out after ${this.def.timeoutSeconds.toFixed(2)} seconds`,
        }));
        this.log(`[${shortId(this.id)}] ${requestId} Task timed out after ${this.def.timeoutSeconds} s`);
        sandbox.checking ??= this.checkResponsive(sandbox).finally(() => {
          sandbox.checking = undefined;
        });
      }, timeoutMs);
      sandbox.pending.set(id, { requestId, started, timer, resolve });
      sandbox.worker.postMessage({
        type: 'invoke',
        id,
        event: eventJson,
        context: {
          awsRequestId: requestId,
          deadlineMs,
          functionName: this.def.id,
          invokedFunctionArn: this.arn,
          memoryLimitInMB: this.def.memoryMb,
          logGroupName: `/aws/lambda/${this.def.id}`,
          logStreamName: this.def.env.AWS_LAMBDA_LOG_STREAM_NAME,
          clientContext: opts.clientContext,
          traceId: traceHeader(),
        },
      });
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const sandbox = this.sandbox;
    this.sandbox = undefined;
    if (sandbox) await this.kill(sandbox, { errorType: 'Runtime.Stopped', errorMessage: 'The local stack stopped' });
  }

  private ensureSandbox(): Sandbox {
    if (this.stopped) throw { errorType: 'Runtime.Stopped', errorMessage: 'The local stack stopped' } satisfies LambdaError;
    if (this.sandbox && !this.sandbox.dead) return this.sandbox;
    const sandbox = this.spawn();
    this.sandbox = sandbox;
    return sandbox;
  }

  private spawn(): Sandbox {
    const { def } = this;
    const worker = new Worker(WORKER_FILE, {
      workerData: {
        assetDir: def.assetDir,
        handler: def.handler,
        sourceMaps: /--enable-source-maps/.test(def.env.NODE_OPTIONS ?? ''),
      },
      env: def.env,
      // Not the parent's flags (--import tsx, vitest's loaders): the bundle is plain JavaScript.
      // LOCAL_FUNCTION_CPU_PROF=<dir> writes a V8 CPU profile per function thread there (see README).
      execArgv: process.env.LOCAL_FUNCTION_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.LOCAL_FUNCTION_CPU_PROF}`] : [],
      stdout: true,
      stderr: true,
      resourceLimits: { maxOldGenerationSizeMb: Math.max(64, def.memoryMb) },
      name: def.id,
    });
    const label = `[${shortId(def.id)}]`;
    this.pipe(worker.stdout, label);
    this.pipe(worker.stderr, label);

    let readyResolve!: () => void;
    let readyReject!: (e: LambdaError) => void;
    const ready = new Promise<void>((res, rej) => {
      readyResolve = res;
      readyReject = rej;
    });
    ready.catch(() => {});
    const sandbox: Sandbox = { worker, ready, pending: new Map(), dead: false };
    const initTimer = setTimeout(() => {
      const error = { errorType: 'Runtime.InitTimeout', errorMessage: `Init did not finish within ${INIT_TIMEOUT_MS} ms` };
      readyReject(error);
      void this.kill(sandbox, error);
    }, INIT_TIMEOUT_MS);

    worker.on('message', (msg: any) => {
      switch (msg?.type) {
        case 'ready':
          clearTimeout(initTimer);
          if (typeof msg.osThreadId === 'number') sandbox.osThreadId = msg.osThreadId;
          readyResolve();
          break;
        case 'init-error': {
          clearTimeout(initTimer);
          const error = msg.error as LambdaError;
          this.log(`${label} init failed: ${error.errorType}: ${error.errorMessage}`);
          sandbox.lastError = error;
          readyReject(error);
          // Lambda retries the init phase on the next invocation.
          void this.kill(sandbox, error);
          break;
        }
        case 'result': {
          const p = sandbox.pending.get(msg.id);
          if (!p) return; // timed out already
          sandbox.pending.delete(msg.id);
          clearTimeout(p.timer);
          const durationMs = Date.now() - p.started;
          p.resolve(msg.ok ? { ok: true, requestId: p.requestId, durationMs, payload: msg.payload } : { ok: false, requestId: p.requestId, durationMs, error: msg.error });
          break;
        }
        case 'pong':
          this.pongs.get(msg.id)?.();
          break;
      }
    });
    worker.on('error', (err) => {
      // An uncaught exception or unhandled rejection ends the worker, as it ends a Lambda sandbox.
      const name = (err as Error)?.name;
      sandbox.lastError = {
        errorType: name === 'Error' || !name ? 'Runtime.UncaughtException' : name,
        errorMessage: errorMessage(err),
        trace: typeof (err as Error)?.stack === 'string' ? (err as Error).stack!.split('\n') : [],
      };
      if ((err as { code?: string })?.code === 'ERR_WORKER_OUT_OF_MEMORY') {
        sandbox.lastError = { errorType: 'Runtime.OutOfMemory', errorMessage: `Runtime exited with error: out of memory (${def.memoryMb} MB)` };
      }
      this.log(`${label} worker error: ${sandbox.lastError.errorType}: ${sandbox.lastError.errorMessage}`);
    });
    worker.on('exit', (code) => {
      clearTimeout(initTimer);
      sandbox.dead = true;
      const error = sandbox.lastError ?? { errorType: 'Runtime.ExitError', errorMessage: `Runtime exited with code ${code}` };
      readyReject(error);
      this.failPending(sandbox, error);
      if (this.sandbox === sandbox) this.sandbox = undefined;
    });
    return sandbox;
  }

  private pipe(stream: Readable | null | undefined, label: string) {
    if (!stream) return;
    const rl = createInterface({ input: stream, crlfDelay: Infinity });
    rl.on('line', (line) => this.log(`${label} ${line}`));
  }

  private failPending(sandbox: Sandbox, error: LambdaError) {
    for (const [id, p] of sandbox.pending) {
      sandbox.pending.delete(id);
      clearTimeout(p.timer);
      p.resolve({ ok: false, requestId: p.requestId, durationMs: Date.now() - p.started, error });
    }
  }

  private async kill(sandbox: Sandbox, error: LambdaError) {
    sandbox.dead = true;
    sandbox.lastError ??= error;
    this.failPending(sandbox, error);
    if (this.sandbox === sandbox) this.sandbox = undefined;
    try {
      await sandbox.worker.terminate();
    } catch {
      /* already gone */
    }
  }

  /**
   * After a timeout, the handler may still be running. If it blocks the worker's event loop (a busy
   * loop), the worker is replaced, as Lambda replaces a timed-out sandbox; other invocations in it fail.
   */
  private async checkResponsive(sandbox: Sandbox) {
    if (sandbox.dead) return;
    const id = ++this.seq;
    const answered = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 1000);
      this.pongs.set(id, () => {
        clearTimeout(timer);
        resolve(true);
      });
      sandbox.worker.postMessage({ type: 'ping', id });
    });
    this.pongs.delete(id);
    if (!answered && !sandbox.dead) {
      this.log(`[${shortId(this.id)}] worker unresponsive after a timeout: restarting it`);
      await this.kill(sandbox, { errorType: 'Sandbox.Timedout', errorMessage: 'The sandbox was restarted after a timeout' });
    }
  }
}

/** An X-Ray trace header in Lambda's format, not sampled: the local stack has no X-Ray daemon. */
function traceHeader(): string {
  const epochHex = Math.floor(Date.now() / 1000).toString(16).padStart(8, '0');
  return `Root=1-${epochHex}-${randomBytes(12).toString('hex')};Parent=${randomBytes(8).toString('hex')};Sampled=0`;
}
