/**
 * Stripe's idempotency rules for POST requests with an `Idempotency-Key`:
 *   - the first answer of an endpoint that ran is saved with a fingerprint of the route and parameters,
 *     5xx answers included, and replayed for the same key and parameters with `Idempotent-Replayed: true`
 *     for the key's retention (`idempotencyTtlMs`, 24 h by default); after that the key is forgotten and the
 *     same request runs again;
 *   - the same key with other parameters: 400 idempotency_error;
 *   - the same key while its first request runs: 409 idempotency_error / idempotency_key_in_use;
 *   - nothing is saved for answers given before the endpoint runs (401, 404 of the path's object, parameter
 *     errors, 409, 429), so those may be retried.
 */
import { createHash } from 'node:crypto';
import { canonical, type Params } from './form';
import { stripeError, type Reply } from './stripe-objects';

export interface SavedResponse {
  fingerprint: string;
  status: number;
  body: unknown;
  at: number;
  /** A confirm's key: its replays draw resetAfterCommit too. */
  confirm?: boolean;
}

export class IdempotencyStore {
  private readonly saved = new Map<string, SavedResponse>();
  private readonly inflight = new Map<string, string>();

  constructor(
    private readonly ttlMs: () => number,
    private readonly onSave: (key: string, saved: SavedResponse) => void,
  ) {}

  /** Puts back a saved answer (state replay at start). */
  restore(key: string, saved: SavedResponse): void {
    this.saved.set(key, saved);
  }

  clear(): void {
    this.saved.clear();
    this.inflight.clear();
  }

  /**
   * Runs `run` under the key's rules. `replayed(saved)` may turn a replay into another reply (a reset
   * connection); `stopped()` says the server is shutting down (nothing is saved then).
   */
  async run(
    key: string | undefined,
    route: string,
    params: Params,
    run: (key: string | undefined) => Promise<Reply>,
    opts: { confirm?: boolean; stopped: () => boolean; onReplay?: (reply: Reply, saved: SavedResponse) => Reply },
  ): Promise<Reply> {
    if (!key) return run(undefined);
    const fingerprint = createHash('sha256').update(JSON.stringify([route, canonical(params)])).digest('hex');
    const saved = this.saved.get(key);
    if (saved && Date.now() - saved.at < this.ttlMs()) {
      if (saved.fingerprint !== fingerprint) return keyReused(key);
      const replay: Reply = { status: saved.status, body: saved.body, headers: { 'idempotent-replayed': 'true' } };
      return opts.onReplay ? opts.onReplay(replay, saved) : replay;
    }
    const running = this.inflight.get(key);
    if (running !== undefined) {
      if (running !== fingerprint) return keyReused(key);
      return stripeError(409, {
        type: 'idempotency_error',
        code: 'idempotency_key_in_use',
        message: `There is currently another in-progress request using this idempotency key ('${key}'). Try again later.`,
      });
    }
    this.inflight.set(key, fingerprint);
    try {
      const reply = await run(key);
      if (reply.save && !opts.stopped()) {
        const rec: SavedResponse = { fingerprint, status: reply.status, body: reply.body, at: Date.now(), ...(opts.confirm ? { confirm: true } : {}) };
        this.saved.set(key, rec);
        this.onSave(key, rec);
      }
      return reply;
    } finally {
      this.inflight.delete(key);
    }
  }
}

const keyReused = (key: string): Reply =>
  stripeError(400, {
    type: 'idempotency_error',
    message: `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.`,
  });
