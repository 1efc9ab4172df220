/**
 * Payments table stream → AuditLog. One entry per payment version, hash-chained to the previous one.
 *
 * Ordering: records are handled one at a time in batch order. An entry links to the stored hash of
 * version - 1 (from this instance's cache of hashes it wrote or found stored, else read from the
 * table). The cache outlives the invocation: a stream shard is read by one invocation at a time, so the
 * previous version of a payment was usually handled by this very instance, and its entry cannot change
 * (appends are conditional and nothing updates or deletes an entry). It saves a read per version. If that
 * entry is not there yet (its record failed, or comes later in the batch) the record fails, is
 * reported in batchItemFailures and is retried by Lambda from that point, so entries are only ever
 * appended in version order. Redelivery is harmless: appends are conditional and an identical stored
 * entry counts as success (see AuditRepository for the conflict policy).
 *
 * Repair: a stream record can be lost for good (its retries ran out while the table throttled). Then
 * the next version's record finds its predecessor neither stored nor anywhere in its batch, which on
 * an ordered stream shard means that record was given up. Its old image IS the lost version, so the
 * handler writes the lost entry from it (see repairedEntry) and goes on: one gap is closed instead of
 * every later version failing with PreviousVersionMissing forever. Two lost versions in a row still
 * wait (the older one's image is gone); a predecessor that is in the batch is always waited for.
 *
 * REMOVE events write nothing (payments are never deleted; one showing up is logged as a warning).
 * A MODIFY whose version did not change is not a new version and writes nothing.
 */
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import type { Context, DynamoDBBatchResponse, DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import type { AuditWriter } from '../adapters/dynamo/audit-repository';
import { entryFromImages, entryKeyOf, GENESIS_HASH, repairedEntry } from '../core/audit';
import type { Payment } from '../core/payment';
import { noMetrics, type Logger, type Metrics } from '../core/ports';
import { instrumented } from '../shared/instrument';
import { serviceLogger as defaultLogger } from '../shared/logger';
import { wiring } from '../wiring';

export interface AuditStreamDeps {
  readonly repository: AuditWriter;
  readonly logger?: Logger;
  /** AuditEntriesWritten, AuditChainFailures. Default: none. */
  readonly metrics?: Metrics;
}

/** The previous version's entry is not in the audit log yet; the record is retried later. */
export class PreviousVersionMissingError extends Error {
  constructor(paymentId: string, version: number) {
    super(`audit entry ${paymentId} v${version - 1} is missing; v${version} must wait for it`);
    this.name = 'PreviousVersionMissingError';
  }
}

/** A stream image that is not a payment item. Fails the record (retries, then the on-failure queue). */
export class MalformedImageError extends Error {
  constructor(reason: string) {
    super(`stream image is not a payment: ${reason}`);
    this.name = 'MalformedImageError';
  }
}

const image = (raw: Record<string, unknown> | undefined): Payment | undefined =>
  raw ? (unmarshall(raw as Record<string, AttributeValue>) as Payment) : undefined;

function checkPayment(p: Payment): void {
  if (typeof p.id !== 'string' || p.id === '') throw new MalformedImageError('no id');
  if (typeof p.tenantId !== 'string' || p.tenantId === '') throw new MalformedImageError(`no tenantId (${p.id})`);
  if (!Number.isSafeInteger(p.version) || p.version < 1) throw new MalformedImageError(`bad version (${p.id})`);
  if (typeof p.status !== 'string') throw new MalformedImageError(`no status (${p.id})`);
  if (typeof p.updatedAt !== 'string') throw new MalformedImageError(`no updatedAt (${p.id})`);
}

/** Stored entry hashes this instance knows, by `${paymentId}#${version}`; the oldest go first past `limit`. */
class StoredHashes {
  private readonly hashes = new Map<string, string>();
  constructor(private readonly limit: number) {}
  get(key: string): string | undefined {
    return this.hashes.get(key);
  }
  set(key: string, hash: string): void {
    this.hashes.delete(key);
    this.hashes.set(key, hash);
    if (this.hashes.size > this.limit) this.hashes.delete(this.hashes.keys().next().value!);
  }
}

/** About 1 MB of hashes: the open versions of a few thousand payments in flight on one shard. */
const STORED_HASHES_KEPT = 10_000;

export function createAuditStreamHandler(deps: AuditStreamDeps) {
  const log = deps.logger ?? defaultLogger;
  const repo = deps.repository;
  const metrics = deps.metrics ?? noMetrics;
  const written = new StoredHashes(STORED_HASHES_KEPT);

  return async (event: DynamoDBStreamEvent, context?: Context): Promise<DynamoDBBatchResponse> => {
    const cacheKey = (id: string, version: number) => `${id}#${version}`;
    // Every version this batch carries: a predecessor listed here is waited for, never repaired.
    const inBatch = new Set(
      event.Records.map((r) => image(r.dynamodb?.NewImage))
        .filter((p): p is Payment => p !== undefined)
        .map((p) => cacheKey(p.id, p.version)),
    );

    /**
     * The stored entry of `p`'s version before `version`, found by key: that version's time is in the
     * payment's `versionAt` (every image carries the times of the versions before it).
     */
    const storedEntry = async (p: Payment, version: number) => {
      const key = entryKeyOf(p, version);
      return key ? repo.get(key) : undefined;
    };

    /** Writes the lost predecessor from the old image; its hash, or '' when it cannot be repaired. */
    const repair = async (lost: Payment): Promise<string> => {
      const before = lost.version > 1 ? await storedEntry(lost, lost.version - 1) : undefined;
      if (lost.version > 1 && !before) return '';
      const entry = repairedEntry(lost, before);
      const result = await repo.append(entry);
      log.warn('audit gap repaired from the next version\'s old image', { code: 'AUDIT_GAP_REPAIRED', paymentId: lost.id, version: lost.version });
      return result.status === 'conflict' ? result.existing.hash : entry.hash;
    };

    const handleRecord = async (record: DynamoDBRecord): Promise<void> => {
      const seq = record.dynamodb?.SequenceNumber;
      if (record.eventName === 'REMOVE') {
        log.warn('payment removed from the Payments table; nothing audited', {
          sequenceNumber: seq,
          paymentId: record.dynamodb?.Keys?.id?.S,
        });
        return;
      }
      const next = image(record.dynamodb?.NewImage);
      if (!next) {
        log.error('stream record without NewImage; the stream must be NEW_AND_OLD_IMAGES', { sequenceNumber: seq, eventName: record.eventName });
        return;
      }
      checkPayment(next);
      const prev = image(record.dynamodb?.OldImage);
      if (prev && prev.version === next.version) {
        log.debug('no new payment version; nothing audited', { paymentId: next.id, version: next.version });
        return;
      }
      let prevHash = GENESIS_HASH;
      if (next.version > 1) {
        prevHash =
          written.get(cacheKey(next.id, next.version - 1)) ?? (await storedEntry(next, next.version - 1))?.hash ?? '';
        if (!prevHash && prev && prev.version === next.version - 1 && !inBatch.has(cacheKey(prev.id, prev.version))) {
          checkPayment(prev);
          prevHash = await repair(prev);
          if (prevHash) written.set(cacheKey(prev.id, prev.version), prevHash);
        }
        if (!prevHash) {
          log.warn('previous audit entry missing; record will be retried', {
            paymentId: next.id,
            version: next.version,
            sequenceNumber: seq,
          });
          metrics.count('AuditChainFailures', 1, { reason: 'previous_missing' });
          throw new PreviousVersionMissingError(next.id, next.version);
        }
      }
      const entry = entryFromImages(next, prev, prevHash);
      const result = await repo.append(entry);
      // After a conflict the stored entry stands, so the next version links to its hash.
      written.set(cacheKey(entry.paymentId, entry.version), result.status === 'conflict' ? result.existing.hash : entry.hash);
      if (result.status === 'written') metrics.count('AuditEntriesWritten');
      if (result.status === 'conflict') {
        metrics.count('AuditChainFailures', 1, { reason: 'conflict' });
        log.error('audit entry for this version already stored with different content; kept the stored one', {
          code: 'AUDIT_ENTRY_CONFLICT',
          paymentId: entry.paymentId,
          version: entry.version,
          sequenceNumber: seq,
        });
      }
    };

    const wrapped = async (record: DynamoDBRecord): Promise<void> => {
      try {
        await handleRecord(record);
      } catch (err) {
        if (!(err instanceof PreviousVersionMissingError)) {
          log.error('audit record failed', { sequenceNumber: record.dynamodb?.SequenceNumber, error: err as Error });
        }
        throw err;
      }
    };

    const processor = new BatchProcessor(EventType.DynamoDBStreams);
    return processPartialResponse(event, wrapped, processor, {
      context,
      processInParallel: false,
      // Report every failed record rather than throwing: Lambda retries from the first one either way.
      throwOnFullBatchFailure: false,
    });
  };
}

/** The Lambda entry point, wired with the production adapters on first use. */
export const handler = instrumented(
  (event: DynamoDBStreamEvent, context?: Context): Promise<DynamoDBBatchResponse> => wiring().auditHandler()(event, context),
);
