import { Tracer } from '@aws-lambda-powertools/tracer';

/**
 * One X-Ray tracer per function instance (service name from POWERTOOLS_SERVICE_NAME). It is a no-op
 * outside Lambda and when POWERTOOLS_TRACE_ENABLED=false, which the local stack sets: there is no
 * X-Ray daemon there.
 */
export const tracer = new Tracer();
