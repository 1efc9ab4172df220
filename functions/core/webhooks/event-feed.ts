/**
 * What happens to an event once derived: it is stored (idempotent by event id, kept for a retention
 * period), then one delivery is enqueued per endpoint of its tenant that subscribes to its type.
 *
 * Store first, enqueue second, mark third: a record that stops between the two (a crash, a failed send)
 * is retried by the stream, finds the event stored but not marked, and enqueues again. So a delivery can
 * be enqueued twice, never zero times; its id is derived from (event, endpoint), so both copies carry the
 * same Payments-Delivery-Id and the receiver's dedupe by event id absorbs them.
 *
 * The tenant's listing (GET /api/events) and resend (POST /api/events/{id}/resend) read the same store.
 * A resend is a new round of deliveries of the stored event (same body, same event id) with fresh ids.
 */
import { randomUUID } from 'node:crypto';
import { cursorScope, type CursorSeal } from '../cursor-seal';
import { AppError } from '../errors';
import { derivedId } from '../ids';
import type { DeliveryMessage } from './delivery';
import type { WebhookEvent } from './events';
import type { DeliveryQueue, WebhookEndpointStore, WebhookEventSink, WebhookEventStore } from './ports';

export const EVENTS_DEFAULT_LIMIT = 20;
export const EVENTS_MAX_LIMIT = 100;
const MAX_CURSOR_CHARS = 2048;

export interface EventFeedDeps {
  readonly events: WebhookEventStore;
  readonly endpoints: Pick<WebhookEndpointStore, 'list'>;
  readonly queue: Pick<DeliveryQueue, 'send'>;
}

/** The first round's delivery id: the same for every re-enqueue of the same (event, endpoint). */
export const deliveryIdFor = (eventId: string, endpointId: string): string => derivedId('dlv', eventId, endpointId);

async function fanOut(deps: EventFeedDeps, event: WebhookEvent, deliveryId: (endpointId: string) => string): Promise<number> {
  const targets = (await deps.endpoints.list(event.tenantId)).filter((e) => e.events.includes(event.type));
  await Promise.all(
    targets.map((e) => {
      const m: DeliveryMessage = { deliveryId: deliveryId(e.id), eventId: event.id, tenantId: event.tenantId, endpointId: e.id, attempt: 0 };
      return deps.queue.send(m);
    }),
  );
  return targets.length;
}

/** The stream's sink: store, then the first round of deliveries (see the header for the order). */
export function eventSink(deps: EventFeedDeps): WebhookEventSink {
  return {
    async record(event) {
      const created = await deps.events.put(event);
      if (!created && (await deps.events.fannedOut(event.id))) return { created: false };
      const enqueued = await fanOut(deps, event, (endpointId) => deliveryIdFor(event.id, endpointId));
      // Nothing enqueued, nothing to protect: a tenant without endpoints pays no second write.
      if (enqueued > 0) await deps.events.markFannedOut(event.id);
      return { created };
    },
  };
}

const eventNotFound = () => new AppError('EVENT_NOT_FOUND', 'Event not found', 404);

/** POST /api/events/{id}/resend: a new round to the tenant's endpoints that take the event's type. */
export async function resendEvent(deps: EventFeedDeps, tenantId: string, eventId: string): Promise<{ event: WebhookEvent; deliveries: number }> {
  const event = await deps.events.get(tenantId, eventId);
  if (!event) throw eventNotFound();
  const round = randomUUID();
  const deliveries = await fanOut(deps, event, (endpointId) => derivedId('dlv', event.id, endpointId, round));
  return { event, deliveries };
}

const bad = (field: string, code: string, message: string) => new AppError(code, message, 400, false, [{ field, code, message }]);

export interface ListEventsParams {
  readonly limit: number;
  readonly cursor?: string;
}

export function parseEventListParams(query: Record<string, string>): ListEventsParams {
  for (const name of Object.keys(query)) {
    if (name !== 'limit' && name !== 'cursor') throw bad(name, 'INVALID_QUERY_PARAMETER', `Unknown query parameter ${name}; use limit or cursor`);
  }
  let limit = EVENTS_DEFAULT_LIMIT;
  if (query.limit !== undefined) {
    limit = /^\d{1,3}$/.test(query.limit) ? Number(query.limit) : NaN;
    if (!(limit >= 1 && limit <= EVENTS_MAX_LIMIT)) throw bad('limit', 'INVALID_QUERY_PARAMETER', `limit must be an integer from 1 to ${EVENTS_MAX_LIMIT}`);
  }
  const cursor = query.cursor;
  if (cursor !== undefined && (cursor === '' || cursor.length > MAX_CURSOR_CHARS)) throw bad('cursor', 'INVALID_CURSOR', 'The cursor is not valid for this query');
  return { limit, ...(cursor !== undefined ? { cursor } : {}) };
}

/** One page of the tenant's events, newest first; the cursor is signed for this tenant (cursor-seal.ts). */
export async function listEvents(store: WebhookEventStore, cursors: CursorSeal, tenantId: string, params: ListEventsParams) {
  const scope = cursorScope('events', tenantId);
  const cursor = params.cursor === undefined ? undefined : await cursors.open(scope, params.cursor);
  const page = await store.listByTenant(tenantId, { limit: params.limit, ...(cursor !== undefined ? { cursor } : {}) });
  return { items: page.items, nextCursor: page.nextCursor === null ? null : await cursors.seal(scope, page.nextCursor) };
}
