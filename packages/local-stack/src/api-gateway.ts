/**
 * API Gateway (REST API) emulation built from the template: the resource tree of
 * AWS::ApiGateway::Resource, the AWS::ApiGateway::Method of each resource, API key checks, Lambda proxy
 * integration events (payload format 1.0), and gateway errors shaped by the template's
 * AWS::ApiGateway::GatewayResponse resources.
 */
import { createHash, randomUUID } from 'node:crypto';
import * as http from 'node:http';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import type { FunctionRegistry } from './function-runtime';
import { resourcesOfType, type CfnTemplate } from './template';
import { errorMessage, listenOnLoopback, functionIdOf, referencedId, shortId, type LogFn } from './util';

// ---- Model ----------------------------------------------------------------------------------------

export interface ApiMethod {
  readonly logicalId: string;
  readonly httpMethod: string;
  readonly apiKeyRequired: boolean;
  readonly authorizationType: string;
  readonly integrationType: string;
  /** Target of an AWS_PROXY / AWS Lambda integration. */
  readonly functionId?: string;
  readonly integration: Record<string, any>;
}

export interface ApiResourceNode {
  /** Logical id of the AWS::ApiGateway::Resource; the RestApi's id for the root. */
  readonly logicalId: string;
  readonly pathPart: string;
  /** Resource path as API Gateway reports it: `/api/payments/{paymentID}`. */
  readonly path: string;
  readonly children: ApiResourceNode[];
  readonly methods: Map<string, ApiMethod>;
}

export interface GatewayResponseDef {
  readonly type: string;
  readonly statusCode?: number;
  readonly templates: Record<string, string>;
  readonly parameters: Record<string, string>;
}

export interface RestApiModel {
  readonly logicalId: string;
  /** Ten-character id like a real API id, derived from the logical id. */
  readonly apiId: string;
  readonly name: string;
  readonly stageName: string;
  readonly root: ApiResourceNode;
  readonly gatewayResponses: Map<string, GatewayResponseDef>;
  readonly binaryMediaTypes: string[];
}

export interface RouteInfo {
  readonly method: string;
  readonly path: string;
  readonly functionId?: string;
  readonly apiKeyRequired: boolean;
  readonly integrationType: string;
}

/** Builds the REST API model of `restApiId` (default: the template's only AWS::ApiGateway::RestApi). */
export function buildRestApi(template: CfnTemplate, restApiId?: string): RestApiModel | undefined {
  const apis = resourcesOfType(template, 'AWS::ApiGateway::RestApi');
  if (apis.length === 0) return undefined;
  const [apiLogicalId, api] = restApiId ? apis.find(([id]) => id === restApiId) ?? [] : apis[0]!;
  if (!apiLogicalId || !api) throw new Error(`No AWS::ApiGateway::RestApi ${restApiId}`);
  const belongs = (props: Record<string, any> | undefined) => referencedId(props?.RestApiId) === apiLogicalId;

  const root: ApiResourceNode = { logicalId: apiLogicalId, pathPart: '', path: '/', children: [], methods: new Map() };
  const nodes = new Map<string, ApiResourceNode>([[apiLogicalId, root]]);
  const resources = resourcesOfType(template, 'AWS::ApiGateway::Resource').filter(([, r]) => belongs(r.Properties));
  // Parents before children, whatever the template order.
  let pending = resources;
  while (pending.length) {
    const next = pending.filter(([id, r]) => {
      const parentRef = r.Properties?.ParentId;
      const parentId = referencedId(parentRef);
      const parent = parentId ? nodes.get(parentId) : undefined;
      if (!parent) return true;
      const pathPart = String(r.Properties?.PathPart);
      const node: ApiResourceNode = {
        logicalId: id,
        pathPart,
        path: parent.path === '/' ? `/${pathPart}` : `${parent.path}/${pathPart}`,
        children: [],
        methods: new Map(),
      };
      parent.children.push(node);
      nodes.set(id, node);
      return false;
    });
    if (next.length === pending.length) throw new Error(`API resources with unknown parents: ${next.map(([id]) => id).join(', ')}`);
    pending = next;
  }

  for (const [id, r] of resourcesOfType(template, 'AWS::ApiGateway::Method')) {
    const p = r.Properties ?? {};
    if (!belongs(p)) continue;
    const node = nodes.get(referencedId(p.ResourceId) ?? '');
    if (!node) continue;
    const integration = (p.Integration ?? {}) as Record<string, any>;
    node.methods.set(String(p.HttpMethod).toUpperCase(), {
      logicalId: id,
      httpMethod: String(p.HttpMethod).toUpperCase(),
      apiKeyRequired: p.ApiKeyRequired === true || p.ApiKeyRequired === 'true',
      authorizationType: String(p.AuthorizationType ?? 'NONE'),
      integrationType: String(integration.Type ?? 'MOCK'),
      functionId: functionIdOf(template, integration.Uri),
      integration,
    });
  }

  const gatewayResponses = new Map<string, GatewayResponseDef>();
  for (const [, r] of resourcesOfType(template, 'AWS::ApiGateway::GatewayResponse')) {
    const p = r.Properties ?? {};
    if (!belongs(p)) continue;
    gatewayResponses.set(String(p.ResponseType), {
      type: String(p.ResponseType),
      statusCode: p.StatusCode !== undefined ? Number(p.StatusCode) : undefined,
      templates: p.ResponseTemplates ?? {},
      parameters: p.ResponseParameters ?? {},
    });
  }

  const stage = resourcesOfType(template, 'AWS::ApiGateway::Stage').find(([, r]) => belongs(r.Properties));
  const deployment = resourcesOfType(template, 'AWS::ApiGateway::Deployment').find(([, r]) => belongs(r.Properties));
  const stageName = String(stage?.[1].Properties?.StageName ?? deployment?.[1].Properties?.StageName ?? 'local');

  return {
    logicalId: apiLogicalId,
    apiId: createHash('sha1').update(apiLogicalId).digest('base64url').replace(/[^a-z0-9]/gi, '').toLowerCase().slice(0, 10),
    name: String(api.Properties?.Name ?? apiLogicalId),
    stageName,
    root,
    gatewayResponses,
    binaryMediaTypes: (api.Properties?.BinaryMediaTypes ?? []).map((t: string) => t.replace(/~1/g, '/')),
  };
}

export function listRoutes(model: RestApiModel): RouteInfo[] {
  const out: RouteInfo[] = [];
  const walk = (n: ApiResourceNode) => {
    for (const m of n.methods.values()) {
      out.push({ method: m.httpMethod, path: n.path, functionId: m.functionId, apiKeyRequired: m.apiKeyRequired, integrationType: m.integrationType });
    }
    n.children.forEach(walk);
  };
  walk(model.root);
  return out;
}

const paramName = (pathPart: string) => /^\{(.+?)\+?\}$/.exec(pathPart)?.[1];
const isGreedy = (pathPart: string) => /^\{.+\+\}$/.test(pathPart);
const isParam = (pathPart: string) => /^\{.+\}$/.test(pathPart);

export interface ResourceMatch {
  readonly node: ApiResourceNode;
  readonly pathParameters: Record<string, string>;
}

/**
 * Finds the resource for decoded path segments. At each level a static path part wins over a
 * `{param}` sibling, which wins over a `{proxy+}` sibling; when the static branch has no resource for
 * the rest of the path, the parameter branch is tried.
 */
export function matchResource(root: ApiResourceNode, segments: readonly string[]): ResourceMatch | undefined {
  const walk = (node: ApiResourceNode, i: number, params: Record<string, string>): ResourceMatch | undefined => {
    if (i === segments.length) return { node, pathParameters: params };
    const seg = segments[i]!;
    const staticChild = node.children.find((c) => !isParam(c.pathPart) && c.pathPart === seg);
    if (staticChild) {
      const m = walk(staticChild, i + 1, params);
      if (m) return m;
    }
    const paramChild = node.children.find((c) => isParam(c.pathPart) && !isGreedy(c.pathPart));
    if (paramChild) {
      const m = walk(paramChild, i + 1, { ...params, [paramName(paramChild.pathPart)!]: seg });
      if (m) return m;
    }
    const greedy = node.children.find((c) => isGreedy(c.pathPart));
    if (greedy) return { node: greedy, pathParameters: { ...params, [paramName(greedy.pathPart)!]: segments.slice(i).join('/') } };
    return undefined;
  };
  return walk(root, 0, {});
}

/** The method a resource serves for `httpMethod` (ANY as a fallback). */
export function methodFor(node: ApiResourceNode, httpMethod: string): ApiMethod | undefined {
  return node.methods.get(httpMethod.toUpperCase()) ?? node.methods.get('ANY');
}

// ---- API keys -------------------------------------------------------------------------------------

/** Parses `key:tenant,key2:tenant2` (or takes a map) into key → tenant (the API key id handlers see). */
export function parseApiKeys(spec: string | Record<string, string>): Map<string, string> {
  if (typeof spec !== 'string') return new Map(Object.entries(spec));
  const keys = new Map<string, string>();
  for (const pair of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const at = pair.indexOf(':');
    if (at <= 0 || at === pair.length - 1) throw new Error(`Bad API key "${pair}": expected key:tenant`);
    keys.set(pair.slice(0, at), pair.slice(at + 1));
  }
  return keys;
}

// ---- Gateway responses ----------------------------------------------------------------------------

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
  for (const [key, value] of Object.entries(def?.parameters ?? {})) {
    const name = /^gatewayresponse\.header\.(.+)$/.exec(key)?.[1];
    if (!name) continue;
    const literal = /^'(.*)'$/.exec(value);
    const fromHeader = /^method\.request\.header\.(.+)$/.exec(value);
    const v = literal ? literal[1]! : fromHeader ? lowerKeys(ctx.requestHeaders ?? {})[fromHeader[1]!.toLowerCase()] : undefined;
    if (v !== undefined) headers[name] = [v];
  }
  return { status, headers, body: Buffer.from(body) };
}

function lowerKeys(h: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
}

// ---- Proxy integration ----------------------------------------------------------------------------

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

function safeDecode(s: string): string {
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
function formatRequestTime(epoch: number): string {
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

// ---- Server -------------------------------------------------------------------------------------

export interface ApiGatewayOptions {
  readonly model: RestApiModel;
  readonly registry: FunctionRegistry;
  /** API key → tenant (API key id). */
  readonly apiKeys: Map<string, string>;
  /** 0: a free port. */
  readonly port: number;
  readonly log: LogFn;
  readonly integrationTimeoutMs?: number;
  readonly maxBodyBytes?: number;
}

export interface RunningApiGateway {
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

export const API_INTEGRATION_TIMEOUT_MS = 29_000;
export const API_MAX_BODY_BYTES = 10 * 1024 * 1024;

export async function startApiGateway(opts: ApiGatewayOptions): Promise<RunningApiGateway> {
  const { model, registry, apiKeys, log } = opts;
  const integrationTimeoutMs = opts.integrationTimeoutMs ?? API_INTEGRATION_TIMEOUT_MS;
  const maxBodyBytes = opts.maxBodyBytes ?? API_MAX_BODY_BYTES;
  // A path may start with the stage name, as in the deployed URL (https://.../dev/api/...).
  const stagePrefixAllowed = !model.root.children.some((c) => c.pathPart === model.stageName);

  const send = (res: http.ServerResponse, r: HttpResponseData, extraHeaders: Record<string, string[]> = {}) => {
    if (res.headersSent) return;
    const headers: Record<string, string[]> = { ...r.headers, ...extraHeaders };
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v.length === 1 ? v[0]! : v);
    res.statusCode = r.status;
    res.end(r.body);
  };

  const server = http.createServer(async (req, res) => {
    const started = Date.now();
    const requestId = randomUUID();
    const extendedRequestId = randomUUID().replace(/-/g, '').slice(0, 16);
    const url = new URL(req.url ?? '/', 'http://local');
    const method = (req.method ?? 'GET').toUpperCase();
    const sourceIp = (req.socket.remoteAddress ?? '127.0.0.1').replace(/^::ffff:/, '');
    let rawSegments = url.pathname.split('/').filter(Boolean);
    if (stagePrefixAllowed && rawSegments[0] === model.stageName) rawSegments = rawSegments.slice(1);
    const rawPath = `/${rawSegments.join('/')}`;
    const requestHeaders: Record<string, string> = {};
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) requestHeaders[req.rawHeaders[i]!] = req.rawHeaders[i + 1]!;
    const ctx: GatewayContext = { requestId, extendedRequestId, stage: model.stageName, apiId: model.apiId, httpMethod: method, path: rawPath, sourceIp, requestHeaders };
    let outcomeNote = '';
    const finish = (r: HttpResponseData) => {
      send(res, r);
      log(`${method} ${url.pathname}${url.search} → ${r.status}${outcomeNote} ${Date.now() - started} ms`);
    };

    try {
      const body = await readBody(req, maxBodyBytes);
      if (body === 'too-large') {
        res.setHeader('Connection', 'close');
        return finish(gatewayResponse(model, 'REQUEST_TOO_LARGE', ctx));
      }
      const match = matchResource(model.root, rawSegments.map(safeDecode));
      const apiMethod = match ? methodFor(match.node, method) : undefined;
      if (!match || !apiMethod) return finish(gatewayResponse(model, 'MISSING_AUTHENTICATION_TOKEN', ctx));
      const routeCtx = { ...ctx, resourcePath: match.node.path };

      let apiKey: string | undefined;
      let apiKeyId: string | undefined;
      if (apiMethod.apiKeyRequired) {
        const key = Object.entries(requestHeaders).find(([k]) => k.toLowerCase() === 'x-api-key')?.[1];
        const tenant = key !== undefined ? apiKeys.get(key) : undefined;
        if (key === undefined || tenant === undefined) return finish(gatewayResponse(model, 'INVALID_API_KEY', routeCtx));
        apiKey = key;
        apiKeyId = tenant;
      }

      if (apiMethod.integrationType === 'MOCK') return finish(mockResponse(apiMethod, requestId));
      if (!apiMethod.functionId || apiMethod.integrationType !== 'AWS_PROXY') {
        log(`${method} ${match.node.path}: integration ${apiMethod.integrationType} is not emulated locally`);
        return finish(gatewayResponse(model, 'DEFAULT_5XX', { ...routeCtx }));
      }
      outcomeNote = ` (${shortId(apiMethod.functionId)})`;
      const event = buildProxyEvent(model, match, { method, path: rawPath, query: url.search.slice(1), rawHeaders: req.rawHeaders, body, sourceIp }, { requestId, extendedRequestId, apiKey, apiKeyId, requestTimeEpoch: started });

      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), integrationTimeoutMs);
      });
      const outcome = await Promise.race([registry.invoke(apiMethod.functionId, event, 'api'), timedOut]);
      clearTimeout(timer);
      if (outcome === 'timeout') return finish(gatewayResponse(model, 'INTEGRATION_TIMEOUT', routeCtx));
      if (!outcome.ok) return finish(gatewayResponse(model, 'DEFAULT_5XX', routeCtx));
      const response = proxyResultToResponse(outcome.payload);
      if ('malformed' in response) {
        log(`${method} ${match.node.path}: Malformed Lambda proxy response from ${shortId(apiMethod.functionId)}: ${response.malformed}`);
        return finish(gatewayResponse(model, 'DEFAULT_5XX', routeCtx));
      }
      send(res, response, { 'x-amzn-RequestId': [requestId], 'x-amz-apigw-id': [extendedRequestId] });
      log(`${method} ${url.pathname}${url.search} → ${response.status}${outcomeNote} ${Date.now() - started} ms`);
    } catch (err) {
      log(`${method} ${url.pathname}: local gateway error: ${errorMessage(err)}`);
      finish(gatewayResponse(model, 'DEFAULT_5XX', ctx));
    }
  });
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;

  return listenOnLoopback(server, opts.port);
}

/** Reads the request body, or 'too-large' past the limit (API Gateway's payload limit is 10 MB). */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | 'too-large'> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) {
    req.resume();
    return Promise.resolve('too-large');
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) over = true;
      else chunks.push(c);
    });
    req.on('end', () => resolve(over ? 'too-large' : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** A MOCK integration (e.g. a CORS preflight): the first integration response, with static headers. */
function mockResponse(m: ApiMethod, requestId: string): HttpResponseData {
  const ir = (m.integration.IntegrationResponses ?? [])[0] ?? {};
  const headers: Record<string, string[]> = { 'Content-Type': ['application/json'], 'x-amzn-RequestId': [requestId] };
  for (const [key, value] of Object.entries<string>(ir.ResponseParameters ?? {})) {
    const name = /^method\.response\.header\.(.+)$/.exec(key)?.[1];
    const literal = /^'(.*)'$/.exec(String(value));
    if (name && literal) headers[name] = [literal[1]!];
  }
  const template = Object.values<string>(ir.ResponseTemplates ?? {})[0] ?? '';
  return { status: Number(ir.StatusCode ?? 200), headers, body: Buffer.from(template) };
}
