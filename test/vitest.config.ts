import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: new URL('.', import.meta.url).pathname,
    include: ['**/*.test.ts'],
    exclude: ['**/node_modules/**', 'fixtures/**'],
    // GPU tests share lavapipe's threads; two forks keep the 2-core machine busy without thrashing.
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    reporters: ['default', './helpers/summary-reporter.ts'],
    testTimeout: 180_000,
    hookTimeout: 120_000,
  },
});
