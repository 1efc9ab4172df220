/** Stripe's request encoding: form bodies and query strings with bracket notation. */
import type { IncomingMessage } from 'node:http';

export type Params = { [k: string]: string | Params | Array<string | Params> | undefined };

const MAX_BODY_BYTES = 1024 * 1024;

export class BodyError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new BodyError(413, 'request body is too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Parses Stripe's form encoding: `a=1&metadata[k]=v&created[gte]=5&expand[0]=x&expand[]=y` into nested
 * objects; `[]` appends to an array, numeric indices become object keys (listParam reads both).
 */
export function parseForm(text: string): Params {
  const out: Params = {};
  if (text === '') return out;
  for (const [rawKey, value] of new URLSearchParams(text)) {
    const m = /^([^[\]]+)((?:\[[^[\]]*\])*)$/.exec(rawKey);
    if (!m) continue;
    const segments = [m[1]!, ...[...m[2]!.matchAll(/\[([^[\]]*)\]/g)].map((x) => x[1]!)];
    let node: Params = out;
    for (let i = 0; i < segments.length; i++) {
      const seg = segments[i]!;
      const last = i === segments.length - 1;
      const next = segments[i + 1];
      if (last) {
        if (seg === '') continue;
        node[seg] = value;
        break;
      }
      if (next === '' && i + 1 === segments.length - 1) {
        const arr = Array.isArray(node[seg]) ? (node[seg] as string[]) : (node[seg] = []);
        (arr as string[]).push(value);
        break;
      }
      const child = node[seg];
      if (!child || typeof child !== 'object' || Array.isArray(child)) node[seg] = {};
      node = node[seg] as Params;
    }
  }
  return out;
}

export function intParam(v: unknown): number | undefined {
  if (typeof v !== 'string' || !/^-?\d+$/.test(v)) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : undefined;
}

export function stringMap(v: unknown): Record<string, string> | undefined {
  if (v === undefined || v === '') return {};
  if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== 'string') return undefined;
    out[k] = x;
  }
  return out;
}

export function listParam(v: unknown): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
  if (v && typeof v === 'object') return Object.values(v).filter((x): x is string => typeof x === 'string');
  return [];
}

/** Parameters in a stable order, for the idempotency fingerprint. */
export function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object') {
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
    );
  }
  return v;
}
