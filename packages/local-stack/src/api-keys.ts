import { createHash } from 'node:crypto';

/** Parses `key:who,key2:who2` (or takes a map) into key → who (`tenant-1`, `tenant:tenant-1`, `operator:ops`). */
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

/**
 * The id API Gateway would give the key (requestContext.identity.apiKeyId): opaque, stable, and not
 * the tenant's name, so handlers must map it to a principal as they do in AWS.
 */
export function localApiKeyId(key: string): string {
  return `lk${createHash('sha256').update(key).digest('hex').slice(0, 10)}`;
}

/** Who a key is, as `tenant:<id>` or `operator:<name>`; a bare name is a tenant. */
export function principalOf(who: string): string {
  return who.startsWith('tenant:') || who.startsWith('operator:') ? who : `tenant:${who}`;
}

/**
 * The value of API_KEY_PRINCIPALS for the local keys: `<apiKeyId>=<principal>` pairs. In AWS the stack
 * builds it from the deployed keys' ids; locally the keys come from LOCAL_API_KEYS, so the local stack
 * supplies it in place of the template's value.
 */
export function apiKeyPrincipals(keys: ReadonlyMap<string, string>): string {
  return [...keys].map(([key, who]) => `${localApiKeyId(key)}=${principalOf(who)}`).join(',');
}
