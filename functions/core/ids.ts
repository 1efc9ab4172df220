import { createHash, randomBytes, randomUUID } from 'node:crypto';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz'; // Crockford base32, lower case

function base32(bytes: Uint8Array, chars: number): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5 && out.length < chars) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  return out;
}

/**
 * The payment id is derived from (tenant, idempotency key, generation). A retried create therefore
 * targets the same Payments item, and its failed condition returns the stored payment in the same
 * round trip. Generation moves on only when an expired key is reused.
 */
export function paymentIdFor(tenantId: string, idempotencyKey: string, generation: number): string {
  const digest = createHash('sha256').update(`${tenantId}\u0000${idempotencyKey}\u0000${generation}`).digest();
  return `pay_${base32(digest, 26)}`;
}

export const requestId = (): string => randomUUID();

/**
 * A tenant refund's id: random, one per refund made. A repeat of the request finds the refund through its
 * key record, never by recomputing the id, so an expired key reused makes a new refund with a new id.
 */
export const newRefundId = (): string => `rf_${base32(randomBytes(16), 26)}`;

/**
 * An id derived from its parts alone (`<prefix>_<26 base32 chars of SHA-256>`): whoever derives it again
 * from the same parts gets the same id, so a redelivered input cannot mint a second object.
 */
export function derivedId(prefix: string, ...parts: readonly (string | number)[]): string {
  const digest = createHash('sha256').update(parts.map(String).join('\u0000')).digest();
  return `${prefix}_${base32(digest, 26)}`;
}
