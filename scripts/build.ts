/**
 * `npm run build`: what bin/qvm.js and the tests run.
 * - dist/bundle/qvm.cjs: the CLI bundled by esbuild, dependencies included, with a source map. Node then reads
 *   one file instead of resolving and loading ~250 modules (execa alone is ~100), which was most of a
 *   one-shot command's start-up. CommonJS, so that on Node 20 bin/qvm.js can compile it with a V8 code cache
 *   (Node 22+ caches compiled code itself). Modules only a command needs stay lazy: esbuild turns their
 *   `import()` into an initialiser that runs on first use.
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
const BUNDLE = path.join(BUNDLE_DIR, 'qvm.cjs');

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
  entryPoints: ['src/cli/main.ts'],
  // Two folders below the package root, as every src/<folder>/*.ts is, so `new URL('../../package.json',
  // import.meta.url)` and the schema's URL name the same files.
  outfile: BUNDLE,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20.19',
  // A script compiled by vm.Script has no loader for import(): the few left (Node's http and https, loaded
  // at the first download) become require() too.
  supported: { 'dynamic-import': false },
  define: { 'import.meta.url': '__qvmModuleUrl' },
  banner: { js: 'var __qvmModuleUrl=require("node:url").pathToFileURL(__filename).href;' },
  // Less to parse on a run without a code cache; identifiers are kept, and stack traces name src/ files
  // through the source map (bin/qvm.js turns source maps on with QVM_DEBUG), which leaves the sources out.
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: 'linked',
  sourcesContent: false,
  logLevel: 'warning',
});
console.log(`qvm: built dist/ and ${path.relative(ROOT, BUNDLE)}`);
