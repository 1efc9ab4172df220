import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'packages/*/test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two cores: integration files each start their own emulators.
    maxWorkers: 2,
    // Handlers log through Powertools; keep test output to warnings and errors.
    env: { POWERTOOLS_LOG_LEVEL: 'WARN', POWERTOOLS_SERVICE_NAME: 'payments-test' },
  },
});
