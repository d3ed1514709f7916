/**
 * `npm run build`: what bin/qvm.js and the tests run.
 * - dist/bundle/qvm.cjs: the CLI bundled by esbuild, dependencies included, with a source map. Node then reads
 *   one file instead of resolving and loading ~250 modules (execa alone is ~100), which was most of a
 *   one-shot command's start-up. CommonJS, so that on Node 20 bin/qvm.js can compile it with a V8 code cache
 *   (Node 22+ caches compiled code itself). Modules only a command needs stay lazy: esbuild turns their
 *   `import()` into an initialiser that runs on first use.
 * - dist/bundle/<command>.cjs: one more bundle per command in src/cli/entries/, holding that command alone.
 *   Even lazy code costs a one-shot command: the whole file is read, and V8's code cache carries what it
 *   needs to compile every function of the file later. bin/qvm.js picks the command's own bundle when there
 *   is one.
 * - dist/<folder>/: every module compiled by tsc on its own (the tests start some of them in child
 *   processes, e.g. dist/runtime/lock.js), which also typechecks src/.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const BUNDLE_DIR = path.join(ROOT, 'dist', 'bundle');
const ENTRIES_DIR = path.join(ROOT, 'src', 'cli', 'entries');
const entryPoints = {
  qvm: 'src/cli/main.ts',
  ...Object.fromEntries(
    readdirSync(ENTRIES_DIR)
      .filter((f) => f.endsWith('.ts'))
      .map((f) => [f.slice(0, -3), path.relative(ROOT, path.join(ENTRIES_DIR, f))]),
  ),
};

execFileSync(
  process.execPath,
  [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'],
  {
    cwd: ROOT,
    stdio: 'inherit',
  },
);

/**
 * commander loads node:child_process when it is loaded, for the executable subcommands qvm never declares;
 * node:child_process brings node:net and the streams with it, which cost `qvm validate` about 2 ms. Here its
 * require becomes a spawn that loads the module on first use. The build fails if commander's line changes.
 */
const lazyCommanderChildProcess: Plugin = {
  name: 'lazy-commander-child-process',
  setup(esbuild) {
    esbuild.onLoad({ filter: /[\\/]commander[\\/]lib[\\/]command\.js$/ }, (args) => {
      const eager = "const childProcess = require('node:child_process');";
      const source = readFileSync(args.path, 'utf8');
      if (!source.includes(eager)) throw new Error(`${args.path} no longer has: ${eager}`);
      const lazy = "const childProcess = { spawn: (...a) => require('node:child_process').spawn(...a) };";
      return { contents: source.replace(eager, lazy), loader: 'js' };
    });
  },
};

rmSync(BUNDLE_DIR, { recursive: true, force: true });
await build({
  absWorkingDir: ROOT,
  entryPoints,
  // Two folders below the package root, as every src/<folder>/*.ts is, so `new URL('../../package.json',
  // import.meta.url)` and the schema's URL name the same files.
  outdir: BUNDLE_DIR,
  outExtension: { '.js': '.cjs' },
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20.19',
  // A script compiled by vm.Script has no loader for import(): the few left (Node's http and https, loaded
  // at the first download) become require() too.
  supported: { 'dynamic-import': false },
  // QVM_BUILD_ID: what caches made by one build are recognised by (runtime/file-store.ts).
  define: {
    'import.meta.url': '__qvmModuleUrl',
    QVM_BUILD_ID: JSON.stringify(`${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`),
  },
  banner: { js: 'var __qvmModuleUrl=require("node:url").pathToFileURL(__filename).href;' },
  // Less to parse on a run without a code cache; identifiers are kept, and stack traces name src/ files
  // through the source map (bin/qvm.js turns source maps on with QVM_DEBUG), which leaves the sources out.
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: 'linked',
  sourcesContent: false,
  logLevel: 'warning',
  plugins: [lazyCommanderChildProcess],
  // ASCII only (esbuild escapes the rest), so bin/qvm.js can read a bundle as latin1, not decode UTF-8.
  charset: 'ascii',
});
for (const name of Object.keys(entryPoints)) {
  const file = path.join(BUNDLE_DIR, `${name}.cjs`);
  if (readFileSync(file).some((byte) => byte > 0x7f)) throw new Error(`${file} is not ASCII`);
}
console.log(
  `qvm: built dist/ and ${Object.keys(entryPoints)
    .map((name) => path.relative(ROOT, path.join(BUNDLE_DIR, `${name}.cjs`)))
    .join(', ')}`,
);
