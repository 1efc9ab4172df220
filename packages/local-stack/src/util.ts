/**
 * Small helpers shared by the local stack modules: logging, abortable sleeps, and reading the
 * references CDK writes into a template (Ref / Fn::GetAtt / ARNs) back to logical ids.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CfnTemplate } from './template';

export type LogFn = (line: string) => void;

/** `log` option of the local stack: a line sink, or false for silence. Default: stdout. */
export function makeLog(log: LogFn | false | undefined): LogFn {
  if (log === false) return () => {};
  return log ?? ((line: string) => process.stdout.write(`${line}\n`));
}

/** Logical ids end with an 8-character hash (PaymentsQueue59F70EDB); this drops it for display. */
export function shortId(logicalId: string): string {
  return logicalId.replace(/[0-9A-F]{8}$/, '') || logicalId;
}

/** Resolves after `ms`, or at once (without rejecting) when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, Math.max(0, ms));
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** The logical id a `{Ref: X}` or `{Fn::GetAtt: [X, attr]}` points at, if that is what `value` is. */
export function referencedId(value: unknown): string | undefined {
  if (!value || typeof value !== 'object') return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.Ref === 'string') return v.Ref;
  const getAtt = v['Fn::GetAtt'];
  if (Array.isArray(getAtt) && typeof getAtt[0] === 'string') return getAtt[0];
  if (typeof getAtt === 'string') return getAtt.split('.')[0];
  return undefined;
}

/** The attribute of a `{Fn::GetAtt: [X, attr]}` reference ("Ref" for a Ref). */
export function referencedAttribute(value: unknown): string | undefined {
  if (!value || typeof value !== 'object') return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.Ref === 'string') return 'Ref';
  const getAtt = v['Fn::GetAtt'];
  if (Array.isArray(getAtt) && typeof getAtt[1] === 'string') return getAtt[1];
  if (typeof getAtt === 'string') return getAtt.split('.').slice(1).join('.');
  return undefined;
}

/** Every logical id referenced anywhere inside `value` (for Fn::Join / Fn::Sub wrapped references). */
export function referencedIds(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) {
    for (const v of value) referencedIds(v, out);
  } else if (value && typeof value === 'object') {
    const id = referencedId(value);
    if (id) out.push(id);
    else for (const v of Object.values(value)) referencedIds(v, out);
  }
  return out;
}

/**
 * The function a template value designates: a Ref / GetAtt of an AWS::Lambda::Function, a Fn::Join
 * containing one (API Gateway integration URIs), a literal logical id, or a local function ARN.
 */
export function functionIdOf(template: CfnTemplate, value: unknown): string | undefined {
  const isFunction = (id: string) => template.Resources[id]?.Type === 'AWS::Lambda::Function';
  if (typeof value === 'string') {
    const name = functionNameFromArn(value);
    return isFunction(name) ? name : undefined;
  }
  const direct = referencedId(value);
  if (direct) {
    if (isFunction(direct)) return direct;
    // An alias or version points at its function.
    const r = template.Resources[direct];
    if (r?.Type === 'AWS::Lambda::Alias' || r?.Type === 'AWS::Lambda::Version') return functionIdOf(template, r.Properties?.FunctionName);
    return undefined;
  }
  return referencedIds(value).find(isFunction);
}

/** `arn:aws:lambda:r:a:function:Name:qualifier` or `a:function:Name` or `Name:qualifier` → `Name`. */
export function functionNameFromArn(nameOrArn: string): string {
  const marker = ':function:';
  const at = nameOrArn.indexOf(marker);
  const rest = at >= 0 ? nameOrArn.slice(at + marker.length) : nameOrArn;
  return rest.split(':')[0]!;
}

/**
 * Finds a logical id by exact id or by prefix (`PaymentWorkerFunction` → `PaymentWorkerFunction1B1D07C9`).
 * Throws when nothing or more than one id matches.
 */
export function findByPrefix(ids: readonly string[], prefix: string, what: string): string {
  if (ids.includes(prefix)) return prefix;
  let matches = ids.filter((id) => id.startsWith(prefix));
  if (matches.length > 1) {
    const exactHash = matches.filter((id) => /^[0-9A-F]{8}$/.test(id.slice(prefix.length)));
    if (exactHash.length === 1) matches = exactHash;
  }
  if (matches.length === 1) return matches[0]!;
  if (matches.length === 0) throw new Error(`No ${what} matches "${prefix}" (have: ${ids.join(', ')})`);
  throw new Error(`"${prefix}" matches several ${what}s: ${matches.join(', ')}`);
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Listens on 127.0.0.1 and returns the URL and an idempotent stop that also drops open connections. */
export async function listenOnLoopback(server: Server, port: number): Promise<{ url: string; port: number; stop(): Promise<void> }> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  let stopping: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${bound}`,
    port: bound,
    stop: () =>
      (stopping ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}
