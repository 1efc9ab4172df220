/**
 * A minimal Lambda API on 127.0.0.1 so that a function can invoke another one through
 * @aws-sdk/client-lambda (AWS_ENDPOINT_URL_LAMBDA): `POST /2015-03-31/functions/{name}/invocations`
 * with X-Amz-Invocation-Type RequestResponse (the result), Event (202, run in the background, retried
 * twice on failure as Lambda does) or DryRun (204).
 */
import * as http from 'node:http';
import type { InvocationSource } from './function-invocation';
import type { FunctionRegistry } from './function-registry';
import { errorMessage, listenOnLoopback, shortId, type LogFn } from './util';

const SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024;
const ASYNC_PAYLOAD_LIMIT = 256 * 1024;

/**
 * Asynchronous invocations (Lambda Event invocations, EventBridge targets): run in the background,
 * retried after 1 and 2 minutes when the function fails, like Lambda's default retry policy.
 */
export class AsyncInvoker {
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly running = new Set<Promise<unknown>>();
  private stopped = false;

  constructor(
    private readonly registry: FunctionRegistry,
    private readonly log: LogFn,
    private readonly retryDelaysMs: readonly number[] = [60_000, 120_000],
  ) {}

  /** Queues the invocation and returns at once. */
  submit(functionId: string, event: unknown, source: InvocationSource, attempt = 0): void {
    if (this.stopped) return;
    const p = this.registry.invoke(functionId, event, source).then(
      (outcome) => {
        if (outcome.ok || this.stopped) return;
        const delay = this.retryDelaysMs[attempt];
        if (delay === undefined) {
          this.log(`[${shortId(functionId)}] async invocation failed after ${attempt + 1} attempt(s); dropping the event`);
          return;
        }
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          this.submit(functionId, event, source, attempt + 1);
        }, delay);
        timer.unref();
        this.timers.add(timer);
      },
      (err) => this.log(`[${shortId(functionId)}] async invocation error: ${errorMessage(err)}`),
    );
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}

export interface RunningLambdaEndpoint {
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

export async function startLambdaEndpoint(opts: {
  /** Looked up on each request, so the endpoint can start before the functions exist. */
  registry: () => FunctionRegistry | undefined;
  asyncInvoker: () => AsyncInvoker | undefined;
  port?: number;
  log: LogFn;
}): Promise<RunningLambdaEndpoint> {
  const server = http.createServer(async (req, res) => {
    const reply = (status: number, body: string | Buffer, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
      res.end(body);
    };
    const error = (status: number, type: string, message: string) =>
      reply(status, JSON.stringify({ Type: 'User', message }), { 'x-amzn-ErrorType': type });
    try {
      const url = new URL(req.url ?? '/', 'http://local');
      const m = /^\/2015-03-31\/functions\/([^/]+)\/invocations\/?$/.exec(url.pathname);
      if (req.method !== 'POST' || !m) return error(404, 'UnknownOperationException', `Unsupported operation ${req.method} ${url.pathname}`);
      const name = decodeURIComponent(m[1]!);
      const registry = opts.registry();
      const fn = registry?.get(name);
      if (!registry || !fn) return error(404, 'ResourceNotFoundException', `Function not found: ${name}`);
      const type = String(req.headers['x-amz-invocation-type'] ?? 'RequestResponse');
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const raw = Buffer.concat(chunks);
      const limit = type === 'Event' ? ASYNC_PAYLOAD_LIMIT : SYNC_PAYLOAD_LIMIT;
      if (raw.length > limit) return error(413, 'RequestTooLargeException', `Request must be smaller than ${limit} bytes for the ${type} invocation type`);
      let event: unknown = {};
      if (raw.length) {
        try {
          event = JSON.parse(raw.toString('utf8'));
        } catch {
          return error(400, 'InvalidRequestContentException', 'Could not parse request body into json');
        }
      }
      const versionHeader = { 'X-Amz-Executed-Version': '$LATEST' };
      if (type === 'DryRun') return reply(204, '', versionHeader);
      if (type === 'Event') {
        opts.asyncInvoker()?.submit(fn.id, event, 'lambda');
        return reply(202, '', versionHeader);
      }
      if (type !== 'RequestResponse') return error(400, 'InvalidParameterValueException', `Unsupported invocation type ${type}`);
      let clientContext: unknown;
      const cc = req.headers['x-amz-client-context'];
      if (typeof cc === 'string' && cc) {
        try {
          clientContext = JSON.parse(Buffer.from(cc, 'base64').toString('utf8'));
        } catch {
          /* ignored, as Lambda would pass it through opaque */
        }
      }
      const outcome = await registry.invoke(fn.id, event, 'lambda', { clientContext });
      const headers = { ...versionHeader, 'x-amzn-RequestId': outcome.requestId };
      if (outcome.ok) return reply(200, outcome.payload, headers);
      return reply(200, JSON.stringify(outcome.error), { ...headers, 'X-Amz-Function-Error': 'Unhandled' });
    } catch (err) {
      if (!res.headersSent) error(500, 'ServiceException', errorMessage(err));
    }
  });
  return listenOnLoopback(server, opts.port ?? 0);
}
