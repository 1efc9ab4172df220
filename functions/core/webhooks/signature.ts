/**
 * The `Payments-Signature` header a tenant's receiver checks: `t=<unix seconds>,v1=<hex>[,v1=<hex>]`,
 * where each v1 is HMAC-SHA256(secret, "<t>.<raw body>"). The timestamp is inside the signed bytes, so
 * a captured delivery cannot be replayed later with a fresh `t` (receivers refuse a stale `t`).
 *
 * Rotation: a rotated endpoint signs with the new secret and, for ROTATION_GRACE_MS after the
 * rotation, also with the previous one, so receivers can switch secrets without dropping a delivery.
 * After the grace the old secret signs nothing. The receiver side (verifyWebhook) is in the client.
 */
import { createHmac } from 'node:crypto';

export const SIGNATURE_HEADER = 'Payments-Signature';

/** How long a rotated-out secret keeps signing. */
export const ROTATION_GRACE_MS = 24 * 3_600_000;

export interface EndpointSecrets {
  readonly secret: string;
  /** The secret before the last rotation, and when it stops signing (epoch ms). */
  readonly previousSecret?: string;
  readonly previousSecretExpiresAt?: number;
}

/** The secrets that sign a delivery sent at `now`: the current one first. */
export function signingSecrets(e: EndpointSecrets, now: Date): string[] {
  const previousValid = e.previousSecret !== undefined && (e.previousSecretExpiresAt ?? 0) > now.getTime();
  return previousValid ? [e.secret, e.previousSecret as string] : [e.secret];
}

export const hmacHex = (secret: string, t: number, rawBody: string): string =>
  createHmac('sha256', secret).update(`${t}.${rawBody}`, 'utf8').digest('hex');

/** The header value for `rawBody` sent at `now`. */
export function signatureHeader(e: EndpointSecrets, rawBody: string, now: Date): string {
  const t = Math.floor(now.getTime() / 1000);
  return [`t=${t}`, ...signingSecrets(e, now).map((s) => `v1=${hmacHex(s, t, rawBody)}`)].join(',');
}
