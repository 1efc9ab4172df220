/**
 * A tenant's webhook endpoints: register, list, delete, rotate the secret.
 *
 * - The secret is generated here and shown twice only: in the answer to the create and to a rotation.
 *   Every other view leaves it out; the table holding it is encrypted with the stage's data key.
 * - A URL is checked at registration by the same policy a delivery checks (endpoint-url.ts): its shape,
 *   then every address its host resolves to. A bad one is 400 INVALID_WEBHOOK_URL with the reason.
 * - Another tenant's endpoint is 404, like a missing one: ids are never probed across tenants.
 * - A tenant has at most MAX_ENDPOINTS_PER_TENANT endpoints, which bounds the deliveries one event fans
 *   out to.
 */
import { randomBytes } from 'node:crypto';
import { AppError, ValidationError } from '../errors';
import { isWebhookEventType, WEBHOOK_EVENT_TYPES, type WebhookEventType } from './events';
import { parseWebhookUrl, resolveWebhookTarget, type HostResolver, type UrlPolicy } from './endpoint-url';
import type { WebhookEndpointStore } from './ports';
import { ROTATION_GRACE_MS, type EndpointSecrets } from './signature';

export const MAX_ENDPOINTS_PER_TENANT = 16;

const endpointNotFound = () => new AppError('WEBHOOK_ENDPOINT_NOT_FOUND', 'Webhook endpoint not found', 404);

export interface WebhookEndpoint extends EndpointSecrets {
  readonly id: string;
  readonly tenantId: string;
  readonly url: string;
  /** The event types delivered here (all of them when registered without a list). */
  readonly events: readonly WebhookEventType[];
  readonly createdAt: string;
}

/** An endpoint as the API shows it after its creation: never with a secret. */
export const endpointView = (e: WebhookEndpoint) => ({ id: e.id, url: e.url, events: [...e.events], createdAt: e.createdAt });

/** The answer to a create or a rotation: the only two that carry the secret. */
export const endpointWithSecretView = (e: WebhookEndpoint) => ({ ...endpointView(e), secret: e.secret });

export const newWebhookSecret = (): string => `whsec_${randomBytes(32).toString('base64url')}`;
export const newEndpointId = (): string => `we_${randomBytes(16).toString('hex')}`;

export interface EndpointRequest {
  readonly url: URL;
  readonly events: readonly WebhookEventType[];
}

/**
 * Checks a create body's shape (no DNS yet): url, and events if given (non-empty, known types). Other
 * fields are ignored, as on every create: a `secret` sent along never becomes the endpoint's secret.
 */
export function parseEndpointRequest(body: Record<string, unknown>, policy: UrlPolicy): EndpointRequest {
  const url = parseWebhookUrl(body.url, policy);
  if (body.events === undefined) return { url, events: [...WEBHOOK_EVENT_TYPES] };
  const invalid = (message: string) => new ValidationError([{ field: 'events', code: 'INVALID_EVENT_TYPE', message }]);
  if (!Array.isArray(body.events) || body.events.length === 0) throw invalid('events must be a non-empty array of event types');
  const bad = body.events.find((t) => !isWebhookEventType(t));
  if (bad !== undefined) throw invalid(`events: ${JSON.stringify(bad)} is not one of ${WEBHOOK_EVENT_TYPES.join(', ')}`);
  return { url, events: [...new Set(body.events as WebhookEventType[])] };
}

export interface WebhookEndpointsDeps {
  readonly store: WebhookEndpointStore;
  readonly resolve: HostResolver;
  readonly urlPolicy: UrlPolicy;
  readonly now: () => Date;
}

export class WebhookEndpoints {
  constructor(private readonly deps: WebhookEndpointsDeps) {}

  async create(tenantId: string, body: Record<string, unknown>): Promise<WebhookEndpoint> {
    const request = parseEndpointRequest(body, this.deps.urlPolicy);
    await resolveWebhookTarget(request.url, this.deps.urlPolicy, this.deps.resolve);
    // Checked before the write, so two racing creates may pass it together: the limit bounds fan-out
    // within a few endpoints, which is all it is for.
    if ((await this.deps.store.list(tenantId)).length >= MAX_ENDPOINTS_PER_TENANT) {
      throw new AppError('TOO_MANY_WEBHOOK_ENDPOINTS', `A tenant may register at most ${MAX_ENDPOINTS_PER_TENANT} webhook endpoints; delete one first`, 409);
    }
    const endpoint: WebhookEndpoint = {
      id: newEndpointId(),
      tenantId,
      url: request.url.href,
      events: request.events,
      secret: newWebhookSecret(),
      createdAt: this.deps.now().toISOString(),
    };
    await this.deps.store.create(endpoint);
    return endpoint;
  }

  list(tenantId: string): Promise<WebhookEndpoint[]> {
    return this.deps.store.list(tenantId);
  }

  async remove(tenantId: string, endpointId: string): Promise<void> {
    if (!(await this.deps.store.remove(tenantId, endpointId))) throw endpointNotFound();
  }

  /** A new secret; the one it replaces keeps signing for ROTATION_GRACE_MS (a rotation within it drops the older one). */
  async rotateSecret(tenantId: string, endpointId: string): Promise<WebhookEndpoint> {
    const rotated = await this.deps.store.rotate(tenantId, endpointId, {
      secret: newWebhookSecret(),
      previousSecretExpiresAt: this.deps.now().getTime() + ROTATION_GRACE_MS,
    });
    if (!rotated) throw endpointNotFound();
    return rotated;
  }
}
