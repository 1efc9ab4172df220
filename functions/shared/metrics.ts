import { Metrics as PowertoolsMetrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Metrics } from '../core/ports';

/**
 * One EMF metrics buffer per function instance. Namespace and the `service` dimension come from
 * POWERTOOLS_METRICS_NAMESPACE / POWERTOOLS_SERVICE_NAME; every metric also carries `stage`.
 * Handlers flush it once per invocation (`flushMetrics`, called by `instrumented`).
 */
export const metrics = new PowertoolsMetrics({ defaultDimensions: { stage: process.env.STAGE || 'local' } });

/**
 * The core's Metrics port over Powertools. A count without extra dimensions is buffered (values of one
 * name are aggregated into the invocation's single EMF line); one with dimensions (outcome, state) is
 * written at once as its own EMF line, because a buffer shares one dimension set.
 */
export const serviceMetrics: Metrics = {
  count(name, value = 1, dimensions) {
    if (dimensions && Object.keys(dimensions).length > 0) {
      const single = metrics.singleMetric();
      single.addDimensions({ ...dimensions });
      single.addMetric(name, MetricUnit.Count, value);
      return;
    }
    metrics.addMetric(name, MetricUnit.Count, value);
  },
};

/** Writes the invocation's buffered metrics, if any (Powertools warns on an empty flush). */
export function flushMetrics(): void {
  if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
}
