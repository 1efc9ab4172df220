/**
 * API Gateway's own error responses (no route, bad API key, too large, timeout, failed integration),
 * shaped by the template's AWS::ApiGateway::GatewayResponse resources.
 */
import type { RestApiModel } from './api-model';
import { formatRequestTime } from './api-proxy-integration';

/** API Gateway's own errors: default status, message and x-amzn-ErrorType. */
export const GATEWAY_ERRORS: Record<string, { status: number; message: string; errorType: string }> = {
  MISSING_AUTHENTICATION_TOKEN: { status: 403, message: 'Missing Authentication Token', errorType: 'MissingAuthenticationTokenException' },
  INVALID_API_KEY: { status: 403, message: 'Forbidden', errorType: 'ForbiddenException' },
  ACCESS_DENIED: { status: 403, message: 'Forbidden', errorType: 'AccessDeniedException' },
  REQUEST_TOO_LARGE: { status: 413, message: 'Request Too Long', errorType: 'RequestTooLargeException' },
  THROTTLED: { status: 429, message: 'Too Many Requests', errorType: 'TooManyRequestsException' },
  INTEGRATION_TIMEOUT: { status: 504, message: 'Endpoint request timed out', errorType: 'InternalServerErrorException' },
  INTEGRATION_FAILURE: { status: 504, message: 'Internal server error', errorType: 'InternalServerErrorException' },
  // A failed or malformed Lambda proxy response has no type of its own: it is a DEFAULT_5XX.
  DEFAULT_5XX: { status: 502, message: 'Internal server error', errorType: 'InternalServerErrorException' },
  DEFAULT_4XX: { status: 400, message: 'Bad Request', errorType: 'BadRequestException' },
};

export interface GatewayContext {
  readonly requestId: string;
  readonly extendedRequestId: string;
  readonly stage: string;
  readonly apiId: string;
  readonly httpMethod?: string;
  readonly resourcePath?: string;
  readonly path?: string;
  readonly sourceIp?: string;
  readonly requestHeaders?: Record<string, string>;
}

export interface HttpResponseData {
  readonly status: number;
  /** Header name → values. */
  readonly headers: Record<string, string[]>;
  readonly body: Buffer;
}

/**
 * The response API Gateway sends for a gateway error of `type`: the template's GatewayResponse for the
 * type, else its DEFAULT_4XX / DEFAULT_5XX, else API Gateway's built-in `{"message": ...}`.
 */
export function gatewayResponse(model: Pick<RestApiModel, 'gatewayResponses'>, type: string, ctx: GatewayContext): HttpResponseData {
  const builtin = GATEWAY_ERRORS[type] ?? GATEWAY_ERRORS.DEFAULT_4XX!;
  const family = builtin.status >= 500 ? 'DEFAULT_5XX' : 'DEFAULT_4XX';
  const def = model.gatewayResponses.get(type) ?? model.gatewayResponses.get(family);
  const status = def?.statusCode ?? builtin.status;
  const [contentType, template] = Object.entries(def?.templates ?? {})[0] ?? ['application/json', '{"message":$context.error.messageString}'];
  const vars: Record<string, string> = {
    'error.message': builtin.message,
    'error.messageString': JSON.stringify(builtin.message),
    'error.responseType': type,
    'error.validationErrorString': '',
    requestId: ctx.requestId,
    requestTime: formatRequestTime(Date.now()),
    requestTimeEpoch: String(Date.now()),
    extendedRequestId: ctx.extendedRequestId,
    stage: ctx.stage,
    apiId: ctx.apiId,
    httpMethod: ctx.httpMethod ?? '',
    resourcePath: ctx.resourcePath ?? '',
    path: ctx.path ?? '',
    'identity.sourceIp': ctx.sourceIp ?? '',
    accountId: '000000000000',
  };
  // $context.a.b and ${context.a.b}, as in VTL.
  const body = template.replace(/\$\{context\.([\w.]+)\}|\$context\.(\w+(?:\.\w+)*)/g, (_, braced, bare) => vars[braced ?? bare] ?? '');
  const headers: Record<string, string[]> = {
    'Content-Type': [contentType],
    'x-amzn-RequestId': [ctx.requestId],
    'x-amzn-ErrorType': [builtin.errorType],
    'x-amz-apigw-id': [ctx.extendedRequestId],
  };
  // Header mappings: a 'literal', a request header, or a context variable (context.requestId).
  for (const [key, value] of Object.entries(def?.parameters ?? {})) {
    const name = /^gatewayresponse\.header\.(.+)$/.exec(key)?.[1];
    if (!name) continue;
    const literal = /^'(.*)'$/.exec(value);
    const fromHeader = /^method\.request\.header\.(.+)$/.exec(value);
    const fromContext = /^context\.(.+)$/.exec(value);
    const v = literal
      ? literal[1]!
      : fromHeader
        ? lowerKeys(ctx.requestHeaders ?? {})[fromHeader[1]!.toLowerCase()]
        : fromContext && Object.hasOwn(vars, fromContext[1]!)
          ? vars[fromContext[1]!]
          : undefined;
    if (v !== undefined) headers[name] = [v];
  }
  return { status, headers, body: Buffer.from(body) };
}

function lowerKeys(h: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
}
