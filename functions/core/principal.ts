/**
 * Who is calling. A tenant creates and reads its own payments; an operator runs recovery and re-opens
 * failed payments of any tenant. The API layer resolves the principal from the API key's id; the core
 * only receives it.
 */
import { AppError } from './errors';

export type Principal =
  | { readonly kind: 'tenant'; readonly tenantId: string }
  | { readonly kind: 'operator'; readonly name: string };

/** Tenant ids and operator names: what a key id may be mapped to. */
const NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** `tenant:<id>` or `operator:<name>`, the form stored in the principals table and used in LOCAL_API_KEYS. */
export function parsePrincipal(text: string): Principal | undefined {
  const at = text.indexOf(':');
  const kind = text.slice(0, at);
  const name = text.slice(at + 1);
  if (at <= 0 || !NAME.test(name)) return undefined;
  if (kind === 'tenant') return { kind, tenantId: name };
  if (kind === 'operator') return { kind, name };
  return undefined;
}

/**
 * Who an API key id is (the id API Gateway passes, never the key): the principals table, which the
 * tenants command writes (scripts/tenants.ts). Undefined when the key id is unknown or revoked.
 */
export interface PrincipalDirectory {
  resolve(apiKeyId: string): Promise<Principal | undefined>;
}

/** The actor recorded in a payment version and its audit entry. */
export const actorOf = (p: Principal): string => (p.kind === 'operator' ? `operator:${p.name}` : `api:${p.tenantId}`);

export class ForbiddenError extends AppError {
  constructor(code: 'OPERATOR_ONLY' | 'TENANT_ONLY' | 'FORBIDDEN', message: string) {
    super(code, message, 403);
  }
}

export function requireOperator(p: Principal, what: string): asserts p is Extract<Principal, { kind: 'operator' }> {
  if (p.kind !== 'operator') throw new ForbiddenError('OPERATOR_ONLY', `${what} needs an operator API key`);
}
