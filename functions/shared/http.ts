import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import type { IdempotentRunner } from '../adapters/dynamo/operator-idempotency';
import { validateIdempotencyKey } from '../core/create-request';
import { AppError, DEFAULT_RETRY_AFTER_SECONDS, ValidationError } from '../core/errors';
import { actorOf, ForbiddenError, type Principal, type PrincipalDirectory } from '../core/principal';
import { wiring } from '../wiring';
import { MAX_BODY_BYTES } from './config-contract';
import { instrumented } from './instrument';
import { logger } from './logger';

export { MAX_BODY_BYTES };

export interface ApiRequest {
  /** The caller: a tenant, or (on routes that allow it) an operator. */
  readonly principal: Principal;
  /** The calling tenant's id; empty for an operator. */
  readonly tenantId: string;
  readonly requestId: string;
  readonly method: string;
  readonly resource: string;
  /** Header names in lower case. */
  readonly headers: Record<string, string>;
  readonly pathParameters: Record<string, string>;
  readonly query: Record<string, string>;
  /** Raw body text (base64 decoded). */
  readonly body: string | undefined;
}

export interface ApiResponse {
  readonly statusCode: number;
  readonly body: unknown;
  readonly headers?: Record<string, string>;
}

export function json(statusCode: number, body: unknown, headers?: Record<string, string>): ApiResponse {
  return { statusCode, body, headers };
}

function errorBody(err: AppError, requestId: string) {
  return {
    error: {
      code: err.code,
      message: err.message,
      ...(err.details !== undefined ? { details: err.details } : {}),
      retryable: err.retryable,
      timestamp: new Date().toISOString(),
      requestId,
    },
  };
}

/** Every retryable error tells the client when to come back; a non-retryable one never invites a retry. */
function retryAfter(err: AppError): Record<string, string> | undefined {
  return err.retryable ? { 'Retry-After': String(err.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS) } : undefined;
}

function render(res: ApiResponse, requestId: string): APIGatewayProxyResult {
  return {
    statusCode: res.statusCode,
    headers: { 'content-type': 'application/json', 'x-request-id': requestId, ...res.headers },
    // A 204 has no body.
    body: res.body === undefined ? '' : JSON.stringify(res.body),
  };
}

/**
 * The caller behind an API key id. With a directory (always, in a deployed stack: the principals table)
 * an unknown or revoked key is refused. Without one (handler tests only) the key id is taken as the
 * tenant id and nobody is an operator.
 */
export async function principalOf(apiKeyId: string | null | undefined, principals: PrincipalDirectory | undefined): Promise<Principal> {
  if (!apiKeyId) throw new AppError('FORBIDDEN', 'A valid API key is required', 403);
  if (!principals) return { kind: 'tenant', tenantId: apiKeyId };
  const p = await principals.resolve(apiKeyId);
  if (!p) throw new AppError('FORBIDDEN', 'A valid API key is required', 403);
  return p;
}

export interface ApiHandlerOptions {
  /** Who may call the route: tenants (the default), operators only, or both. */
  readonly access?: 'tenant' | 'operator' | 'any';
  /**
   * An action route: a request with an Idempotency-Key header runs at most once per caller, route,
   * target and key; repeats get its response.
   */
  readonly idempotentAction?: boolean;
  /** Defaults to this function instance's wiring. */
  readonly identity?: () => { readonly principals: PrincipalDirectory | undefined; readonly idempotent?: IdempotentRunner };
}

const defaultIdentity = () => ({
  principals: wiring().principals(),
  // Built only for the operator routes that use it.
  get idempotent() {
    return wiring().operatorIdempotency();
  },
});

/**
 * Adapts an API Gateway proxy event to a use case call and maps every error to the one error shape.
 * No input reaches the client as a 500 with internals, and none crashes the function into a 502.
 *
 * Path parameters are used as API Gateway passes them: it has already percent-decoded them once.
 */
export function apiHandler(route: (req: ApiRequest) => Promise<ApiResponse>, options: ApiHandlerOptions = {}) {
  const access = options.access ?? 'tenant';
  const identity = options.identity ?? defaultIdentity;
  return answered(async (event, requestId, context) => {
    const ids = identity();
    const principal = await principalOf(event.requestContext?.identity?.apiKeyId, ids.principals);
    if (access === 'operator' && principal.kind !== 'operator') throw new ForbiddenError('OPERATOR_ONLY', 'This route needs an operator API key');
    if (access === 'tenant' && principal.kind !== 'tenant') throw new ForbiddenError('TENANT_ONLY', 'This route is for tenant API keys');
    const tenantId = principal.kind === 'tenant' ? principal.tenantId : '';
    const { rawBody, ...common } = requestOf(event, requestId);
    const body = rawBody?.toString('utf8');
    logger.appendKeys(principal.kind === 'tenant' ? { tenantId } : { operator: principal.name });
    const req: ApiRequest = { ...common, principal, tenantId, body };
    // The key is read by the create and action routes, all POSTs; reads ignore it.
    const headerKey = event.httpMethod === 'POST' ? singleIdempotencyKeyHeader(event) : undefined;
    if (options.idempotentAction && headerKey !== undefined) {
      const idempotent = ids.idempotent;
      if (!idempotent) throw new AppError('SERVICE_UNAVAILABLE', 'Idempotent actions are not configured', 503, true);
      const key = validateIdempotencyKey(headerKey, 'Idempotency-Key');
      if (typeof key !== 'string') throw new ValidationError([key]);
      return idempotent(
        { actor: actorOf(principal), route: `${req.method} ${req.resource}`, target: Object.values(req.pathParameters).join('/'), idempotencyKey: key, body: body ?? '' },
        () => route(req),
        context,
      );
    }
    return route(req);
  });
}

/** A request to a route without an API key (provider webhooks): no caller identity, the body as received. */
export interface PublicRequest extends Omit<ApiRequest, 'principal' | 'tenantId' | 'body'> {
  /** The body's exact bytes (base64-decoded when API Gateway encoded it): what a signature is over. */
  readonly rawBody: Buffer | undefined;
}

/**
 * A route that API Gateway serves without an API key: it must authenticate its caller itself (a
 * provider webhook checks the provider's signature). Same error shape and body limit as every route.
 */
export function publicApiHandler(route: (req: PublicRequest) => Promise<ApiResponse>) {
  return answered((event, requestId) => route(requestOf(event, requestId)));
}

/** The parts of a proxy event every route reads; the body over MAX_BODY_BYTES is refused here. */
function requestOf(event: APIGatewayProxyEvent, requestId: string): PublicRequest {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(event.headers ?? {})) if (v !== undefined) headers[k.toLowerCase()] = v;
  const rawBody = event.body == null ? undefined : Buffer.from(event.body, event.isBase64Encoded ? 'base64' : 'utf8');
  if (rawBody !== undefined && rawBody.length > MAX_BODY_BYTES) {
    throw new AppError('PAYLOAD_TOO_LARGE', `Request body must be at most ${MAX_BODY_BYTES} bytes`, 413);
  }
  const query: Record<string, string> = {};
  for (const [k, v] of Object.entries(event.queryStringParameters ?? {})) if (v !== undefined) query[k] = v;
  const pathParameters: Record<string, string> = {};
  for (const [k, v] of Object.entries(event.pathParameters ?? {})) if (v !== undefined) pathParameters[k] = v;
  return { requestId, method: event.httpMethod, resource: event.resource, headers, pathParameters, query, rawBody };
}

/**
 * Runs a route and maps every error to the one error shape. No input reaches the client as a 500 with
 * internals, and none crashes the function into a 502.
 */
function answered(run: (event: APIGatewayProxyEvent, requestId: string, context?: Context) => Promise<ApiResponse>) {
  return instrumented(async (event: APIGatewayProxyEvent, context?: Context): Promise<APIGatewayProxyResult> => {
    const requestId = event.requestContext?.requestId ?? context?.awsRequestId ?? 'unknown';
    logger.appendKeys({ requestId });
    try {
      return render(await run(event, requestId, context), requestId);
    } catch (err) {
      if (err instanceof AppError) {
        if (err.httpStatus >= 500) logger.error('request failed', { code: err.code, error: err });
        else logger.info('request rejected', { code: err.code, status: err.httpStatus });
        return render(json(err.httpStatus, errorBody(err, requestId), retryAfter(err)), requestId);
      }
      logger.error('unhandled error', { error: err as Error });
      const internal = new AppError('INTERNAL_ERROR', 'An internal error occurred; retry with the same idempotency key', 500, true);
      return render(json(500, errorBody(internal, requestId), retryAfter(internal)), requestId);
    } finally {
      logger.removeKeys(['requestId', 'tenantId', 'operator']);
    }
  });
}

/**
 * The Idempotency-Key header's one value, or undefined. Sent twice it is refused, not picked: API
 * Gateway passes every line in multiValueHeaders (its `headers` keeps only the last), and which key a
 * client meant cannot be known.
 */
function singleIdempotencyKeyHeader(event: APIGatewayProxyEvent): string | undefined {
  const values: string[] = [];
  for (const [name, v] of Object.entries(event.multiValueHeaders ?? {})) if (name.toLowerCase() === 'idempotency-key' && v) values.push(...v);
  if (values.length === 0) for (const [name, v] of Object.entries(event.headers ?? {})) if (name.toLowerCase() === 'idempotency-key' && v !== undefined) values.push(v);
  if (values.length > 1) {
    throw new ValidationError([{ field: 'Idempotency-Key', code: 'INVALID_IDEMPOTENCY_KEY', message: 'Send one Idempotency-Key header, not several' }]);
  }
  return values[0];
}

/** `application/json`, with no charset or charset utf-8 (JSON is UTF-8: RFC 8259). */
export function isJsonContentType(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const [type, ...params] = contentType.split(';').map((s) => s.trim().toLowerCase());
  if (type !== 'application/json') return false;
  return params.every((p) => !p.startsWith('charset=') || p.replace(/^charset=/, '').replace(/^"(.*)"$/, '$1') === 'utf-8');
}

/**
 * Parses a JSON object body: 415 UNSUPPORTED_MEDIA_TYPE unless it is sent as application/json, then
 * INVALID_JSON unless it is a JSON object.
 */
export function parseJsonObject(req: Pick<ApiRequest, 'body' | 'headers'>): Record<string, unknown> {
  const body = req.body;
  if (body === undefined || body.trim() === '') {
    throw new AppError('INVALID_JSON', 'Request body must be a JSON object', 400);
  }
  if (!isJsonContentType(req.headers['content-type'])) {
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'Send the body as JSON, with content-type: application/json', 415);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new AppError('INVALID_JSON', 'Request body is not valid JSON', 400);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new AppError('INVALID_JSON', 'Request body must be a JSON object', 400);
  }
  return parsed as Record<string, unknown>;
}
