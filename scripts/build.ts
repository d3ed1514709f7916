/**
 * `npm run build`: what bin/qvm.js and the tests run.
 * - dist/bundle/: the CLI bundled by esbuild, dependencies included, with source maps. Node then reads a few
 *   files instead of resolving and loading ~250 modules (execa alone is ~100), which was most of a one-shot
 *   command's start-up. Each command's code is its own chunk, loaded by the `import()` that runs it.
 * - dist/<folder>/: every module compiled by tsc on its own (the tests start some of them in child
 *   processes, e.g. dist/runtime/lock.js), which also typechecks src/.
 */
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const BUNDLE_DIR = path.join(ROOT, 'dist', 'bundle');

execFileSync(
  process.execPath,
  [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'],
  {
    cwd: ROOT,
    stdio: 'inherit',
  },
);

rmSync(BUNDLE_DIR, { recursive: true, force: true });
await build({
  absWorkingDir: ROOT,
  entryPoints: { main: 'src/cli/main.ts' },
  // Every output file sits two folders below the package root, as every src/<folder>/*.ts does, so
  // `new URL('../../package.json', import.meta.url)` and the schema's URL name the same files.
  outdir: BUNDLE_DIR,
  chunkNames: '[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20.19',
  // Less to parse on every run; identifiers are kept, and stack traces name src/ files through the source
  // maps (bin/qvm.js turns them on), which leave the sources themselves out.
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: 'linked',
  sourcesContent: false,
  // CommonJS dependencies (picocolors, commander's core, the proxy agents) call require() for Node's own
  // modules, which an ES module bundle only has through createRequire.
  banner: {
    js: "import { createRequire as __qvmCreateRequire } from 'node:module'; const require = __qvmCreateRequire(import.meta.url);",
  },
  logLevel: 'warning',
});
console.log(`qvm: built dist/ and ${path.relative(ROOT, BUNDLE_DIR)}/`);
