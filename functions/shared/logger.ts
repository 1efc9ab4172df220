import { Logger as PowertoolsLogger } from '@aws-lambda-powertools/logger';
import type { Logger } from '../core/ports';

/** One logger per function instance; service name and level come from POWERTOOLS_* variables. */
export const logger = new PowertoolsLogger();

/** The service logger behind the core's Logger port. */
export const serviceLogger: Logger = {
  debug: (m, a) => logger.debug(m, a ?? {}),
  info: (m, a) => logger.info(m, a ?? {}),
  warn: (m, a) => logger.warn(m, a ?? {}),
  error: (m, a) => logger.error(m, a ?? {}),
};

export { maskToken } from '../core/mask';
