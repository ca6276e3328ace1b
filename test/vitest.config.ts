import { defaultServerConditions } from 'vite';
import { defineConfig } from 'vitest/config';

// @fewstep/* resolve to their TypeScript sources (the packages' `fewstep-source` export condition), so the
// suite runs without a build; the package test checks the built dist/ as users install it.
const conditions = ['fewstep-source', ...defaultServerConditions];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
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
