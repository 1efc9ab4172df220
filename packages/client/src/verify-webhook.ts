/**
 * Checks a tenant webhook delivery the way the service signs it (header `Payments-Signature:
 * t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`, one v1 per secret valid at send).
 *
 * Verify the raw bytes as received, before any JSON parsing: a re-serialized body may differ. A delivery
 * is genuine when one v1 matches the secret and `t` is within `toleranceSeconds` of now (either side),
 * which bounds how long a captured delivery could be replayed. Receivers still dedupe by event `id`,
 * since delivery is at least once.
 */
import { hmacSha256 } from './hmac-sha256.js';

const utf8 = new TextEncoder();

const hex = (bytes: Uint8Array): string => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

/** Equal strings of the same length, in time that does not depend on where they differ. */
function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

export const WEBHOOK_SIGNATURE_HEADER = 'payments-signature';

export type WebhookVerdict =
  | { readonly ok: true; readonly timestamp: number }
  | { readonly ok: false; readonly reason: 'malformed_header' | 'no_matching_signature' | 'timestamp_outside_tolerance' };

export function verifyWebhook(
  rawBody: string | Uint8Array,
  header: string | undefined | null,
  secret: string,
  toleranceSeconds = 300,
  nowSeconds: number = Math.floor(Date.now() / 1000),
): WebhookVerdict {
  if (!header) return { ok: false, reason: 'malformed_header' };
  let t: number | undefined;
  const candidates: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (k === 't' && /^\d{1,12}$/.test(v)) t = Number(v);
    else if (k === 'v1' && /^[0-9a-f]{64}$/.test(v)) candidates.push(v);
  }
  if (t === undefined || candidates.length === 0) return { ok: false, reason: 'malformed_header' };
  const body = typeof rawBody === 'string' ? utf8.encode(rawBody) : rawBody;
  const prefix = utf8.encode(`${t}.`);
  const signed = new Uint8Array(prefix.length + body.length);
  signed.set(prefix);
  signed.set(body, prefix.length);
  const expected = hex(hmacSha256(utf8.encode(secret), signed));
  // Every candidate is compared in full, so the time taken says nothing about which one came close.
  const matches = candidates.map((c) => constantTimeEqual(c, expected)).includes(true);
  if (!matches) return { ok: false, reason: 'no_matching_signature' };
  if (Math.abs(nowSeconds - t) > toleranceSeconds) return { ok: false, reason: 'timestamp_outside_tolerance' };
  return { ok: true, timestamp: t };
}
