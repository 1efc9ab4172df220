/**
 * Reconciliation runs in the RecoveryRuns table: one item per run (pk RUN, sk <startedAt>#<runId>)
 * and a lock item (pk LOCK) so at most one run is active; starting while one runs returns that run.
 * One cursor item (pk CURSOR) says where the next run starts (written by the run holding the lock).
 */
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { DeleteCommand, GetCommand, PutCommand, QueryCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { ReconcilerCursor } from '../../core/reconciler';
import { loadConfig, type PaymentsConfig } from '../../shared/env';

/**
 * How long a run may hold the lock before another run may take over: a little over the reconciler's
 * timeout (lib/config.ts reconcilerTimeoutSeconds), so a crashed run delays the next one by at most this. RECOVERY_RUN_LEASE_SECONDS
 * sets it (drills use seconds).
 */
export const runLeaseMs = (config: Pick<PaymentsConfig, 'recoveryRunLeaseSeconds'> = loadConfig()): number => config.recoveryRunLeaseSeconds * 1000;

export type RunStatus = 'running' | 'completed' | 'failed';

export interface RecoveryRun {
  readonly runId: string;
  readonly trigger: string;
  readonly status: RunStatus;
  readonly startedAt: string;
  readonly finishedAt?: string;
  readonly counts: Record<string, number>;
  readonly itemsRead?: number;
  readonly intentsRead?: number;
  readonly refundsIssued?: number;
  readonly durationMs?: number;
  readonly discrepancies?: unknown[];
  readonly error?: string;
}

interface LockItem {
  readonly pk: 'LOCK';
  readonly sk: 'LOCK';
  readonly runId: string;
  readonly startedAt: string;
  /** Epoch ms; a crashed run's lock is taken over after this. */
  readonly leaseUntil: number;
}

export class RecoveryRunsRepository {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  /** Takes the run lock, or returns the run that holds it. */
  async start(runId: string, trigger: string, now: Date, leaseMs: number): Promise<{ started: boolean; run: RecoveryRun }> {
    const startedAt = now.toISOString();
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: { pk: 'LOCK', sk: 'LOCK', runId, startedAt, leaseUntil: now.getTime() + leaseMs } satisfies LockItem,
          ConditionExpression: 'attribute_not_exists(pk) OR leaseUntil < :now',
          ExpressionAttributeValues: { ':now': now.getTime() },
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException && err.Item) {
        const lock = unmarshall(err.Item) as LockItem;
        return { started: false, run: { runId: lock.runId, trigger: 'unknown', status: 'running', startedAt: lock.startedAt, counts: {} } };
      }
      throw err;
    }
    const run: RecoveryRun = { runId, trigger, status: 'running', startedAt, counts: {} };
    await this.doc.send(new PutCommand({ TableName: this.table, Item: { pk: 'RUN', sk: `${startedAt}#${runId}`, ...run } }));
    return { started: true, run };
  }

  async finish(run: RecoveryRun, result: Omit<RecoveryRun, 'runId' | 'trigger' | 'startedAt'>): Promise<void> {
    await this.doc.send(
      new UpdateCommand({
        TableName: this.table,
        Key: { pk: 'RUN', sk: `${run.startedAt}#${run.runId}` },
        UpdateExpression:
          'SET #s = :s, finishedAt = :f, counts = :c, itemsRead = :r, intentsRead = :i, refundsIssued = :ri, durationMs = :d, discrepancies = :x, #e = :e',
        ExpressionAttributeNames: { '#s': 'status', '#e': 'error' },
        ExpressionAttributeValues: {
          ':s': result.status,
          ':f': result.finishedAt,
          ':c': result.counts,
          ':r': result.itemsRead ?? 0,
          ':i': result.intentsRead ?? 0,
          ':ri': result.refundsIssued ?? 0,
          ':d': result.durationMs ?? 0,
          ':x': result.discrepancies ?? [],
          ':e': result.error ?? null,
        },
      }),
    );
    // Release only our own lock.
    await this.doc
      .send(
        new DeleteCommand({
          TableName: this.table,
          Key: { pk: 'LOCK', sk: 'LOCK' },
          ConditionExpression: 'runId = :r',
          ExpressionAttributeValues: { ':r': run.runId },
        }),
      )
      .catch((err) => {
        if (!(err instanceof ConditionalCheckFailedException)) throw err;
      });
  }

  /** Where the next run starts; the first run starts at the beginning. */
  async cursor(): Promise<ReconcilerCursor> {
    const { Item } = await this.doc.send(new GetCommand({ TableName: this.table, Key: { pk: 'CURSOR', sk: 'CURSOR' }, ConsistentRead: true }));
    return (Item?.cursor as ReconcilerCursor | undefined) ?? { openPartition: 0 };
  }

  async saveCursor(cursor: ReconcilerCursor, now: Date): Promise<void> {
    await this.doc.send(new PutCommand({ TableName: this.table, Item: { pk: 'CURSOR', sk: 'CURSOR', cursor, savedAt: now.toISOString() } }));
  }

  async latest(limit = 10): Promise<RecoveryRun[]> {
    const { Items } = await this.doc.send(
      new QueryCommand({
        TableName: this.table,
        KeyConditionExpression: 'pk = :p',
        ExpressionAttributeValues: { ':p': 'RUN' },
        ScanIndexForward: false,
        Limit: limit,
      }),
    );
    return (Items ?? []).map(({ pk: _pk, sk: _sk, ...run }) => run as RecoveryRun);
  }
}
