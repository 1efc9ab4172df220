/**
 * The provider rate budget (core/ports/rate-budget.ts) on DynamoDB, shared by every function instance:
 * numbered tickets per second, each ticket a slot at an even spacing inside its second.
 *
 * One item per (shard, second) counts the tickets handed out for that second. Taking a slot is one
 * unconditional `ADD n :1` on the second the caller asks for; the new count is its ticket:
 *   ticket k ≤ perSecond   slot = second + (k - 1) × interval; the caller sleeps until then.
 *   ticket k > perSecond   that second is full: ask the next one, up to `maxWaitMs` ahead, then
 *                          BudgetExhaustedError. (A ticket past the budget takes nothing from anyone.)
 * Slots are `interval` apart inside a second and the seconds follow each other, so the schedule never
 * starts more than the budget in any sliding second, not even across a second's boundary. The write
 * always succeeds: a caller's clock only chooses which second it asks for, so slow writes or skewed
 * clocks cannot make callers fight over a condition. A slot whose time has passed by more than
 * `burstMs` when the answer arrives (a slow write) is not used, since starting it late could crowd the
 * next second; the caller asks again. The first caller in a second usually finds its early slots past:
 * it gives them up in one more write and takes the first slot after that write lands (each instance
 * aims twice its latest round trip ahead, so a slow store costs delay, not slots).
 *
 * Each instance remembers the latest second it found full and asks from there, so a backlog costs one
 * write per slot, not one per full second. Shards: a shard takes at most SHARD_OPS_PER_SECOND tickets a
 * second (a partition takes about 1,000 WCU/s); a caller picks one at random, each with an even share.
 * Items expire (TTL `expiresAt`) an hour after their second.
 */
import { UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { BudgetExhaustedError, type RateBudget } from '../../core/ports/rate-budget';

/** Slots a shard hands out per second at most (one write each). */
export const SHARD_OPS_PER_SECOND = 400;
/** The TTL attribute of the budget's items. */
export const BUDGET_TTL_ATTRIBUTE = 'expiresAt';

export interface DynamoRateBudgetOptions {
  readonly table: string;
  /** The budget's name: one per provider account. */
  readonly name: string;
  readonly opsPerSecond: number;
  /** Longest a caller waits for its slot before it is refused. */
  readonly maxWaitMs: number;
  /** A slot this late when its ticket arrives is given up (not started late). Default 50 ms. */
  readonly burstMs?: number;
  /** Default: opsPerSecond / SHARD_OPS_PER_SECOND, rounded up. */
  readonly shards?: number;
  readonly now?: () => number;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly random?: () => number;
  /** Called with every slot handed out (epoch ms), e.g. by the measuring script. */
  readonly onSlot?: (slotMs: number) => void;
}

const sleepMs = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const DEFAULT_BURST_MS = 50;
/** Late slots given up in a row before the caller is refused (the store is too slow to keep a pace). */
const LATE_LIMIT = 20;

export class DynamoRateBudget implements RateBudget {
  readonly shards: number;
  /** Tickets a shard hands out per second. */
  readonly perSecond: number;
  /** Ms between two slots of one shard. */
  readonly intervalMs: number;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly random: () => number;
  private readonly burstMs: number;
  /** Per shard: the latest second this instance found full (asking earlier would only find it full). */
  private readonly fullUpTo = new Map<number, number>();
  /** This instance's estimate of a write's round trip (ms): slots are aimed that far ahead. */
  private roundTripMs = 10;

  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly opts: DynamoRateBudgetOptions,
  ) {
    if (!(opts.opsPerSecond > 0)) throw new RangeError(`opsPerSecond must be positive: ${opts.opsPerSecond}`);
    if (!(opts.maxWaitMs >= 0)) throw new RangeError(`maxWaitMs must not be negative: ${opts.maxWaitMs}`);
    this.shards = opts.shards ?? Math.max(1, Math.ceil(opts.opsPerSecond / SHARD_OPS_PER_SECOND));
    this.perSecond = Math.max(1, Math.floor(opts.opsPerSecond / this.shards));
    this.intervalMs = 1000 / this.perSecond;
    this.now = opts.now ?? Date.now;
    this.sleep = opts.sleep ?? sleepMs;
    this.random = opts.random ?? Math.random;
    this.burstMs = opts.burstMs ?? DEFAULT_BURST_MS;
  }

  async take(): Promise<void> {
    const shard = Math.floor(this.random() * this.shards);
    const now = this.now();
    const last = Math.floor((now + this.opts.maxWaitMs) / 1000);
    let late = 0;
    for (let second = Math.max(Math.floor(now / 1000), (this.fullUpTo.get(shard) ?? 0) + 1); second <= last; ) {
      let ticket = await this.ticket(shard, second, 1);
      let at = this.now();
      // Aim past the next write's round trip: a slot that has passed when the answer arrives is lost.
      const aim = at + 2 * this.roundTripMs;
      if (ticket <= this.perSecond && this.slotOf(second, ticket) < at - this.burstMs) {
        // The slots of this second before now went unused: give them up in one write, and take the
        // first one after it lands (the last ticket of that write).
        ticket = await this.ticket(shard, second, Math.ceil((aim - this.slotOf(second, ticket)) / this.intervalMs));
        at = this.now();
      }
      if (ticket > this.perSecond) {
        this.fullUpTo.set(shard, Math.max(this.fullUpTo.get(shard) ?? 0, second));
        second++;
        continue;
      }
      const slot = this.slotOf(second, ticket);
      if (slot > now + this.opts.maxWaitMs) throw new BudgetExhaustedError(Math.ceil(slot - now - this.opts.maxWaitMs));
      if (slot < at - this.burstMs) {
        // The store answered too slowly for this slot: starting it now could crowd the next one.
        if (++late >= LATE_LIMIT) throw new BudgetExhaustedError(Math.ceil(this.intervalMs), 'provider rate budget store too slow to keep the pace');
        continue;
      }
      this.opts.onSlot?.(slot);
      if (slot > at) await this.sleep(slot - at);
      return;
    }
    throw new BudgetExhaustedError(Math.max(1, (last + 1) * 1000 - now - this.opts.maxWaitMs));
  }

  private slotOf(second: number, ticket: number): number {
    return second * 1000 + (ticket - 1) * this.intervalMs;
  }

  /** Fills every shard's seconds up to `epochMs`, so no slot before it is handed out. */
  async pauseUntil(epochMs: number): Promise<void> {
    const now = this.now();
    const writes: Promise<number>[] = [];
    for (let shard = 0; shard < this.shards; shard++) {
      for (let second = Math.floor(now / 1000); second * 1000 < epochMs; second++) {
        // The slots of this second before epochMs: taken by one write.
        const before = Math.min(this.perSecond, Math.ceil((epochMs - second * 1000) / this.intervalMs));
        writes.push(this.ticket(shard, second, before));
      }
    }
    await Promise.all(writes);
  }

  /** Adds `count` tickets to (shard, second) and returns the count after. */
  private async ticket(shard: number, second: number, count: number): Promise<number> {
    const sent = this.now();
    const r = await this.db.send(
      new UpdateCommand({
        TableName: this.opts.table,
        Key: { pk: `${this.opts.name}#${shard}#${second}` },
        UpdateExpression: `ADD n :count SET ${BUDGET_TTL_ATTRIBUTE} = if_not_exists(${BUDGET_TTL_ATTRIBUTE}, :expires)`,
        ExpressionAttributeValues: { ':count': count, ':expires': second + 3600 },
        ReturnValues: 'UPDATED_NEW',
      }),
    );
    // A slow answer raises the estimate at once; fast ones lower it gradually.
    const took = Math.max(0, this.now() - sent);
    this.roundTripMs = took > this.roundTripMs ? took : 0.8 * this.roundTripMs + 0.2 * took;
    return Number(r.Attributes!.n);
  }
}
