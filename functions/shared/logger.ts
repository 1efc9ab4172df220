import { Logger } from '@aws-lambda-powertools/logger';

/** One logger per function instance; service name and level come from POWERTOOLS_* variables. */
export const logger = new Logger();

/** Card tokens are never logged or audited in full. */
export function maskToken(token: string | undefined): string | undefined {
  if (token === undefined) return undefined;
  if (token.length <= 4) return '****';
  return `${'*'.repeat(Math.min(8, token.length - 4))}${token.slice(-4)}`;
}
