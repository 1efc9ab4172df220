/**
 * Checkpoints of the DynamoDB stream event sources: the last processed sequence number of each shard,
 * kept in memory and, when a file is given, persisted so a restart resumes where it stopped (delivery
 * is at-least-once).
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { errorMessage, type LogFn } from './util';

interface ShardCheckpoint {
  /** Last sequence number handled (processed, or discarded to the on-failure destination). */
  seq?: string;
  /** The shard is closed and fully handled. */
  done?: boolean;
}
interface MappingCheckpoint {
  streamArn: string;
  shards: Record<string, ShardCheckpoint>;
}

/** Checkpoints of every stream mapping, in memory and optionally in a JSON file. */
export class CheckpointStore {
  private data: Record<string, MappingCheckpoint> = {};
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly file?: string,
    private readonly log: LogFn = () => {},
  ) {
    if (file && existsSync(file)) {
      try {
        this.data = JSON.parse(readFileSync(file, 'utf8'));
      } catch (err) {
        log(`ignoring unreadable stream checkpoints ${file}: ${errorMessage(err)}`);
      }
    }
  }

  /** The mapping's checkpoints for `streamArn`; undefined the first time, or when the stream changed. */
  get(mappingId: string, streamArn: string): MappingCheckpoint | undefined {
    const c = this.data[mappingId];
    return c && c.streamArn === streamArn ? c : undefined;
  }

  update(mappingId: string, streamArn: string, shardId: string, change: ShardCheckpoint): void {
    let c = this.data[mappingId];
    if (!c || c.streamArn !== streamArn) c = this.data[mappingId] = { streamArn, shards: {} };
    c.shards[shardId] = { ...c.shards[shardId], ...change };
    this.scheduleFlush();
  }

  /** Creates the mapping's entry (so a restart knows this is not the first start). */
  touch(mappingId: string, streamArn: string): void {
    if (!this.get(mappingId, streamArn)) {
      this.data[mappingId] = { streamArn, shards: {} };
      this.scheduleFlush();
    }
  }

  private scheduleFlush() {
    if (!this.file || this.timer) return;
    this.timer = setTimeout(() => this.flush(), 300);
    this.timer.unref();
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.file) return;
    try {
      mkdirSync(path.dirname(this.file), { recursive: true });
      const tmp = `${this.file}.${process.pid}.tmp`;
      writeFileSync(tmp, JSON.stringify(this.data, null, 2));
      renameSync(tmp, this.file);
    } catch (err) {
      this.log(`could not save stream checkpoints: ${errorMessage(err)}`);
    }
  }
}
