/** Card tokens are never logged, audited or returned in full: only the last four characters show. */
export function maskToken(token: string | undefined): string | undefined {
  if (token === undefined) return undefined;
  if (token.length <= 4) return '****';
  return `${'*'.repeat(Math.min(8, token.length - 4))}${token.slice(-4)}`;
}
