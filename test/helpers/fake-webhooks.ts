/** In-memory webhook stores and queue with the adapters' semantics (conditional writes, tenant scoping, newest first). */
import type { DeliveryMessage } from '../../functions/core/webhooks/delivery';
import type { WebhookEndpoint } from '../../functions/core/webhooks/endpoints';
import type { WebhookEvent } from '../../functions/core/webhooks/events';
import type { DeliveryQueue, WebhookEndpointStore, WebhookEventPage, WebhookEventStore } from '../../functions/core/webhooks/ports';

export class FakeEndpointStore implements WebhookEndpointStore {
  readonly items = new Map<string, WebhookEndpoint>();
  private key = (t: string, id: string) => `${t}\u0000${id}`;
  async create(e: WebhookEndpoint) {
    if (this.items.has(this.key(e.tenantId, e.id))) throw new Error('ConditionalCheckFailed');
    this.items.set(this.key(e.tenantId, e.id), e);
  }
  async get(t: string, id: string) {
    return this.items.get(this.key(t, id));
  }
  async list(t: string) {
    return [...this.items.values()].filter((e) => e.tenantId === t);
  }
  async remove(t: string, id: string) {
    return this.items.delete(this.key(t, id));
  }
  async rotate(t: string, id: string, next: { secret: string; previousSecretExpiresAt: number }) {
    const cur = this.items.get(this.key(t, id));
    if (!cur) return undefined;
    const rotated = { ...cur, previousSecret: cur.secret, ...next };
    this.items.set(this.key(t, id), rotated);
    return rotated;
  }
}

export class FakeEventStore implements WebhookEventStore {
  readonly items = new Map<string, { event: string; fannedOut: boolean }>();
  async put(e: WebhookEvent) {
    if (this.items.has(e.id)) return false;
    this.items.set(e.id, { event: JSON.stringify(e), fannedOut: false });
    return true;
  }
  async get(t: string, id: string) {
    const i = this.items.get(id);
    const e = i && (JSON.parse(i.event) as WebhookEvent);
    return e && e.tenantId === t ? e : undefined;
  }
  async fannedOut(id: string) {
    return this.items.get(id)?.fannedOut === true;
  }
  async markFannedOut(id: string) {
    this.items.get(id)!.fannedOut = true;
  }
  async listByTenant(t: string, opts: { limit: number; cursor?: string }): Promise<WebhookEventPage> {
    const all = [...this.items.values()]
      .map((i) => JSON.parse(i.event) as WebhookEvent)
      .filter((e) => e.tenantId === t)
      .sort((a, b) => `${b.created}#${b.id}`.localeCompare(`${a.created}#${a.id}`));
    const start = opts.cursor === undefined ? 0 : Number(opts.cursor);
    const items = all.slice(start, start + opts.limit);
    return { items, nextCursor: start + opts.limit < all.length ? String(start + opts.limit) : null };
  }
}

export class FakeDeliveryQueue implements DeliveryQueue {
  readonly sent: { m: DeliveryMessage; delaySeconds: number }[] = [];
  readonly dead: { m: DeliveryMessage; reason: string }[] = [];
  /** Fails the next n sends. */
  failNext = 0;
  async send(m: DeliveryMessage, delaySeconds = 0) {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('SQS unavailable');
    }
    this.sent.push({ m, delaySeconds });
  }
  async deadLetter(m: DeliveryMessage, reason: string) {
    this.dead.push({ m, reason });
  }
}
