/**
 * `npm run test:soak` (scripts/soak.sh) only: the soak test against real QEMU (test/soak), one long test that
 * `npm test` leaves out. Same set-up as the qemu tier: QEMU checked, dist/ built.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/soak/**/*.test.ts'],
    pool: 'forks',
    setupFiles: ['test/helpers/cleanup.ts'],
    globalSetup: [
      'test/helpers/setup/scratch.ts',
      'test/helpers/setup/qemu.ts',
      'test/helpers/setup/build.ts',
    ],
    testTimeout: 45 * 60_000,
    hookTimeout: 120_000,
  },
});
