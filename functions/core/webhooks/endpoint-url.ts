/**
 * Which URLs a tenant may register and the service will POST to. The service sits inside a VPC-less
 * Lambda today but must never become a way to reach what a tenant cannot reach (instance metadata at
 * 169.254.169.254, loopback, private ranges): in staging and prod the URL must be https and every
 * address its host resolves to must be public. The check runs at registration (a clear 400) and again
 * at each delivery, where the address checked is the one the request is pinned to, so a DNS answer that
 * changes between the check and the connect (rebinding) cannot redirect the request.
 *
 * `allowLoopbackHttp` is a dev-only setting (local stack and tests): it admits http and loopback
 * addresses, nothing else private.
 */
import { ValidationError } from '../errors';

export interface UrlPolicy {
  readonly allowLoopbackHttp: boolean;
}

export type AddressClass = 'public' | 'loopback' | 'private' | 'link-local' | 'reserved';

/** Resolves a host name to all of its addresses (adapter: dns.lookup with all: true). */
export type HostResolver = (host: string) => Promise<readonly string[]>;

const MAX_URL_LENGTH = 2048;

const invalid = (message: string) => new ValidationError([{ field: 'url', code: 'INVALID_WEBHOOK_URL', message }]);

function v4Octets(ip: string): number[] | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return undefined;
  const o = m.slice(1).map(Number);
  return o.every((n) => n <= 255) ? o : undefined;
}

function classifyV4([a, b]: number[]): AddressClass {
  if (a === 127) return 'loopback';
  if (a === 10 || (a === 172 && b! >= 16 && b! <= 31) || (a === 192 && b === 168)) return 'private';
  if (a === 100 && b! >= 64 && b! <= 127) return 'private'; // carrier-grade NAT
  if (a === 169 && b === 254) return 'link-local';
  if (a === 0 || a! >= 224) return 'reserved'; // "this network", multicast, class E, broadcast
  return 'public';
}

/** Expands an IPv6 literal to 8 groups, or undefined if it is not one. */
function v6Groups(ip: string): number[] | undefined {
  let s = ip.toLowerCase().replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const v4Tail = /(\d{1,3}(?:\.\d{1,3}){3})$/.exec(s);
  if (v4Tail) {
    const o = v4Octets(v4Tail[1]!);
    if (!o) return undefined;
    s = s.slice(0, -v4Tail[1]!.length) + `${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  if (!/^[0-9a-f:]+$/.test(s) || (s.match(/::/g) ?? []).length > 1) return undefined;
  const [head, tail] = s.includes('::') ? s.split('::') : [s, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const missing = 8 - h.length - t.length;
  if (tail === undefined ? missing !== 0 : missing < 1) return undefined;
  const groups = [...h, ...Array<string>(tail === undefined ? 0 : missing).fill('0'), ...t];
  if (groups.some((g) => g.length === 0 || g.length > 4)) return undefined;
  return groups.map((g) => parseInt(g, 16));
}

/** The class of an IP address literal (v4 or v6); anything that is not one is 'reserved'. */
export function classifyAddress(ip: string): AddressClass {
  const v4 = v4Octets(ip);
  if (v4) return classifyV4(v4);
  const g = v6Groups(ip);
  if (!g) return 'reserved';
  if (g.slice(0, 5).every((x) => x === 0) && (g[5] === 0xffff || g[5] === 0)) {
    // IPv4-mapped (::ffff:a.b.c.d) and the deprecated IPv4-compatible form: judge the IPv4 inside.
    if (g[5] === 0 && g[6] === 0 && g[7]! <= 1) return g[7] === 1 ? 'loopback' : 'reserved';
    return classifyV4([g[6]! >> 8, g[6]! & 255, g[7]! >> 8, g[7]! & 255]);
  }
  if ((g[0]! & 0xfe00) === 0xfc00) return 'private'; // unique local fc00::/7
  if ((g[0]! & 0xffc0) === 0xfe80) return 'link-local';
  if ((g[0]! & 0xff00) === 0xff00) return 'reserved'; // multicast
  if (g[0] === 0x64 && g[1] === 0xff9b) return 'reserved'; // NAT64: could reach any IPv4, private ones too
  return 'public';
}

const allowed = (c: AddressClass, policy: UrlPolicy): boolean => c === 'public' || (c === 'loopback' && policy.allowLoopbackHttp);

/** The URL's shape alone (no DNS): throws INVALID_WEBHOOK_URL with the reason. */
export function parseWebhookUrl(raw: unknown, policy: UrlPolicy): URL {
  if (typeof raw !== 'string' || raw.length === 0) throw invalid('url is required and must be a string');
  if (raw.length > MAX_URL_LENGTH) throw invalid(`url must be at most ${MAX_URL_LENGTH} characters`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw invalid('url must be an absolute URL');
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && policy.allowLoopbackHttp)) throw invalid('url must use https');
  if (url.username || url.password) throw invalid('url must not carry credentials');
  if (url.hash) throw invalid('url must not have a fragment');
  return url;
}

/**
 * Resolves the URL's host and checks every address: the one a delivery connects to is returned, so the
 * caller pins it (connects to that address, sends the host name as Host and TLS server name).
 */
export async function resolveWebhookTarget(url: URL, policy: UrlPolicy, resolve: HostResolver): Promise<{ readonly address: string }> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const literal = v4Octets(host) !== undefined || v6Groups(host) !== undefined;
  let addresses: readonly string[];
  try {
    addresses = literal ? [host] : await resolve(host);
  } catch {
    throw invalid(`url host ${host} does not resolve`);
  }
  if (addresses.length === 0) throw invalid(`url host ${host} does not resolve`);
  for (const a of addresses) {
    const c = classifyAddress(a);
    if (!allowed(c, policy)) throw invalid(`url host resolves to a ${c} address, which is not allowed`);
  }
  // Loopback is admitted only over http in dev; an https URL on loopback is as fine there.
  if (url.protocol === 'http:' && addresses.some((a) => classifyAddress(a) !== 'loopback')) throw invalid('url must use https');
  return { address: addresses[0]! };
}
