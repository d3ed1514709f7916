/**
 * The test tiers, each with only the set-up it needs:
 * - unit: pure logic (planner, renderer, executor with a recording fake, parsers, manifest checks). Needs no
 *   QEMU and no build; `npm run test:unit` runs it in seconds.
 * - property: the fast-check properties of the validator, planner and executor (QVM_FUZZ_RUNS cases each:
 *   1,000 here, 10,000 in `npm run test:soak`). No QEMU, no build.
 * - cli: the real bin/qvm.js without QEMU (validate, init, completion, colours) and the npm package packed and
 *   installed: builds dist/ first.
 * - qemu: real qemu-system-x86_64 processes (test/qemu, test/reliability): checks QEMU is installed, builds.
 * `npm test` (scripts/test.sh) runs every tier with coverage of src/, the qvm child processes included.
 */
import { defineConfig } from 'vitest/config';

const PROPERTY = 'test/reliability/fuzz-*.test.ts';

export default defineConfig({
  test: {
    // Real QEMU processes are started by many tests; forks keep each file's processes and signal handlers apart.
    pool: 'forks',
    setupFiles: ['test/helpers/child-coverage.ts', 'test/helpers/cleanup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    coverage: {
      provider: 'v8',
      include: ['src/**/*.ts'],
      // The in-process part; scripts/coverage.mjs adds the qvm child processes and writes the summary.
      reporter: ['json'],
      reportsDirectory: 'coverage/vitest',
    },
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          globalSetup: ['test/helpers/setup/scratch.ts'],
        },
      },
      {
        extends: true,
        test: { name: 'property', include: [PROPERTY], globalSetup: ['test/helpers/setup/scratch.ts'] },
      },
      {
        extends: true,
        test: {
          name: 'cli',
          include: ['test/cli/**/*.test.ts', 'test/package/**/*.test.ts'],
          globalSetup: ['test/helpers/setup/scratch.ts', 'test/helpers/setup/build.ts'],
        },
      },
      {
        extends: true,
        test: {
          name: 'qemu',
          include: ['test/qemu/**/*.test.ts', 'test/reliability/**/*.test.ts'],
          exclude: [PROPERTY],
          globalSetup: [
            'test/helpers/setup/scratch.ts',
            'test/helpers/setup/qemu.ts',
            'test/helpers/setup/build.ts',
          ],
        },
      },
    ],
  },
});
