import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'packages/*/test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two cores: integration files each start their own emulators.
    maxWorkers: 2,
    // Quiet by default: in-process handlers log nothing (TEST_LOGS=1 shows their warnings and errors,
    // and streams the local stack's lines, see test/helpers/test-log.ts), emit no EMF and no traces (the
    // e2e layer reads the local stack's metrics), and the SDK's notice that it will need Node 22 is off.
    env: {
      POWERTOOLS_LOG_LEVEL: process.env.TEST_LOGS === '1' ? 'WARN' : 'SILENT',
      POWERTOOLS_SERVICE_NAME: 'payments-test',
      POWERTOOLS_METRICS_DISABLED: 'true',
      POWERTOOLS_TRACE_ENABLED: 'false',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    },
  },
});
