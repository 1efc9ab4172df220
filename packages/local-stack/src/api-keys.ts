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
