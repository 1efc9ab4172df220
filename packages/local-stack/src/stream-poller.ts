/**
 * A DynamoDB stream event source mapping: follows every shard of the table's stream (parents before
 * children, new shards as they appear), invokes the function with batches of stream records, and
 * applies the mapping's error handling: ReportBatchItemFailures (retry from the first failed record),
 * BisectBatchOnFunctionError, MaximumRetryAttempts, MaximumRecordAgeInSeconds and the OnFailure
 * destination (an SQS queue that receives a description of the discarded batch).
 *
 * Where each shard stands is kept in a CheckpointStore (stream-checkpoints.ts).
 */
import { randomUUID } from 'node:crypto';
import {
  DescribeStreamCommand,
  ExpiredIteratorException,
  GetShardIteratorCommand,
  TrimmedDataAccessException,
  type DynamoDBStreamsClient,
  type Shard,
  type ShardIteratorType,
} from '@aws-sdk/client-dynamodb-streams';
import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { batchItemFailures, type EventSourceMappingDef } from './event-sources';
import type { FunctionRegistry } from './function-registry';
import { LOCAL_ACCOUNT, LOCAL_REGION } from './local-account';
import type { CheckpointStore } from './stream-checkpoints';
import { getRecordsRaw, streamEvent, type WireStreamRecord } from './stream-records';
import { errorMessage, shortId, sleep, type LogFn } from './util';

export interface StreamPollerOptions {
  readonly mapping: EventSourceMappingDef;
  readonly streamArn: string;
  readonly streams: DynamoDBStreamsClient;
  readonly sqs: SQSClient;
  readonly registry: FunctionRegistry;
  readonly checkpoints: CheckpointStore;
  /** Queue URL of the OnFailure destination, when the mapping has one. */
  readonly onFailureQueueUrl?: string;
  readonly log: LogFn;
  readonly pollIntervalMs?: number;
  readonly discoverIntervalMs?: number;
  /** Delay before retry n (1-based) of a failed batch. */
  readonly retryDelayMs?: (attempt: number) => number;
}

interface ShardState {
  readonly shard: Shard;
  status: 'waiting' | 'running' | 'done';
  loop?: Promise<void>;
}

type Failure = { kind: 'error' } | { kind: 'partial'; firstFailed: number };

export class StreamPoller {
  private readonly abort = new AbortController();
  private readonly shards = new Map<string, ShardState>();
  private main?: Promise<void>;
  private firstDiscovery = true;
  private readonly label: string;
  private readonly maxRetries: number;
  private readonly maxAgeSeconds: number;
  private readonly bisect: boolean;

  constructor(private readonly opts: StreamPollerOptions) {
    const p = opts.mapping.props;
    this.label = `[${shortId(opts.mapping.functionId)} ← stream]`;
    this.maxRetries = Number(p.MaximumRetryAttempts ?? -1);
    this.maxAgeSeconds = Number(p.MaximumRecordAgeInSeconds ?? -1);
    this.bisect = p.BisectBatchOnFunctionError === true || p.BisectBatchOnFunctionError === 'true';
  }

  start(): void {
    this.main = this.discoverLoop();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.main?.catch(() => {});
    await Promise.allSettled([...this.shards.values()].map((s) => s.loop));
    this.opts.checkpoints.flush();
  }

  private get signal() {
    return this.abort.signal;
  }

  private async discoverLoop(): Promise<void> {
    while (!this.signal.aborted) {
      try {
        await this.discover();
      } catch (err) {
        if (!this.signal.aborted) this.opts.log(`${this.label} DescribeStream failed: ${errorMessage(err)}`);
      }
      await sleep(this.opts.discoverIntervalMs ?? 1000, this.signal);
    }
  }

  private async discover(): Promise<void> {
    const { streamArn, mapping, checkpoints } = this.opts;
    const found: Shard[] = [];
    let start: string | undefined;
    do {
      const { StreamDescription } = await this.opts.streams.send(
        new DescribeStreamCommand({ StreamArn: streamArn, ExclusiveStartShardId: start }),
        { abortSignal: this.signal },
      );
      found.push(...(StreamDescription?.Shards ?? []));
      start = StreamDescription?.LastEvaluatedShardId;
    } while (start && !this.signal.aborted);

    const saved = checkpoints.get(mapping.logicalId, streamArn);
    const firstStart = this.firstDiscovery && !saved;
    for (const shard of found) {
      const id = shard.ShardId!;
      if (this.shards.has(id)) continue;
      let status: ShardState['status'] = 'waiting';
      if (saved?.shards[id]?.done) status = 'done';
      // Starting at LATEST: what is already closed was before our time.
      if (firstStart && mapping.props.StartingPosition === 'LATEST' && shard.SequenceNumberRange?.EndingSequenceNumber) status = 'done';
      this.shards.set(id, { shard, status });
    }
    if (this.firstDiscovery) checkpoints.touch(mapping.logicalId, streamArn);
    for (const state of this.shards.values()) {
      if (state.status !== 'waiting') continue;
      const parentId = state.shard.ParentShardId;
      const parent = parentId ? this.shards.get(parentId) : undefined;
      if (parent && parent.status !== 'done') continue;
      state.status = 'running';
      const useStartingPosition = firstStart;
      state.loop = this.shardLoop(state, useStartingPosition).catch((err) => {
        if (this.signal.aborted) return;
        this.opts.log(`${this.label} shard ${state.shard.ShardId} stopped: ${errorMessage(err)}`);
        state.status = 'waiting'; // picked up again at the next discovery
      });
    }
    this.firstDiscovery = false;
  }

  private async iterator(shardId: string, fromStartingPosition: boolean): Promise<string | undefined> {
    const { streamArn, mapping, checkpoints } = this.opts;
    const seq = checkpoints.get(mapping.logicalId, streamArn)?.shards[shardId]?.seq;
    let type: ShardIteratorType = 'TRIM_HORIZON';
    if (seq) type = 'AFTER_SEQUENCE_NUMBER';
    else if (fromStartingPosition && mapping.props.StartingPosition === 'LATEST') type = 'LATEST';
    try {
      const { ShardIterator } = await this.opts.streams.send(
        new GetShardIteratorCommand({ StreamArn: streamArn, ShardId: shardId, ShardIteratorType: type, ...(seq ? { SequenceNumber: seq } : {}) }),
        { abortSignal: this.signal },
      );
      return ShardIterator;
    } catch (err) {
      if (err instanceof TrimmedDataAccessException && seq) {
        this.opts.log(`${this.label} checkpoint of shard ${shardId} was trimmed; reading from the oldest record`);
        const { ShardIterator } = await this.opts.streams.send(
          new GetShardIteratorCommand({ StreamArn: streamArn, ShardId: shardId, ShardIteratorType: 'TRIM_HORIZON' }),
          { abortSignal: this.signal },
        );
        return ShardIterator;
      }
      throw err;
    }
  }

  private async shardLoop(state: ShardState, fromStartingPosition: boolean): Promise<void> {
    const shardId = state.shard.ShardId!;
    const { mapping, streamArn, checkpoints } = this.opts;
    let iterator = await this.iterator(shardId, fromStartingPosition);
    const limit = Math.max(1, Math.min(1000, mapping.batchSize));
    while (!this.signal.aborted) {
      if (!iterator) {
        state.status = 'done';
        checkpoints.update(mapping.logicalId, streamArn, shardId, { done: true });
        return;
      }
      let records: WireStreamRecord[];
      let next: string | undefined;
      try {
        const res = await getRecordsRaw(this.opts.streams, iterator, limit, this.signal);
        records = res.records;
        next = res.nextShardIterator;
      } catch (err) {
        if (this.signal.aborted) return;
        // DynamoDB Local answers TrimmedDataAccess for an iterator taken on a shard that was empty then.
        const expected = err instanceof ExpiredIteratorException || err instanceof TrimmedDataAccessException;
        if (!expected) this.opts.log(`${this.label} GetRecords on ${shardId} failed: ${errorMessage(err)}`);
        await sleep(500, this.signal);
        iterator = await this.iterator(shardId, false);
        continue;
      }
      if (records.length) {
        const completed = await this.handleBatch(shardId, records);
        if (!completed) return; // stopping: the checkpoint says where to resume
      }
      iterator = next;
      if (!records.length && next) await sleep(this.opts.pollIntervalMs ?? 250, this.signal);
    }
  }

  /** Delivers one batch read from a shard; false when interrupted by stop(). */
  private async handleBatch(shardId: string, records: WireStreamRecord[]): Promise<boolean> {
    const { mapping, streamArn, checkpoints } = this.opts;
    const checkpoint = (r: WireStreamRecord) => checkpoints.update(mapping.logicalId, streamArn, shardId, { seq: r.dynamodb!.SequenceNumber! });
    // Sub-batches still to deliver, in stream order, with the number of failed attempts so far.
    const pending: Array<{ records: WireStreamRecord[]; attempts: number }> = [];
    const fresh: WireStreamRecord[] = [];
    for (const r of records) {
      if (this.tooOld(r)) {
        if (fresh.length) pending.push({ records: fresh.splice(0), attempts: 0 });
        pending.push({ records: [r], attempts: -1 }); // discarded below without an invocation
      } else fresh.push(r);
    }
    if (fresh.length) pending.push({ records: fresh, attempts: 0 });

    while (pending.length) {
      if (this.signal.aborted) return false;
      const item = pending[0]!;
      if (item.attempts < 0) {
        await this.sendToOnFailure(shardId, item.records, 'RecordAgeExceeded', 0);
        checkpoint(item.records.at(-1)!);
        pending.shift();
        continue;
      }
      const failure = await this.deliver(item.records);
      if (this.signal.aborted) return false;
      if (!failure) {
        checkpoint(item.records.at(-1)!);
        pending.shift();
        continue;
      }
      if (failure.kind === 'partial' && failure.firstFailed > 0) {
        checkpoint(item.records[failure.firstFailed - 1]!);
        item.records = item.records.slice(failure.firstFailed);
      }
      item.attempts++;
      const exhausted = this.maxRetries >= 0 && item.attempts > this.maxRetries;
      const aged = item.records.every((r) => this.tooOld(r));
      if (exhausted || aged) {
        this.opts.log(`${this.label} discarding ${item.records.length} record(s) of ${shardId} after ${item.attempts} attempt(s)`);
        await this.sendToOnFailure(shardId, item.records, exhausted ? 'RetryAttemptsExhausted' : 'RecordAgeExceeded', item.attempts);
        checkpoint(item.records.at(-1)!);
        pending.shift();
        continue;
      }
      if (failure.kind === 'error' && this.bisect && item.records.length > 1) {
        const half = Math.ceil(item.records.length / 2);
        pending.splice(0, 1, { records: item.records.slice(0, half), attempts: item.attempts }, { records: item.records.slice(half), attempts: item.attempts });
      }
      const delay = this.opts.retryDelayMs?.(item.attempts) ?? Math.min(5000, 250 * 2 ** (item.attempts - 1));
      await sleep(delay, this.signal);
    }
    return true;
  }

  private tooOld(r: WireStreamRecord): boolean {
    if (this.maxAgeSeconds < 0) return false;
    const created = r.dynamodb?.ApproximateCreationDateTime;
    if (created === undefined) return false;
    // DynamoDB Local rounds creation times down to the minute: allow for it.
    return Date.now() - Number(created) * 1000 > (this.maxAgeSeconds + 60) * 1000;
  }

  private async deliver(records: WireStreamRecord[]): Promise<Failure | undefined> {
    const { mapping, streamArn, registry } = this.opts;
    const outcome = await registry.invoke(mapping.functionId, streamEvent(records, streamArn), 'stream');
    if (!outcome.ok) return { kind: 'error' };
    if (!mapping.reportBatchItemFailures) return undefined;
    const seqs = records.map((r) => r.dynamodb!.SequenceNumber!);
    const failed = batchItemFailures(outcome.payload, seqs);
    if (failed === 'all') return { kind: 'partial', firstFailed: 0 };
    if (failed.size === 0) return undefined;
    return { kind: 'partial', firstFailed: seqs.findIndex((s) => failed.has(s)) };
  }

  private async sendToOnFailure(shardId: string, records: WireStreamRecord[], condition: string, attempts: number): Promise<void> {
    const { onFailureQueueUrl, mapping, streamArn } = this.opts;
    if (!onFailureQueueUrl) return;
    const times = records
      .map((r) => r.dynamodb?.ApproximateCreationDateTime)
      .filter((d): d is number => d !== undefined)
      .map((d) => new Date(Number(d) * 1000).toISOString());
    const body = {
      requestContext: {
        requestId: randomUUID(),
        functionArn: `arn:aws:lambda:${LOCAL_REGION}:${LOCAL_ACCOUNT}:function:${mapping.functionId}`,
        condition,
        approximateInvokeCount: attempts,
      },
      responseContext: { statusCode: 200, executedVersion: '$LATEST', functionError: 'Unhandled' },
      version: '1.0',
      timestamp: new Date().toISOString(),
      DDBStreamBatchInfo: {
        shardId,
        startSequenceNumber: records[0]!.dynamodb?.SequenceNumber,
        endSequenceNumber: records.at(-1)!.dynamodb?.SequenceNumber,
        approximateArrivalOfFirstRecord: times[0],
        approximateArrivalOfLastRecord: times.at(-1),
        batchSize: records.length,
        streamArn,
      },
    };
    try {
      await this.opts.sqs.send(new SendMessageCommand({ QueueUrl: onFailureQueueUrl, MessageBody: JSON.stringify(body) }));
    } catch (err) {
      this.opts.log(`${this.label} could not send to the on-failure destination: ${errorMessage(err)}`);
    }
  }
}
