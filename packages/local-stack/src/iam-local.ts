/**
 * IAM for the local stack: one set of credentials per function, derived from its logical id, mapped to
 * its execution role from the template, and an authorizing proxy (iam-proxy.ts) in front of each backend
 * the functions call. The local stack itself and tests use the admin credentials, allowed everything.
 */
import { functionRoles, assumedRoleArn, type FunctionRole } from './iam-policy';
import { startIamProxy, type ArnResolver, type IamCaller, type RunningIamProxy } from './iam-proxy';
import { LOCAL_ACCOUNT, LOCAL_REGION } from './local-account';
import { localFunctionArn, localTableArn, resolveValue, type CfnTemplate, type LocalResources } from './template';
import { findByPrefix, type LogFn } from './util';

export interface Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

/** What the local stack, tests and tools sign with: allowed everything. */
export const ADMIN_CREDENTIALS: Credentials = { accessKeyId: 'local', secretAccessKey: 'local' };

/**
 * A function's local credentials: the access key id names the function, so denials are readable. Letters
 * and digits only (logical ids are), since DynamoDB Local rejects other access key ids.
 */
export const functionCredentials = (functionId: string): Credentials => ({
  accessKeyId: `LOCALFN${functionId}`,
  secretAccessKey: `local-secret-${functionId}`,
});

export interface LocalIam {
  /** Where the functions send their calls: the proxies in front of DynamoDB, SQS and the Lambda endpoint (when there is one). */
  readonly endpoints: { readonly dynamodb: string; readonly sqs: string; readonly lambda: string };
  /** Each function's role as read from the template, by function logical id. */
  readonly roles: ReadonlyMap<string, FunctionRole>;
  /** Credentials of the function whose logical id is (or starts with) `functionIdOrPrefix`. */
  credentialsOf(functionIdOrPrefix: string): Credentials;
  credentialsOfFunction(functionId: string): Credentials;
  /** Every request denied so far, in order. */
  denials(): Array<{ principal: string; action: string; resource: string }>;
  stop(): Promise<void>;
}

export async function startIamProxies(opts: {
  template: CfnTemplate;
  resources: LocalResources;
  /** Without `lambda`, no Lambda proxy is started and `endpoints.lambda` is empty. */
  upstreams: { dynamodb: string; sqs: string; lambda?: string };
  /** The function id a name or ARN designates, if it is a local function. */
  functionArn: (nameOrArn: string) => string | undefined;
  log: LogFn;
}): Promise<LocalIam> {
  const roles = functionRoles(opts.template, (v) => resolveValue(v, opts.template, opts.resources));
  const skipped = [...roles.values()].flatMap((r) => r.skipped);
  if (skipped.length) {
    opts.log(`[iam] ${skipped.length} policy statement(s) or resource(s) not evaluated (conditions, or no local counterpart such as a KMS key or secret)`);
  }
  const callers = new Map<string, IamCaller>([[ADMIN_CREDENTIALS.accessKeyId, { kind: 'admin' }]]);
  for (const [fnId, role] of roles) {
    callers.set(functionCredentials(fnId).accessKeyId, { kind: 'function', principal: assumedRoleArn(role.roleId, fnId), role });
  }
  const queues = Object.values(opts.resources.queues);
  const arns: ArnResolver = {
    table: localTableArn,
    queue: (urlOrName) => {
      const name = urlOrName.split('/').pop() ?? urlOrName;
      const known = queues.find((q) => q.url === urlOrName || q.name === name);
      return known?.arn ?? `arn:aws:sqs:${LOCAL_REGION}:${LOCAL_ACCOUNT}:${name}`;
    },
    function: (nameOrArn) => {
      const id = opts.functionArn(nameOrArn);
      return id ? localFunctionArn(id) : nameOrArn;
    },
  };
  const started: RunningIamProxy[] = [];
  try {
    for (const service of ['dynamodb', 'sqs', 'lambda'] as const) {
      const upstream = opts.upstreams[service];
      if (upstream) started.push(await startIamProxy({ service, upstream, callers, arns, log: opts.log }));
    }
  } catch (err) {
    await Promise.all(started.map((p) => p.stop()));
    throw err;
  }
  const [dynamodb, sqs, lambda] = started as [RunningIamProxy, RunningIamProxy, RunningIamProxy | undefined];
  const ids = [...roles.keys()];
  return {
    endpoints: { dynamodb: dynamodb.url, sqs: sqs.url, lambda: lambda?.url ?? '' },
    roles,
    credentialsOf: (prefix) => functionCredentials(findByPrefix(ids, prefix, 'function')),
    credentialsOfFunction: functionCredentials,
    denials: () => started.flatMap((p) => p.denials),
    stop: async () => {
      await Promise.all(started.map((p) => p.stop()));
    },
  };
}
