import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Real QEMU processes are started by many tests; forks keep each file's processes and signal handlers apart.
    pool: 'forks',
    globalSetup: ['test/helpers/global-setup.ts'],
    setupFiles: ['test/helpers/cleanup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
