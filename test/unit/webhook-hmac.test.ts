/** The client's dependency-free HMAC-SHA256 (used by verifyWebhook) agrees with Node's, across block boundaries and key sizes. */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hmacSha256, sha256 } from '../../packages/client/src/hmac-sha256';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('client HMAC-SHA256', () => {
  it('SHA-256 equals Node for every length from 0 to 300 bytes', () => {
    for (let n = 0; n <= 300; n++) {
      const data = randomBytes(n);
      expect(hex(sha256(data)), `length ${n}`).toBe(createHash('sha256').update(data).digest('hex'));
    }
  });

  it('HMAC equals Node for keys shorter, equal to and longer than a block, and long messages', () => {
    for (const keyLength of [0, 1, 32, 63, 64, 65, 100, 200]) {
      for (const msgLength of [0, 55, 56, 64, 119, 120, 1000, 70_000]) {
        const key = randomBytes(keyLength);
        const msg = randomBytes(msgLength);
        expect(hex(hmacSha256(key, msg)), `key ${keyLength}, message ${msgLength}`).toBe(createHmac('sha256', key).update(msg).digest('hex'));
      }
    }
  });
});
