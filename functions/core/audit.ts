/**
 * The audit trail of a payment: one entry per payment version, built from the Payments table stream
 * images and chained by SHA-256 (each entry carries the previous entry's hash). Pure: no I/O.
 *
 * What an entry may hold: status change, who/why (lastChange), and a safe summary and diff of the
 * payment. The card token is never copied: it appears only masked, and any free text that happens to
 * contain the full token (metadata, error messages, reasons) has it replaced by the masked form.
 */
import { maskToken } from './mask';
import { canonicalJson, sha256Hex } from './fingerprint';
import type { Payment, PaymentStatus } from './payment';

/** prevHash of version 1: there is no previous entry. */
export const GENESIS_HASH = '0'.repeat(64);

/** Width of the zero-padded version in tenantSort, so versions sort as strings. */
export const VERSION_PAD = 10;

/** Longest error message copied into an entry. */
const MAX_MESSAGE_CHARS = 500;

/** Tokens shorter than this are not searched for inside free text (they would match by accident). */
const MIN_SCRUB_TOKEN_CHARS = 4;

export type AuditValue = string | number | boolean | null | { readonly [k: string]: AuditValue } | readonly AuditValue[];

export interface AuditChange {
  readonly old: AuditValue;
  readonly new: AuditValue;
}

/** A safe summary of the payment at this version, plus what changed since the previous one. */
export interface AuditDetails {
  readonly amountMinor: number | null;
  readonly currency: string | null;
  readonly paymentMethod: { readonly type: string | null; readonly token: string | null };
  readonly attempt: number | null;
  readonly retryCount: number | null;
  readonly maxRetries: number | null;
  readonly lastErrorCode: string | null;
  /** Audited fields whose value differs from the previous version (all set fields for version 1). */
  readonly changes: { readonly [field: string]: AuditChange };
}

export interface AuditEntry {
  readonly paymentId: string;
  readonly version: number;
  readonly tenantId: string;
  readonly action: string;
  /** null for version 1. */
  readonly fromStatus: PaymentStatus | null;
  readonly toStatus: PaymentStatus;
  readonly details: AuditDetails;
  readonly actor: string;
  readonly reason?: string;
  /** The payment's updatedAt at this version. */
  readonly timestamp: string;
  /** Hash of version - 1, or GENESIS_HASH for version 1. */
  readonly prevHash: string;
  /** SHA-256 of the canonical JSON of every other field. */
  readonly hash: string;
  /** Sort key of the AuditLog table: `${timestamp}#${paymentId}#${version padded}` (tenantSortKey). */
  readonly tenantSort: string;
  /** Partition key of the AuditLog table: `${tenantId}#${shard of the payment}` (tenantShardKey). */
  readonly tenantShard: string;
  /**
   * Set on an entry rebuilt after its own stream record was lost: built from the next version's old
   * image, so its `changes` are unknown (empty) and its fromStatus is the previous entry's toStatus.
   */
  readonly repairedFrom?: 'next_version_old_image';
}

export type ChainProblem = 'HASH_MISMATCH' | 'BROKEN_LINK' | 'MISSING_VERSION' | 'DUPLICATE';

export type ChainVerification =
  | { readonly ok: true; readonly count: number }
  | {
      readonly ok: false;
      readonly paymentId: string;
      /** Version of the first bad entry. */
      readonly version: number;
      readonly problem: ChainProblem;
      /** Position of that entry in the list (0-based). */
      readonly index: number;
      /** For MISSING_VERSION: the version that should have been there. */
      readonly expectedVersion?: number;
    };

/**
 * Partitions of one tenant in the AuditLog table. 10× peak is ~3,500 audit writes/s for one tenant;
 * over 16 partitions that is ~220 writes/s each, under the ~1,000 WCU/s a partition takes.
 */
export const AUDIT_TENANT_SHARDS = 16;

/** The index partition of a payment's entries: all versions of a payment share one. */
export const tenantShardKey = (tenantId: string, paymentId: string): string =>
  `${tenantId}#${String(parseInt(sha256Hex(paymentId).slice(0, 8), 16) % AUDIT_TENANT_SHARDS).padStart(2, '0')}`;

export const tenantShardsOf = (tenantId: string): string[] =>
  Array.from({ length: AUDIT_TENANT_SHARDS }, (_, n) => `${tenantId}#${String(n).padStart(2, '0')}`);

export const tenantSortKey = (timestamp: string, paymentId: string, version: number): string =>
  `${timestamp}#${paymentId}#${String(version).padStart(VERSION_PAD, '0')}`;

/**
 * Where one entry is stored. The AuditLog table is keyed for the tenant's time-ordered listing
 * (tenantShard, tenantSort), so it needs no index: an entry's key is computed from its payment's tenant,
 * id, version and that version's updatedAt. A payment keeps the updatedAt of every version it had
 * (`versionAt`), so its own entries are found by key too, never by searching.
 */
export interface AuditKey {
  readonly tenantShard: string;
  readonly tenantSort: string;
}

export const auditKeyOf = (tenantId: string, paymentId: string, version: number, timestamp: string): AuditKey => ({
  tenantShard: tenantShardKey(tenantId, paymentId),
  tenantSort: tenantSortKey(timestamp, paymentId, version),
});

/** What locates a payment's entries: the fields of the payment the keys are made of. */
export type PaymentAuditRef = Pick<Payment, 'id' | 'tenantId' | 'version' | 'versionAt'>;

/**
 * The key of version `version`'s entry, or undefined when the payment holds no time for it. `versionAt`
 * ends with the current version's updatedAt in epoch ms and runs back one version per element, so it is
 * read from its end: a payment written before versions kept their times holds only its later versions'
 * times, and its earlier versions have no key. updatedAt is always an ISO instant in milliseconds
 * (Date#toISOString), so the text is exact.
 */
export function entryKeyOf(p: PaymentAuditRef, version: number): AuditKey | undefined {
  const times = p.versionAt ?? [];
  const at = times[times.length - 1 - (p.version - version)];
  if (version < 1 || version > p.version || typeof at !== 'number' || !Number.isFinite(at)) return undefined;
  return auditKeyOf(p.tenantId, p.id, version, new Date(at).toISOString());
}

/** SHA-256 over the canonical JSON of every field except `hash` (undefined fields are absent). */
export function hashEntry(entry: Omit<AuditEntry, 'hash'> | AuditEntry): string {
  const { hash: _ignored, ...rest } = entry as AuditEntry;
  return sha256Hex(canonicalJson(rest));
}

const isoOrNull = (epochMs: number | undefined | null): string | null => {
  if (typeof epochMs !== 'number' || !Number.isFinite(epochMs)) return null;
  const d = new Date(epochMs);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
};

const orNull = <T>(v: T | undefined | null): T | null => (v === undefined ? null : v);

/**
 * The audited projection of a payment. Left out on purpose: the raw token (masked instead), the
 * request hash, lastError.details (free-form provider data), index bookkeeping (openShard, dueAt),
 * and fields that are top-level in the entry (status, version, updatedAt, lastChange).
 */
function auditedFields(p: Partial<Payment>): Record<string, AuditValue> {
  const e = p.lastError;
  return {
    amountMinor: orNull(p.amountMinor),
    currency: orNull(p.currency),
    paymentMethod: p.paymentMethod
      ? { type: orNull(p.paymentMethod.type), token: orNull(maskToken(p.paymentMethod.token)) }
      : null,
    metadata: p.metadata ? { ...p.metadata } : null,
    idempotencyKey: orNull(p.idempotencyKey),
    generation: orNull(p.generation),
    attempt: orNull(p.attempt),
    retryCount: orNull(p.retryCount),
    maxRetries: orNull(p.maxRetries),
    lastError: e
      ? {
          code: orNull(e.code),
          message: typeof e.message === 'string' ? e.message.slice(0, MAX_MESSAGE_CHARS) : null,
          retryable: typeof e.retryable === 'boolean' ? e.retryable : null,
          timestamp: orNull(e.timestamp),
        }
      : null,
    processedAt: orNull(p.processedAt),
    nextAttemptAt: isoOrNull(p.nextAttemptAt),
    leaseUntil: isoOrNull(p.leaseUntil),
    providerChargeId: orNull(p.providerChargeId),
    // Refunds move it (each refund status change is a payment version): the entry shows it changing.
    amountRefundedMinor: orNull(p.amountRefundedMinor),
    createdAt: orNull(p.createdAt),
  };
}

/** Field-by-field changes; with no old image every field that has a value counts as changed. */
export function diffPayments(newImage: Partial<Payment>, oldImage?: Partial<Payment>): Record<string, AuditChange> {
  const next = auditedFields(newImage);
  const prev = oldImage ? auditedFields(oldImage) : undefined;
  const changes: Record<string, AuditChange> = {};
  for (const [field, value] of Object.entries(next)) {
    const before = prev ? (prev[field] ?? null) : null;
    if (!prev && value === null) continue;
    if (canonicalJson(before) !== canonicalJson(value)) changes[field] = { old: before, new: value };
  }
  return changes;
}

/** Replaces every occurrence of each token inside strings (keys included) with its masked form. */
function scrub<T>(value: T, tokens: readonly string[]): T {
  if (tokens.length === 0) return value;
  const clean = (s: string): string => tokens.reduce((acc, t) => acc.split(t).join(maskToken(t)!), s);
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return clean(v);
    if (Array.isArray(v)) return v.map(walk);
    if (v !== null && typeof v === 'object') {
      return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [clean(k), walk(x)]));
    }
    return v;
  };
  return walk(value) as T;
}

function tokensOf(...images: Array<Partial<Payment> | undefined>): string[] {
  const out = new Set<string>();
  for (const img of images) {
    const t = img?.paymentMethod?.token;
    if (typeof t === 'string' && t.length >= MIN_SCRUB_TOKEN_CHARS) out.add(t);
  }
  // Longer tokens first, so a token that contains another is masked whole.
  return [...out].sort((a, b) => b.length - a.length);
}

/**
 * The entry for the version in `newImage`. `oldImage` is the stream's previous image (absent for
 * version 1); `prevHash` is the stored hash of version - 1 (GENESIS_HASH for version 1).
 */
export function entryFromImages(newImage: Payment, oldImage: Payment | undefined, prevHash: string): AuditEntry {
  const tokens = tokensOf(newImage, oldImage);
  const change = newImage.lastChange ?? { action: 'unknown', actor: 'unknown' };
  const e = newImage.lastError;
  const details: AuditDetails = {
    amountMinor: orNull(newImage.amountMinor),
    currency: orNull(newImage.currency),
    paymentMethod: {
      type: orNull(newImage.paymentMethod?.type),
      token: orNull(maskToken(newImage.paymentMethod?.token)),
    },
    attempt: orNull(newImage.attempt),
    retryCount: orNull(newImage.retryCount),
    maxRetries: orNull(newImage.maxRetries),
    lastErrorCode: orNull(e?.code),
    changes: diffPayments(newImage, oldImage),
  };
  const timestamp = newImage.updatedAt;
  const reason = typeof change.reason === 'string' ? change.reason : undefined;
  const unhashed: Omit<AuditEntry, 'hash'> = {
    paymentId: newImage.id,
    version: newImage.version,
    tenantId: newImage.tenantId,
    action: scrub(String(change.action), tokens),
    fromStatus: oldImage?.status ?? null,
    toStatus: newImage.status,
    details: scrub(details, tokens),
    actor: scrub(String(change.actor), tokens),
    ...(reason !== undefined ? { reason: scrub(reason, tokens) } : {}),
    timestamp,
    prevHash: newImage.version === 1 ? GENESIS_HASH : prevHash,
    tenantSort: tenantSortKey(timestamp, newImage.id, newImage.version),
    tenantShard: tenantShardKey(newImage.tenantId, newImage.id),
  };
  return { ...unhashed, hash: hashEntry(unhashed) };
}

/**
 * The entry of a version whose own stream record was lost, rebuilt from the image the next version's
 * record carries as its old image. `previous` is the stored entry of the version before it (absent for
 * version 1, which is rebuilt exactly). The content says it was repaired; the chain stays verifiable.
 */
export function repairedEntry(image: Payment, previous: AuditEntry | undefined): AuditEntry {
  const exact = entryFromImages(image, undefined, previous?.hash ?? GENESIS_HASH);
  if (image.version === 1) return exact;
  if (!previous || previous.version !== image.version - 1) throw new RangeError(`repairing v${image.version} needs the entry of v${image.version - 1}`);
  const { hash: _h, ...rest } = exact;
  const unhashed: Omit<AuditEntry, 'hash'> = { ...rest, fromStatus: previous.toStatus, details: { ...rest.details, changes: {} }, repairedFrom: 'next_version_old_image' };
  return { ...unhashed, hash: hashEntry(unhashed) };
}

/**
 * Checks one payment's entries, given in version order: versions exactly 1..N, each hash matching its
 * content, each prevHash equal to the previous entry's hash (GENESIS_HASH for version 1). Names the
 * first bad entry. A removed last entry cannot be seen from the chain alone; compare the count with
 * the payment's version for that.
 */
export function verifyChain(entries: readonly AuditEntry[]): ChainVerification {
  const seen = new Set<number>();
  const first = entries[0]?.paymentId;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    const fail = (problem: ChainProblem, extra: { expectedVersion?: number } = {}): ChainVerification => ({
      ok: false,
      paymentId: e.paymentId,
      version: e.version,
      problem,
      index: i,
      ...extra,
    });
    if (seen.has(e.version)) return fail('DUPLICATE');
    seen.add(e.version);
    if (e.version !== i + 1) return fail('MISSING_VERSION', { expectedVersion: i + 1 });
    if (e.hash !== hashEntry(e)) return fail('HASH_MISMATCH');
    const expectedPrev = i === 0 ? GENESIS_HASH : entries[i - 1]!.hash;
    if (e.prevHash !== expectedPrev || e.paymentId !== first) return fail('BROKEN_LINK');
  }
  return { ok: true, count: entries.length };
}

const ISO_INSTANT =
  /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?$/;

/**
 * Parses an ISO 8601 date or date-time (a date alone is midnight UTC; a time without offset is UTC)
 * into the fixed form toISOString() gives, the form payment timestamps are stored in. Calendar-checked
 * (no 2024-02-30) and limited to years 1970..9999. Returns undefined when the text is not such a time.
 */
export function parseIsoInstant(text: string): string | undefined {
  const m = ISO_INSTANT.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h = '00', mi = '00', s = '00', , zone] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  if (year < 1970 || month < 1 || month > 12 || day < 1) return undefined;
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (day > daysInMonth || Number(h) > 23 || Number(mi) > 59 || Number(s) > 59) return undefined;
  if (zone && zone !== 'Z') {
    const [zh, zm] = zone.slice(1).split(':').map(Number);
    if (zh! > 23 || zm! > 59) return undefined;
  }
  const hasTime = m[4] !== undefined;
  const ms = Date.parse(hasTime ? (zone ? text : `${text}Z`) : `${text}T00:00:00Z`);
  if (Number.isNaN(ms)) return undefined;
  const iso = new Date(ms).toISOString();
  return iso.length === 24 ? iso : undefined;
}
