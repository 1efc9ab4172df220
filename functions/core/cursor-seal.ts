/**
 * Listing cursors are signed. A cursor says where a listing stopped; the stores check that it is well
 * formed and names the caller's tenant, but a client could still edit one into another well-formed
 * position of its own listing (skipping or repeating items, or making the store read from anywhere).
 * So each cursor handed out carries an HMAC-SHA256 over its text and its scope (the tenant and the
 * filter it was made for), under a key only the service holds: an edited cursor, or one used for
 * another tenant or filter, is 400 INVALID_CURSOR before any read.
 *
 * Form: `<the store's cursor>.<22 characters of base64url MAC>` (128 bits). Replacing the key (a new
 * secret version) invalidates the cursors handed out before: a client starts its listing again.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { InvalidCursorError } from './errors';

export interface CursorSeal {
  /** The cursor to hand out for a store cursor, bound to `scope`. */
  seal(scope: string, inner: string): Promise<string>;
  /** The store cursor inside a cursor made for `scope`; INVALID_CURSOR when it was not. */
  open(scope: string, cursor: string): Promise<string>;
}

const MAC_CHARS = 22;
const DOMAIN = 'idempotent-payments/list-cursor/v1';

/** Scopes of the listings: what a cursor is valid for. */
export const cursorScope = (listing: 'payments' | 'audit' | 'events', ...parts: ReadonlyArray<string | undefined>): string =>
  [DOMAIN, listing, ...parts.map((p) => p ?? '')].join('\u0000');

/** Signs with the key `key()` gives (read once, e.g. from Secrets Manager, and kept). */
export function hmacCursorSeal(key: () => Promise<string | Buffer>): CursorSeal {
  let cached: Promise<Buffer> | undefined;
  const secret = () =>
    (cached ??= key().then((k) => {
      const bytes = Buffer.isBuffer(k) ? k : Buffer.from(k, 'utf8');
      if (bytes.length < 16) throw new Error('the cursor signing key must have at least 16 bytes');
      return bytes;
    })).catch((err: unknown) => {
      cached = undefined;
      throw err;
    });
  const mac = async (scope: string, inner: string) =>
    createHmac('sha256', await secret()).update(scope).update('\u0000').update(inner).digest().subarray(0, 16).toString('base64url');
  return {
    async seal(scope, inner) {
      return `${inner}.${await mac(scope, inner)}`;
    },
    async open(scope, cursor) {
      const dot = cursor.lastIndexOf('.');
      if (dot <= 0 || cursor.length - dot - 1 !== MAC_CHARS) throw new InvalidCursorError();
      const inner = cursor.slice(0, dot);
      const given = Buffer.from(cursor.slice(dot + 1), 'utf8');
      const expected = Buffer.from(await mac(scope, inner), 'utf8');
      if (!timingSafeEqual(given, expected)) throw new InvalidCursorError();
      return inner;
    },
  };
}
