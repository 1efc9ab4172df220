import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'packages/*/test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two cores: integration files each start their own emulators.
    maxWorkers: 2,
    // Handlers log through Powertools; keep test output to warnings and errors. In-process handlers
    // emit no EMF and no traces (the e2e layer reads the local stack's metrics), and the SDK's notice
    // that it will need Node 22 is printed once per process otherwise.
    env: {
      POWERTOOLS_LOG_LEVEL: 'WARN',
      POWERTOOLS_SERVICE_NAME: 'payments-test',
      POWERTOOLS_METRICS_DISABLED: 'true',
      POWERTOOLS_TRACE_ENABLED: 'false',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    },
  },
});
