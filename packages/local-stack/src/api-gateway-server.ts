/**
 * The local API Gateway: an HTTP server on 127.0.0.1 that serves the REST API model. Each request is
 * matched to a resource and method, checked for its API key, and answered by a MOCK integration or by
 * invoking the method's function through the Lambda proxy integration; API Gateway's own errors come
 * from the gateway responses.
 */
import { randomUUID } from 'node:crypto';
import * as http from 'node:http';
import { gatewayResponse, type GatewayContext, type HttpResponseData } from './api-gateway-responses';
import type { ApiMethod, RestApiModel } from './api-model';
import { buildProxyEvent, proxyResultToResponse, safeDecode } from './api-proxy-integration';
import { matchResource, methodFor } from './api-route-matcher';
import type { FunctionRegistry } from './function-registry';
import { errorMessage, listenOnLoopback, shortId, type LogFn } from './util';

export interface ApiGatewayOptions {
  readonly model: RestApiModel;
  readonly registry: FunctionRegistry;
  /** API key → its id (requestContext.identity.apiKeyId). */
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
        const keyId = key !== undefined ? apiKeys.get(key) : undefined;
        if (key === undefined || keyId === undefined) return finish(gatewayResponse(model, 'INVALID_API_KEY', routeCtx));
        apiKey = key;
        apiKeyId = keyId;
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
  // Requests Node rejects before the gateway sees them (headers over its limit: 431; malformed: 400)
  // get the gateway's error shape too, from the DEFAULT_4XX response with the real status.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) return socket.destroy();
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    const ctx: GatewayContext = { requestId: randomUUID(), extendedRequestId: randomUUID().replace(/-/g, '').slice(0, 16), stage: model.stageName, apiId: model.apiId };
    const r = gatewayResponse(model, 'DEFAULT_4XX', ctx);
    const reason = status === 431 ? 'Request Header Fields Too Large' : 'Bad Request';
    const head = [`HTTP/1.1 ${status} ${reason}`, ...Object.entries(r.headers).map(([k, v]) => `${k}: ${v[0]}`), `Content-Length: ${r.body.length}`, 'Connection: close'];
    socket.end(`${head.join('\r\n')}\r\n\r\n${r.body.toString()}`);
    log(`(client error) → ${status}`);
  });

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
