/**
 * Tenants and operators without a deploy: API keys created in API Gateway, put on a usage plan, and
 * recorded in the principals table (functions/adapters/dynamo/principals.ts) that the API functions read.
 * `npm run tenants` (scripts/tenants.ts) is the command over this module.
 *
 * Order, so that a crash in the middle never leaves a key that works for the wrong caller:
 *   add     create the key → record its principal → put it on the plan. API Gateway accepts a key only
 *           once it is on a plan of the stage, and the functions only once its principal is recorded:
 *           until both, the key works nowhere. Run add again after a failure (a new key; the orphan
 *           can be deleted with revoke).
 *   revoke  mark the record revoked (every function refuses it within PRINCIPAL_CACHE_SECONDS) → delete
 *           the key in API Gateway (refused at the gateway at once; its plan association goes with it).
 *   rotate  add a second key for the same tenant; both work (same tenant id: same payments, keys and
 *           audit trail); revoke the old one once the tenant has switched (access logs: apiKeyId).
 */
import { PrincipalsTable, principalText, type PrincipalRecord } from '../functions/adapters/dynamo/principals';
import { parsePrincipal, type Principal } from '../functions/core/principal';

/** The part of API Gateway's key management the command uses. */
export interface KeyRegistry {
  createKey(name: string, description: string): Promise<{ id: string; value: string }>;
  addToPlan(planId: string, keyId: string): Promise<void>;
  /** Deletes the key; a key already gone is not an error. */
  deleteKey(keyId: string): Promise<void>;
}

export interface AddedKey {
  readonly apiKeyId: string;
  /** The key itself: shown once, to hand to the tenant or operator. */
  readonly value: string;
  readonly principal: string;
  readonly planId: string;
  readonly keyName: string;
}

export class TenantAdmin {
  constructor(
    private readonly deps: {
      readonly keys: KeyRegistry;
      readonly principals: Pick<PrincipalsTable, 'add' | 'revoke' | 'get' | 'list'>;
      /** Deployment name, prefixed to key names (the stack name). */
      readonly stackName: string;
      readonly clock?: () => Date;
    },
  ) {}

  /** A new key for `who` (`tenant:<id>` or `operator:<name>`) on the usage plan `planId`. */
  async addKey(who: string, planId: string): Promise<AddedKey> {
    const principal = parsePrincipal(who);
    if (!principal) throw new Error(`"${who}" is not tenant:<id> or operator:<name> (letters, digits, _ and -, up to 64)`);
    const now = (this.deps.clock ?? (() => new Date()))();
    const keyName = `${this.deps.stackName}-${principal.kind === 'tenant' ? principal.tenantId : `operator-${principal.name}`}-${now.toISOString().replace(/[-:.]/g, '').slice(0, 15)}`;
    const key = await this.deps.keys.createKey(keyName, `${principalText(principal)} (${this.deps.stackName})`);
    await this.deps.principals.add(key.id, principal, keyName, now);
    await this.deps.keys.addToPlan(planId, key.id);
    return { apiKeyId: key.id, value: key.value, principal: principalText(principal), planId, keyName };
  }

  /** Revokes a key: refused by the functions, then deleted in API Gateway. */
  async revokeKey(apiKeyId: string): Promise<PrincipalRecord> {
    const record = await this.deps.principals.get(apiKeyId);
    if (!record) throw new Error(`no principal is recorded for API key id ${apiKeyId}`);
    await this.deps.principals.revoke(apiKeyId, (this.deps.clock ?? (() => new Date()))());
    await this.deps.keys.deleteKey(apiKeyId);
    return { ...record, status: 'revoked' };
  }

  async list(): Promise<PrincipalRecord[]> {
    return this.deps.principals.list();
  }
}

export type { Principal };
