/**
 * What the local runtime needs to run each AWS::Lambda::Function of the template: its bundle in
 * cdk.out, handler, limits and complete environment.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { LOCAL_REGION } from './local-account';
import { resourcesOfType, resolveValue, type LocalResources, type SynthesizedStack } from './template';
import { errorMessage, shortId, type LogFn } from './util';

export interface FunctionDefinition {
  /** Logical id; also the local function name. */
  readonly id: string;
  /** `index.handler`: module file (without extension) and export name. */
  readonly handler: string;
  /** Absolute path of the asset directory holding the bundle. */
  readonly assetDir: string;
  readonly timeoutSeconds: number;
  readonly memoryMb: number;
  readonly runtime: string;
  /** The complete environment of the function's worker. */
  readonly env: Record<string, string>;
}

export interface RuntimeEndpoints {
  readonly dynamodb: string;
  readonly sqs: string;
  readonly lambda: string;
  /** The local Secrets Manager, when the template has secrets. */
  readonly secretsManager?: string;
}

/**
 * The definitions of every AWS::Lambda::Function in the template: its bundle directory in cdk.out,
 * handler, timeout, memory, and its environment resolved to the local resources plus what the Lambda
 * runtime itself provides, with `extraEnv` merged last.
 */
export function functionDefinitions(
  stack: SynthesizedStack,
  local: LocalResources,
  endpoints: RuntimeEndpoints,
  extraEnv: Record<string, string> = {},
  log: LogFn = () => {},
  credentialsOf: (functionId: string) => { accessKeyId: string; secretAccessKey: string } = () => ({ accessKeyId: 'local', secretAccessKey: 'local' }),
  /** Values that replace the template's, only in the functions whose template sets the variable. */
  templateOverrides: Record<string, string> = {},
): FunctionDefinition[] {
  const defs: FunctionDefinition[] = [];
  // Bundles leave '@aws-sdk/*' to the runtime; here Node finds it by walking up from the asset.
  try {
    createRequire(path.join(stack.assemblyDir, 'index.js')).resolve('@aws-sdk/client-dynamodb');
  } catch {
    log(`'@aws-sdk/*' cannot be resolved from ${stack.assemblyDir}: keep the cloud assembly inside the project (below its node_modules)`);
  }
  for (const [id, r] of resourcesOfType(stack.template, 'AWS::Lambda::Function')) {
    const props = r.Properties ?? {};
    const assetPath = r.Metadata?.['aws:asset:path'];
    const runtime = String(props.Runtime ?? 'nodejs');
    if (!runtime.startsWith('nodejs')) {
      log(`[${shortId(id)}] runtime ${runtime} is not supported locally; the function will fail when invoked`);
    }
    if (typeof assetPath !== 'string') {
      log(`[${shortId(id)}] has no local asset (aws:asset:path); the function will fail when invoked`);
    }
    const assetDir = path.resolve(stack.assemblyDir, typeof assetPath === 'string' ? assetPath : `missing-asset-${id}`);
    if (typeof assetPath === 'string' && !existsSync(assetDir)) log(`[${shortId(id)}] asset directory ${assetDir} does not exist`);
    const timeoutSeconds = Number(props.Timeout ?? 3);
    const memoryMb = Number(props.MemorySize ?? 128);
    const handler = String(props.Handler ?? 'index.handler');

    const templateEnv: Record<string, string> = {};
    for (const [k, v] of Object.entries<unknown>(props.Environment?.Variables ?? {})) {
      if (Object.hasOwn(templateOverrides, k)) {
        templateEnv[k] = templateOverrides[k]!;
        continue;
      }
      // Replaced by extraEnv below: no need to resolve (or report) the template's value.
      if (Object.hasOwn(extraEnv, k)) continue;
      try {
        templateEnv[k] = resolveValue(v, stack.template, local);
      } catch (err) {
        log(`[${shortId(id)}] environment variable ${k} left unset: ${errorMessage(err)}`);
      }
    }
    const logStream = `${new Date().toISOString().slice(0, 10).replace(/-/g, '/')}/[$LATEST]${randomUUID().replace(/-/g, '')}`;
    const env: Record<string, string> = {
      ...templateEnv,
      // What the Lambda service sets in every sandbox.
      AWS_REGION: LOCAL_REGION,
      AWS_DEFAULT_REGION: LOCAL_REGION,
      AWS_LAMBDA_FUNCTION_NAME: id,
      AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(memoryMb),
      AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${id}`,
      AWS_LAMBDA_LOG_STREAM_NAME: logStream,
      AWS_EXECUTION_ENV: `AWS_Lambda_${runtime}`,
      LAMBDA_TASK_ROOT: assetDir,
      _HANDLER: handler,
      // The function's own credentials (the IAM proxy maps them to its role) and the endpoints.
      AWS_ACCESS_KEY_ID: credentialsOf(id).accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentialsOf(id).secretAccessKey,
      AWS_ENDPOINT_URL_DYNAMODB: endpoints.dynamodb,
      AWS_ENDPOINT_URL_DYNAMODB_STREAMS: endpoints.dynamodb,
      AWS_ENDPOINT_URL_SQS: endpoints.sqs,
      AWS_ENDPOINT_URL_LAMBDA: endpoints.lambda,
      ...(endpoints.secretsManager ? { AWS_ENDPOINT_URL_SECRETS_MANAGER: endpoints.secretsManager } : {}),
      // No X-Ray daemon here: Powertools Tracer stays a no-op (the trace id still reaches the logs).
      POWERTOOLS_TRACE_ENABLED: 'false',
      // The SDK warns once per worker that it will need Node 22; the local stack runs on Node 20.
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      ...(process.env.PATH ? { PATH: process.env.PATH } : {}),
      ...extraEnv,
    };
    defs.push({ id, handler, assetDir, timeoutSeconds, memoryMb, runtime, env });
  }
  return defs;
}
