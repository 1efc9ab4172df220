import type { Context } from 'aws-lambda';
import { logger } from './logger';
import { flushMetrics } from './metrics';
import { tracer } from './tracer';

/**
 * Wraps a Lambda entry point with the per-invocation observability every function shares:
 *   - the Logger gets the Lambda context (function_request_id, cold_start, function name and memory);
 *     the X-Ray trace id is on every line already (Powertools reads it per log call);
 *   - a `## handler` subsegment with the ColdStart and Service annotations when tracing is on;
 *   - the invocation's buffered EMF metrics are flushed, whether the handler returned or threw.
 */
export function instrumented<E, R>(handler: (event: E, context?: Context) => Promise<R>) {
  return async (event: E, context?: Context): Promise<R> => {
    if (context) logger.addContext(context);
    const parent = tracer.isTracingEnabled() ? tracer.getSegment() : undefined;
    const segment = parent?.addNewSubsegment(`## ${process.env._HANDLER ?? 'handler'}`);
    if (segment) {
      tracer.setSegment(segment);
      tracer.annotateColdStart();
      tracer.addServiceNameAnnotation();
    }
    try {
      return await handler(event, context);
    } catch (err) {
      if (segment) tracer.addErrorAsMetadata(err as Error);
      throw err;
    } finally {
      flushMetrics();
      if (segment && parent) {
        segment.close();
        tracer.setSegment(parent);
      }
    }
  };
}
