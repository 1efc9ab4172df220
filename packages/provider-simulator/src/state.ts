/**
 * Persistence and the ledger. With `ledgerFile`, every change is appended as one JSON line to the state
 * file (default: the ledger file name with `.state.jsonl`): intent snapshots, refunds, saved idempotent
 * answers and ledger entries. At start it is replayed (a torn last line from kill -9 is skipped) and the
 * ledger file, one ledger entry per line, is rewritten from it, then appended to. In-flight requests and
 * locks do not survive (the process that held them is gone); intents still processing and refunds still
 * pending carry the time they end, and end then.
 *
 * A capture and the answer saved under its key are two lines written in the same tick; a kill between
 * them loses only the saved answer, so a retry of that key meets the succeeded intent (400
 * payment_intent_unexpected_state), never a second capture.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { SavedResponse } from './idempotency-store';
import type { IntentJson, LedgerEntry, RefundJson } from './stripe-objects';

/** How an intent in `processing` ends, and when. */
export interface Processing {
  readonly until: number;
  readonly fail: boolean;
  readonly key?: string;
}

export interface IntentSnapshot {
  seq: number;
  intent: IntentJson;
  transientFailures: number;
  /** Refunded so far (pending and succeeded refunds): the charge's amount_refunded. */
  refunded: number;
  processing?: Processing;
}

export interface RefundSnapshot {
  refund: RefundJson;
  /** While pending: when it ends, and whether it fails. */
  endsAt?: number;
  fails?: boolean;
  key?: string;
}

/** One line of the state file. */
export interface StateEvent {
  at: number;
  intent?: IntentSnapshot;
  refund?: RefundSnapshot;
  key?: { key: string } & SavedResponse;
  ledger?: LedgerEntry;
}

export class StateLog {
  readonly entries: LedgerEntry[] = [];
  private readonly stateFile?: string;
  private readonly ledgerFile?: string;

  constructor(opts: { ledgerFile?: string; stateFile?: string }) {
    this.ledgerFile = opts.ledgerFile ? path.resolve(opts.ledgerFile) : undefined;
    this.stateFile = opts.stateFile ? path.resolve(opts.stateFile) : this.ledgerFile?.replace(/(\.jsonl)?$/, '.state.jsonl');
  }

  /** Appends an event (and its ledger entry) in memory and on disk. */
  append(ev: StateEvent): void {
    if (ev.ledger) this.entries.push(ev.ledger);
    if (this.stateFile) appendFileSync(this.stateFile, `${JSON.stringify(ev)}\n`);
    if (ev.ledger && this.ledgerFile) appendFileSync(this.ledgerFile, `${JSON.stringify(ev.ledger)}\n`);
  }

  /** Replays the state file through `apply`, then rewrites the ledger file from it. */
  load(apply: (ev: StateEvent) => void): void {
    if (!this.stateFile) return;
    mkdirSync(path.dirname(this.stateFile), { recursive: true });
    if (this.ledgerFile) mkdirSync(path.dirname(this.ledgerFile), { recursive: true });
    if (existsSync(this.stateFile)) {
      const text = readFileSync(this.stateFile, 'utf8');
      for (const line of text.split('\n')) {
        if (line.trim() === '') continue;
        let ev: StateEvent;
        try {
          ev = JSON.parse(line) as StateEvent;
        } catch {
          continue; // torn by a kill -9 mid-write
        }
        apply(ev);
        if (ev.ledger) this.entries.push(ev.ledger);
      }
      if (text !== '' && !text.endsWith('\n')) appendFileSync(this.stateFile, '\n');
    }
    // The ledger file is a view of the state file: rewrite it so both agree after any crash.
    if (this.ledgerFile) writeFileSync(this.ledgerFile, this.entries.map((e) => `${JSON.stringify(e)}\n`).join(''));
  }

  reset(): void {
    this.entries.length = 0;
    if (this.stateFile) writeFileSync(this.stateFile, '');
    if (this.ledgerFile) writeFileSync(this.ledgerFile, '');
  }
}
