/**
 * An authorizing proxy in front of one local backend (DynamoDB Local, the SQS emulator or the Lambda
 * Invoke endpoint): it names the caller by the access key id of the request's SigV4 Authorization header,
 * works out which IAM actions on which resources the request needs, evaluates the caller's role
 * (iam-policy.ts) and either forwards the request unchanged or answers the way the AWS service answers
 * an IAM denial.
 *
 * The signature itself is not verified: the access key id is taken on trust. This is an emulator of
 * authorization, not authentication; it runs on 127.0.0.1 for the local stack's own functions.
 */
import * as http from 'node:http';
import { evaluate, type FunctionRole } from './iam-policy';
import { errorMessage, listenOnLoopback, type LogFn } from './util';

export type ProxiedService = 'dynamodb' | 'sqs' | 'lambda';

/** A caller the proxy knows: a function (evaluated against its role) or the admin (allowed everything). */
export type IamCaller = { readonly kind: 'admin' } | { readonly kind: 'function'; readonly principal: string; readonly role: FunctionRole };

/** How request parameters name resources, turned into the ARNs the policies name. */
export interface ArnResolver {
  table(tableName: string): string;
  /** By queue URL or queue name. */
  queue(urlOrName: string): string;
  /** By function name, ARN or partial ARN. */
  function(nameOrArn: string): string;
}

export interface Authorization {
  readonly action: string;
  readonly resource: string;
}

const TRANSACT_WRITE_ACTIONS: Record<string, string> = { Put: 'PutItem', Update: 'UpdateItem', Delete: 'DeleteItem', ConditionCheck: 'ConditionCheckItem' };

/**
 * Every action × resource a request needs, as IAM checks it. DynamoDB transactions need the item action
 * on each table they touch (there is no TransactWriteItems IAM action); batch operations need the batch
 * action on each table; a Query or Scan of an index needs the index ARN.
 */
export function requiredAuthorizations(
  service: ProxiedService,
  request: { target?: string; path: string; body: unknown },
  arns: ArnResolver,
): Authorization[] {
  const body = (request.body ?? {}) as Record<string, any>;
  if (service === 'lambda') {
    const m = /^\/2015-03-31\/functions\/([^/]+)\/invocations\/?$/.exec(request.path);
    if (!m) return [{ action: 'lambda:UnknownOperation', resource: '*' }];
    return [{ action: 'lambda:InvokeFunction', resource: arns.function(decodeURIComponent(m[1]!)) }];
  }
  const [prefix, operation = ''] = (request.target ?? '').split('.');
  if (service === 'sqs') {
    const action = `sqs:${operation}`;
    if (typeof body.QueueUrl === 'string') return [{ action, resource: arns.queue(body.QueueUrl) }];
    if (typeof body.QueueName === 'string') return [{ action, resource: arns.queue(body.QueueName) }];
    return [{ action, resource: '*' }];
  }
  if (prefix?.startsWith('DynamoDBStreams')) {
    return [{ action: `dynamodb:${operation}`, resource: typeof body.StreamArn === 'string' ? body.StreamArn : '*' }];
  }
  if (operation === 'TransactWriteItems' || operation === 'TransactGetItems') {
    return (Array.isArray(body.TransactItems) ? body.TransactItems : []).flatMap((item: Record<string, any>) =>
      Object.entries(item ?? {}).map(([kind, op]) => ({
        action: `dynamodb:${operation === 'TransactGetItems' ? 'GetItem' : (TRANSACT_WRITE_ACTIONS[kind] ?? kind)}`,
        resource: arns.table(String(op?.TableName)),
      })),
    );
  }
  if (operation === 'BatchGetItem' || operation === 'BatchWriteItem') {
    return Object.keys(body.RequestItems ?? {}).map((table) => ({ action: `dynamodb:${operation}`, resource: arns.table(table) }));
  }
  if (typeof body.TableName === 'string') {
    const table = arns.table(body.TableName);
    const onIndex = (operation === 'Query' || operation === 'Scan') && typeof body.IndexName === 'string';
    return [{ action: `dynamodb:${operation}`, resource: onIndex ? `${table}/index/${body.IndexName}` : table }];
  }
  return [{ action: `dynamodb:${operation}`, resource: '*' }];
}

/** The access key id of a SigV4 Authorization header (`... Credential=<key>/<date>/<region>/<service>/aws4_request, ...`). */
export function accessKeyIdOf(authorization: string | undefined): string | undefined {
  return /Credential=([^/,\s]+)\//.exec(authorization ?? '')?.[1];
}

interface Denial {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/** AWS's answer to a request its caller's policies do not allow, per service protocol. */
export function accessDenied(service: ProxiedService, principal: string, auth: Authorization, explicitDeny: boolean): Denial {
  // SQS writes the action in lower case in this message.
  const action = service === 'sqs' ? auth.action.toLowerCase() : auth.action;
  const why = explicitDeny
    ? `with an explicit deny in an identity-based policy`
    : `because no identity-based policy allows the ${action} action`;
  const message = `User: ${principal} is not authorized to perform: ${action} on resource: ${auth.resource} ${why}`;
  if (service === 'dynamodb') {
    return {
      status: 400,
      headers: { 'content-type': 'application/x-amz-json-1.0', 'x-amzn-errortype': 'AccessDeniedException' },
      body: JSON.stringify({ __type: 'com.amazon.coral.service#AccessDeniedException', Message: message }),
    };
  }
  if (service === 'sqs') {
    return {
      status: 403,
      headers: { 'content-type': 'application/x-amz-json-1.0', 'x-amzn-query-error': 'AccessDenied;Sender' },
      body: JSON.stringify({ __type: 'com.amazon.coral.service#AccessDeniedException', message }),
    };
  }
  return {
    status: 403,
    headers: { 'content-type': 'application/json', 'x-amzn-errortype': 'AccessDeniedException' },
    body: JSON.stringify({ Message: message }),
  };
}

/** AWS's answer to a request signed with an access key it does not know (or not signed at all). */
function unrecognizedClient(service: ProxiedService, signed: boolean): Denial {
  const [type, message] = signed
    ? ['UnrecognizedClientException', 'The security token included in the request is invalid.']
    : ['MissingAuthenticationTokenException', 'Request is missing Authentication Token'];
  if (service === 'sqs') {
    return {
      status: 403,
      headers: { 'content-type': 'application/x-amz-json-1.0', 'x-amzn-query-error': `${signed ? 'InvalidClientTokenId' : 'MissingAuthenticationToken'};Sender` },
      body: JSON.stringify({ __type: `com.amazon.coral.service#${type}`, message }),
    };
  }
  return {
    status: service === 'dynamodb' ? 400 : 403,
    headers: { 'content-type': service === 'dynamodb' ? 'application/x-amz-json-1.0' : 'application/json', 'x-amzn-errortype': type },
    body: JSON.stringify(service === 'dynamodb' ? { __type: `com.amazon.coral.service#${type}`, message } : { Message: message }),
  };
}

export interface IamProxyOptions {
  readonly service: ProxiedService;
  /** The backend's URL, e.g. DynamoDB Local's endpoint. */
  readonly upstream: string;
  /** Access key id → caller; any other key is refused as AWS refuses an unknown key. */
  readonly callers: ReadonlyMap<string, IamCaller>;
  readonly arns: ArnResolver;
  readonly port?: number;
  readonly log: LogFn;
}

export interface RunningIamProxy {
  readonly url: string;
  /** Denials so far, newest last (for tests and diagnostics). */
  readonly denials: ReadonlyArray<{ principal: string; action: string; resource: string }>;
  stop(): Promise<void>;
}

export async function startIamProxy(opts: IamProxyOptions): Promise<RunningIamProxy> {
  const upstream = new URL(opts.upstream);
  const agent = new http.Agent({ keepAlive: true });
  const denials: Array<{ principal: string; action: string; resource: string }> = [];
  const send = (res: http.ServerResponse, d: Denial) => {
    res.writeHead(d.status, { ...d.headers, 'x-amzn-requestid': crypto.randomUUID() });
    res.end(d.body);
  };
  const server = http.createServer(async (req, res) => {
    try {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const raw = Buffer.concat(chunks);
      const keyId = accessKeyIdOf(req.headers.authorization);
      const caller = keyId === undefined ? undefined : opts.callers.get(keyId);
      if (!caller) return send(res, unrecognizedClient(opts.service, keyId !== undefined));
      if (caller.kind === 'function') {
        let body: unknown = {};
        if (opts.service !== 'lambda' && raw.length) {
          try {
            body = JSON.parse(raw.toString('utf8'));
          } catch {
            body = {}; // the backend answers malformed JSON itself
          }
        }
        const target = typeof req.headers['x-amz-target'] === 'string' ? req.headers['x-amz-target'] : undefined;
        const path = new URL(req.url ?? '/', 'http://local').pathname;
        for (const auth of requiredAuthorizations(opts.service, { target, path, body }, opts.arns)) {
          const decision = evaluate(caller.role.statements, auth.action, auth.resource);
          if (!decision.allowed) {
            denials.push({ principal: caller.principal, ...auth });
            opts.log(`[iam] denied ${auth.action} on ${auth.resource} to ${caller.principal}`);
            return send(res, accessDenied(opts.service, caller.principal, auth, decision.reason === 'explicit-deny'));
          }
        }
      }
      const forward = http.request(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: upstream.host, 'content-length': String(raw.length) },
          agent,
        },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      forward.on('error', (err) => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`IAM proxy: ${opts.service} backend unreachable: ${errorMessage(err)}`);
      });
      forward.end(raw);
    } catch (err) {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`IAM proxy error: ${errorMessage(err)}`);
    }
  });
  const listening = await listenOnLoopback(server, opts.port ?? 0);
  return {
    url: listening.url,
    denials,
    stop: async () => {
      await listening.stop();
      agent.destroy();
    },
  };
}
