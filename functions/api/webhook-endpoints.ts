import { AppError } from '../core/errors';
import { endpointView, endpointWithSecretView, type WebhookEndpoints } from '../core/webhooks/endpoints';
import { apiHandler, json, parseJsonObject, type ApiRequest, type ApiResponse } from '../shared/http';
import { wiring } from '../wiring';

/** The tenant's webhook endpoints. Only create and rotate-secret answer with the secret. */
export function webhookEndpointsRoute(deps: { endpoints: WebhookEndpoints }) {
  return async (req: ApiRequest): Promise<ApiResponse> => {
    const route = `${req.method} ${req.resource}`;
    const id = req.pathParameters.endpointID ?? '';
    switch (route) {
      case 'POST /api/webhook-endpoints': {
        const created = await deps.endpoints.create(req.tenantId, parseJsonObject(req));
        return json(201, endpointWithSecretView(created), { Location: `/api/webhook-endpoints/${encodeURIComponent(created.id)}` });
      }
      case 'GET /api/webhook-endpoints': {
        const items = (await deps.endpoints.list(req.tenantId)).map(endpointView);
        return json(200, { items, count: items.length });
      }
      case 'DELETE /api/webhook-endpoints/{endpointID}':
        await deps.endpoints.remove(req.tenantId, id);
        return json(204, undefined);
      case 'POST /api/webhook-endpoints/{endpointID}/rotate-secret':
        return json(200, endpointWithSecretView(await deps.endpoints.rotateSecret(req.tenantId, id)));
      default:
        throw new AppError('ROUTE_NOT_FOUND', `No route for ${route}`, 404);
    }
  };
}

export const handler = apiHandler((req) => webhookEndpointsRoute({ endpoints: wiring().webhookEndpoints() })(req));
