import type { CursorSeal } from '../core/cursor-seal';
import { AppError } from '../core/errors';
import { listEvents, parseEventListParams, resendEvent, type EventFeedDeps } from '../core/webhooks/event-feed';
import { apiHandler, json, type ApiRequest, type ApiResponse } from '../shared/http';
import { wiring } from '../wiring';

/** GET /api/events (newest first, signed cursor) and POST /api/events/{eventID}/resend. */
export function webhookEventsRoute(deps: { feed: EventFeedDeps; cursors: CursorSeal }) {
  return async (req: ApiRequest): Promise<ApiResponse> => {
    const route = `${req.method} ${req.resource}`;
    switch (route) {
      case 'GET /api/events': {
        const page = await listEvents(deps.feed.events, deps.cursors, req.tenantId, parseEventListParams(req.query));
        return json(200, { items: page.items, nextCursor: page.nextCursor, count: page.items.length });
      }
      case 'POST /api/events/{eventID}/resend': {
        const { event, deliveries } = await resendEvent(deps.feed, req.tenantId, req.pathParameters.eventID ?? '');
        return json(202, { eventId: event.id, deliveries });
      }
      default:
        throw new AppError('ROUTE_NOT_FOUND', `No route for ${route}`, 404);
    }
  };
}

export const handler = apiHandler((req) => webhookEventsRoute({ feed: wiring().eventFeed(), cursors: wiring().cursors() })(req));
