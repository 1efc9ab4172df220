/**
 * Checks a tenant webhook delivery the way the service signs it (header `Payments-Signature:
 * t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`, one v1 per secret valid at send).
 *
 * Verify the raw bytes as received, before any JSON parsing: a re-serialized body may differ. A delivery
 * is genuine when one v1 matches the secret and `t` is within `toleranceSeconds` of now (either side),
 * which bounds how long a captured delivery could be replayed. Receivers still dedupe by event `id`,
 * since delivery is at least once.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

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
  const body = typeof rawBody === 'string' ? Buffer.from(rawBody, 'utf8') : Buffer.from(rawBody);
  const expected = createHmac('sha256', secret).update(`${t}.`, 'utf8').update(body).digest();
  const matches = candidates.some((c) => timingSafeEqual(Buffer.from(c, 'hex'), expected));
  if (!matches) return { ok: false, reason: 'no_matching_signature' };
  if (Math.abs(nowSeconds - t) > toleranceSeconds) return { ok: false, reason: 'timestamp_outside_tolerance' };
  return { ok: true, timestamp: t };
}
