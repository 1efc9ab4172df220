/**
 * docs/openapi.yaml as a checker, for the tests that hold the handlers to it: does the document allow
 * this request, which error codes does it declare for a request field, and does this response (status,
 * body, headers) match what it declares. JSON Schema 2020-12 (OpenAPI 3.1) by Ajv, strict.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { parse } from 'yaml';
import { projectRoot } from './project-root';

type Schema = Record<string, any>;
interface Parameter {
  readonly name: string;
  readonly in: 'query' | 'header' | 'path';
  readonly required?: boolean;
  readonly schema: Schema;
}
interface Response {
  readonly headers?: Record<string, unknown>;
  readonly content?: Record<string, { schema: Schema }>;
}
interface Operation {
  readonly parameters?: Array<Parameter | { $ref: string }>;
  readonly requestBody?: { required?: boolean; content: Record<string, { schema: Schema }> };
  readonly responses: Record<string, Response | { $ref: string }>;
}

export const openapi = parse(readFileSync(path.join(projectRoot, 'docs/openapi.yaml'), 'utf8')) as {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Schema>; parameters: Record<string, Parameter>; responses: Record<string, Response> };
};

export const ajv = new Ajv2020({ strict: true, allErrors: true });
addFormats(ajv);
// The document's own extension: the error codes a request field's refusal may carry.
ajv.addKeyword({ keyword: 'x-error-codes', schemaType: 'array' });
ajv.addVocabulary(['openapi', 'info', 'servers', 'security', 'tags', 'paths', 'components']);
ajv.addSchema({ $id: 'openapi', ...openapi });

/** A compiled validator for a JSON pointer into the document, e.g. `#/components/schemas/Payment`. */
function validatorAt(pointer: string): ValidateFunction {
  const v = ajv.getSchema(`openapi${pointer}`);
  if (!v) throw new Error(`no schema at ${pointer}`);
  return v;
}

const escape = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');
const deref = <T>(x: T | { $ref: string }): T => {
  if (x && typeof x === 'object' && '$ref' in x) {
    const parts = x.$ref.replace(/^#\//, '').split('/');
    return parts.reduce((o: any, k) => o[k], openapi) as T;
  }
  return x as T;
};

export function operation(method: string, route: string): Operation {
  const op = openapi.paths[route]?.[method.toLowerCase()];
  if (!op) throw new Error(`${method} ${route} is not documented`);
  return op;
}

/** The pointer of a parameter's schema: its component's, or the operation's own. */
function parameterSchemaPointer(method: string, route: string, index: number): string {
  const raw = operation(method, route).parameters![index]!;
  if ('$ref' in raw) return `${raw.$ref}/schema`;
  return `#/paths/${escape(route)}/${method.toLowerCase()}/parameters/${index}/schema`;
}

/** `application/json`, with no charset or charset utf-8. */
const isJson = (ct: string | undefined) => {
  if (!ct) return false;
  const [type, ...params] = ct.split(';').map((s) => s.trim().toLowerCase());
  return type === 'application/json' && params.every((p) => !p.startsWith('charset=') || p.slice(8).replace(/^"(.*)"$/, '$1') === 'utf-8');
};

export interface DocRequest {
  readonly headers?: Record<string, string | string[]>;
  readonly query?: Record<string, string>;
  readonly path?: Record<string, string>;
  /** The raw body text, as sent. */
  readonly body?: string;
}

/**
 * Whether the document allows the request: every declared parameter against its schema (query
 * integers read from their text), each header sent once, and a body sent as one of the declared media
 * types that parses and matches its schema. `problem` names the first thing it refuses.
 */
export function documentAllows(method: string, route: string, req: DocRequest): { ok: true } | { ok: false; problem: string } {
  const op = operation(method, route);
  const header = (name: string): string[] =>
    Object.entries(req.headers ?? {})
      .filter(([k]) => k.toLowerCase() === name.toLowerCase())
      .flatMap(([, v]) => (Array.isArray(v) ? v : [v]));
  const params = (op.parameters ?? []).map((p) => deref<Parameter>(p));
  for (const [i, p] of params.entries()) {
    let value: unknown;
    if (p.in === 'header') {
      const values = header(p.name);
      if (values.length > 1) return { ok: false, problem: `header ${p.name} sent ${values.length} times` };
      value = values[0];
    } else {
      value = (p.in === 'query' ? req.query : req.path)?.[p.name];
    }
    if (value === undefined) {
      if (p.required) return { ok: false, problem: `${p.in} parameter ${p.name} is required` };
      continue;
    }
    if (p.in === 'query' && deref<Schema>(p.schema).type === 'integer' && /^-?\d+$/.test(value as string)) value = Number(value);
    const validate = validatorAt(parameterSchemaPointer(method, route, i));
    if (!validate(value)) return { ok: false, problem: `${p.in} parameter ${p.name}: ${ajv.errorsText(validate.errors)}` };
  }
  const body = req.body ?? '';
  if (op.requestBody) {
    if (body.trim() === '') return op.requestBody.required ? { ok: false, problem: 'the body is required' } : { ok: true };
    const contentType = header('content-type')[0];
    if (!isJson(contentType)) return { ok: false, problem: `content-type ${contentType ?? '(none)'} is not declared` };
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      return { ok: false, problem: 'the body is not JSON' };
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return { ok: false, problem: 'the body is not a JSON object' };
    const validate = validatorAt(`#/paths/${escape(route)}/${method.toLowerCase()}/requestBody/content/application~1json/schema`);
    if (!validate(parsed)) return { ok: false, problem: `body: ${ajv.errorsText(validate.errors)}` };
  }
  return { ok: true };
}

/**
 * The error codes the document declares for a request field (`x-error-codes`), found by walking the
 * operation's body schema (`paymentMethod.token`, `metadata.<any key>`) or its parameters by name.
 */
export function declaredCodes(method: string, route: string, field: string): string[] {
  const op = operation(method, route);
  const param = (op.parameters ?? []).map((p) => deref<Parameter>(p)).find((p) => p.name.toLowerCase() === field.toLowerCase());
  if (param) return param.schema['x-error-codes'] ?? deref<Schema>(param.schema)['x-error-codes'] ?? [];
  let schema: Schema | undefined = op.requestBody ? deref<Schema>(op.requestBody.content['application/json']!.schema) : undefined;
  let codes: string[] = [];
  for (const part of field.split('.')) {
    const raw: Schema | undefined = schema?.properties?.[part] ?? (typeof schema?.additionalProperties === 'object' ? schema.additionalProperties : undefined);
    if (!raw) break;
    schema = deref<Schema>(raw);
    codes = raw['x-error-codes'] ?? schema['x-error-codes'] ?? codes;
  }
  return codes;
}

export interface DocResponse {
  readonly status: number;
  /** Header lookup, case-insensitive. */
  readonly header: (name: string) => string | null | undefined;
  readonly body: unknown;
}

/**
 * What is wrong with a response against the document (empty: nothing): its status is declared for the
 * operation, its body matches the declared schema, a retryable error carries Retry-After, every
 * response carries x-request-id, and Retry-After / Location / Idempotent-Replayed appear only where
 * declared.
 */
export function responseProblems(method: string, route: string, res: DocResponse): string[] {
  const where = `${method} ${route} → ${res.status}`;
  const declared = operation(method, route).responses[String(res.status)];
  if (!declared) return [`${where} is not declared`];
  const response = deref<Response>(declared);
  const problems: string[] = [];
  const schema = response.content?.['application/json']?.schema;
  if (schema) {
    const pointer = '$ref' in schema ? (schema.$ref as string) : undefined;
    const validate = pointer ? validatorAt(pointer) : ajv.compile(schema);
    if (!validate(res.body)) problems.push(`${where}: ${ajv.errorsText(validate.errors)} in ${JSON.stringify(res.body).slice(0, 300)}`);
  }
  const names = Object.keys(response.headers ?? {}).map((h) => h.toLowerCase());
  const error = (res.body as { error?: { retryable?: boolean } } | undefined)?.error;
  if (error?.retryable && !/^\d+$/.test(res.header('retry-after') ?? '')) problems.push(`${where}: retryable without Retry-After`);
  if (!res.header('x-request-id')) problems.push(`${where}: no x-request-id`);
  for (const name of ['retry-after', 'location', 'idempotent-replayed']) {
    if (res.header(name) != null && !names.includes(name)) problems.push(`${where}: ${name} sent but not declared`);
  }
  return problems;
}
