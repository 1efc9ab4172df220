/**
 * The Lambda proxy integration (payload format 1.0): the event API Gateway sends for a matched request,
 * and the HTTP response it makes of the function's result.
 */
import type { APIGatewayProxyEvent } from 'aws-lambda';
import type { HttpResponseData } from './api-gateway-responses';
import type { RestApiModel } from './api-model';
import type { ResourceMatch } from './api-route-matcher';

export interface IncomingRequest {
  readonly method: string;
  /** Path as sent, percent-encoded, without the query string and without the stage prefix. */
  readonly path: string;
  /** Query string without the `?`. */
  readonly query: string;
  /** Alternating names and values, as node's IncomingMessage.rawHeaders. */
  readonly rawHeaders: readonly string[];
  readonly body: Buffer;
  readonly sourceIp: string;
}

export interface ProxyEventContext {
  readonly requestId: string;
  readonly extendedRequestId: string;
  readonly apiKey?: string;
  readonly apiKeyId?: string;
  readonly requestTimeEpoch?: number;
}

/** The Lambda proxy integration event (payload format 1.0) API Gateway sends for a matched request. */
export function buildProxyEvent(model: RestApiModel, match: ResourceMatch, req: IncomingRequest, ctx: ProxyEventContext): APIGatewayProxyEvent {
  const headers: Record<string, string> = {};
  const multiValueHeaders: Record<string, string[]> = {};
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!;
    const value = req.rawHeaders[i + 1]!;
    headers[name] = value;
    (multiValueHeaders[name] ??= []).push(value);
  }
  const setHeader = (name: string, value: string) => {
    if (Object.keys(headers).some((k) => k.toLowerCase() === name.toLowerCase())) return;
    headers[name] = value;
    multiValueHeaders[name] = [value];
  };
  setHeader('X-Forwarded-For', req.sourceIp);
  setHeader('X-Forwarded-Proto', 'http');

  let queryStringParameters: Record<string, string> | null = null;
  let multiValueQueryStringParameters: Record<string, string[]> | null = null;
  if (req.query) {
    queryStringParameters = {};
    multiValueQueryStringParameters = {};
    for (const [k, v] of new URLSearchParams(req.query)) {
      queryStringParameters[k] = v;
      (multiValueQueryStringParameters[k] ??= []).push(v);
    }
  }

  const contentType = Object.entries(headers).find(([k]) => k.toLowerCase() === 'content-type')?.[1] ?? '';
  const binary = req.body.length > 0 && isBinaryType(model.binaryMediaTypes, contentType);
  const body = req.body.length === 0 ? null : binary ? req.body.toString('base64') : req.body.toString('utf8');
  const epoch = ctx.requestTimeEpoch ?? Date.now();
  const host = Object.entries(headers).find(([k]) => k.toLowerCase() === 'host')?.[1] ?? '127.0.0.1';
  const userAgent = Object.entries(headers).find(([k]) => k.toLowerCase() === 'user-agent')?.[1] ?? null;
  const decodedPath = safeDecode(req.path) || '/';
  const pathParameters = Object.keys(match.pathParameters).length ? match.pathParameters : null;

  return {
    resource: match.node.path,
    path: decodedPath,
    httpMethod: req.method,
    headers,
    multiValueHeaders,
    queryStringParameters,
    multiValueQueryStringParameters,
    pathParameters,
    stageVariables: null,
    body,
    isBase64Encoded: binary,
    requestContext: {
      accountId: '000000000000',
      apiId: model.apiId,
      authorizer: null as any,
      domainName: host,
      domainPrefix: host.split('.')[0]!,
      extendedRequestId: ctx.extendedRequestId,
      httpMethod: req.method,
      identity: {
        accessKey: null,
        accountId: null,
        apiKey: ctx.apiKey ?? null,
        apiKeyId: ctx.apiKeyId ?? null,
        caller: null,
        clientCert: null,
        cognitoAuthenticationProvider: null,
        cognitoAuthenticationType: null,
        cognitoIdentityId: null,
        cognitoIdentityPoolId: null,
        principalOrgId: null,
        sourceIp: req.sourceIp,
        user: null,
        userAgent,
        userArn: null,
      },
      path: `/${model.stageName}${decodedPath === '/' ? '/' : decodedPath}`,
      protocol: 'HTTP/1.1',
      requestId: ctx.requestId,
      requestTime: formatRequestTime(epoch),
      requestTimeEpoch: epoch,
      resourceId: match.node.logicalId,
      resourcePath: match.node.path,
      stage: model.stageName,
    },
  };
}

export function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function isBinaryType(binaryTypes: readonly string[], contentType: string): boolean {
  const ct = contentType.split(';')[0]!.trim().toLowerCase();
  return binaryTypes.some((t) => {
    const pattern = t.toLowerCase();
    if (pattern === '*/*') return true;
    if (pattern.endsWith('/*')) return ct.startsWith(pattern.slice(0, -1));
    return ct === pattern;
  });
}

/** `25/Nov/2026:06:29:11 +0000`, as in requestContext.requestTime. */
export function formatRequestTime(epoch: number): string {
  const d = new Date(epoch);
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number) => String(n).padStart(2, '0');
  return `${p(d.getUTCDate())}/${months[d.getUTCMonth()]}/${d.getUTCFullYear()}:${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

const PROXY_RESULT_KEYS = new Set(['statusCode', 'headers', 'multiValueHeaders', 'body', 'isBase64Encoded']);

/**
 * Turns a Lambda proxy result (JSON text) into the HTTP response, or explains why API Gateway would call
 * it a "Malformed Lambda proxy response".
 */
export function proxyResultToResponse(payload: string): HttpResponseData | { malformed: string } {
  let result: unknown;
  try {
    result = JSON.parse(payload);
  } catch {
    return { malformed: 'the result is not JSON' };
  }
  if (!result || typeof result !== 'object' || Array.isArray(result)) return { malformed: `the result is ${JSON.stringify(result)}, not an object` };
  const r = result as Record<string, unknown>;
  const extra = Object.keys(r).filter((k) => !PROXY_RESULT_KEYS.has(k));
  if (extra.length) return { malformed: `unexpected field(s) ${extra.join(', ')}` };
  const status = typeof r.statusCode === 'string' && /^\d+$/.test(r.statusCode) ? Number(r.statusCode) : r.statusCode;
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 100 || status > 599) return { malformed: `statusCode ${JSON.stringify(r.statusCode)} is not an HTTP status` };
  if (r.body !== undefined && r.body !== null && typeof r.body !== 'string') return { malformed: `body is ${typeof r.body}, not a string` };
  if (r.isBase64Encoded !== undefined && r.isBase64Encoded !== null && typeof r.isBase64Encoded !== 'boolean') return { malformed: 'isBase64Encoded is not a boolean' };
  const scalar = (v: unknown) => typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
  if (r.headers !== undefined && r.headers !== null) {
    if (typeof r.headers !== 'object' || Array.isArray(r.headers) || !Object.values(r.headers).every(scalar)) return { malformed: 'headers must map names to strings' };
  }
  if (r.multiValueHeaders !== undefined && r.multiValueHeaders !== null) {
    const mv = r.multiValueHeaders;
    if (typeof mv !== 'object' || Array.isArray(mv) || !Object.values(mv).every((v) => Array.isArray(v) && v.every(scalar))) {
      return { malformed: 'multiValueHeaders must map names to arrays of strings' };
    }
  }
  // Both maps are merged; for a name in both, multiValueHeaders wins.
  const headers: Record<string, string[]> = {};
  const lowerSeen = new Set<string>();
  for (const [k, v] of Object.entries((r.multiValueHeaders ?? {}) as Record<string, unknown[]>)) {
    headers[k] = v.map(String);
    lowerSeen.add(k.toLowerCase());
  }
  for (const [k, v] of Object.entries((r.headers ?? {}) as Record<string, unknown>)) {
    if (!lowerSeen.has(k.toLowerCase())) headers[k] = [String(v)];
  }
  if (!Object.keys(headers).some((k) => k.toLowerCase() === 'content-type')) headers['Content-Type'] = ['application/json'];
  const text = typeof r.body === 'string' ? r.body : '';
  const body = r.isBase64Encoded === true ? Buffer.from(text, 'base64') : Buffer.from(text, 'utf8');
  return { status, headers, body };
}
