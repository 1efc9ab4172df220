import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { AppError, DEFAULT_RETRY_AFTER_SECONDS } from '../core/errors';
import { instrumented } from './instrument';
import { logger } from './logger';

export const MAX_BODY_BYTES = 16 * 1024;

export interface ApiRequest {
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
    body: JSON.stringify(res.body),
  };
}

function decodePath(params: Record<string, string | undefined> | null): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(params ?? {})) {
    if (v === undefined) continue;
    try {
      out[k] = decodeURIComponent(v);
    } catch {
      out[k] = v;
    }
  }
  return out;
}

/**
 * Adapts an API Gateway proxy event to a use case call and maps every error to the one error shape.
 * No input reaches the client as a 500 with internals, and none crashes the function into a 502.
 */
export function apiHandler(route: (req: ApiRequest) => Promise<ApiResponse>) {
  return instrumented(async (event: APIGatewayProxyEvent, context?: Context): Promise<APIGatewayProxyResult> => {
    const requestId = event.requestContext?.requestId ?? context?.awsRequestId ?? 'unknown';
    logger.appendKeys({ requestId });
    try {
      const tenantId = event.requestContext?.identity?.apiKeyId;
      if (!tenantId) throw new AppError('FORBIDDEN', 'A valid API key is required', 403);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(event.headers ?? {})) if (v !== undefined) headers[k.toLowerCase()] = v;
      const body = event.body == null ? undefined : event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body;
      if (body !== undefined && Buffer.byteLength(body, 'utf8') > MAX_BODY_BYTES) {
        throw new AppError('PAYLOAD_TOO_LARGE', `Request body must be at most ${MAX_BODY_BYTES} bytes`, 413);
      }
      const query: Record<string, string> = {};
      for (const [k, v] of Object.entries(event.queryStringParameters ?? {})) if (v !== undefined) query[k] = v;
      logger.appendKeys({ tenantId });
      const res = await route({
        tenantId,
        requestId,
        method: event.httpMethod,
        resource: event.resource,
        headers,
        pathParameters: decodePath(event.pathParameters),
        query,
        body,
      });
      return render(res, requestId);
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
      logger.removeKeys(['requestId', 'tenantId']);
    }
  });
}

/** Parses a JSON object body, or fails with INVALID_JSON. */
export function parseJsonObject(body: string | undefined): Record<string, unknown> {
  if (body === undefined || body.trim() === '') {
    throw new AppError('INVALID_JSON', 'Request body must be a JSON object', 400);
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
