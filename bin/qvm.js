#!/usr/bin/env node
// The published entry point: the CLI is bundled into dist/bundle/qvm.cjs by `npm run build` (scripts/build.ts).
import { lstatSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import module from 'node:module';
import { homedir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';

const BUNDLE = fileURLToPath(new URL('../dist/bundle/qvm.cjs', import.meta.url));
const command = process.argv[2];

// `qvm watch` runs for days and is mostly idle: trade peak speed for memory. Lite mode (no optimizing
// compiler) and a small young generation keep it near 65 MB resident with 10 VMs instead of 80-85 MB.
// They must be set before the code that allocates is loaded.
if (command === 'watch') {
  v8.setFlagsFromString('--lite-mode');
  v8.setFlagsFromString('--max-semi-space-size=1');
}

// Stack traces are printed only with QVM_DEBUG (an internal error otherwise shows its message): only then
// are source maps read, so the trace names src/ files. Reading them costs ~8% of a one-shot command.
if (process.env.QVM_DEBUG) process.setSourceMapsEnabled(true);

let saveCodeCache;
const { main } = loadBundle();
process.exitCode = await main(process.argv);
saveCodeCache?.();

/**
 * The bundle, compiled with a cache of the code V8 compiled on an earlier run of the same command: parsing
 * and compiling qvm was a third of a one-shot command's start-up. Node 22.1+ keeps such a cache itself
 * (module.enableCompileCache); on Node 20, qvm compiles the bundle with vm.Script and V8's cached data, and
 * writes the cache after a run that had none (or had one V8 refused), so it holds the functions that command
 * ran. Without a usable cache folder qvm simply runs without a cache.
 */
function loadBundle() {
  const dir = codeCacheDir();
  const require = module.createRequire(import.meta.url);
  // watch changes V8's flags (a cache would be refused) and runs for days; QVM_DEBUG wants Node's own loader,
  // which applies the source map; so does coverage (NODE_V8_COVERAGE, set by npm test for the qvm processes
  // it starts): its positions must be the bundle's own, which the wrapper below would shift.
  if (
    module.enableCompileCache ||
    !dir ||
    command === 'watch' ||
    process.env.QVM_DEBUG ||
    process.env.NODE_V8_COVERAGE
  ) {
    if (dir) module.enableCompileCache?.(dir);
    return require(BUNDLE);
  }
  const source = readFileSync(BUNDLE, 'utf8');
  // V8 checks its version, its flags and the source's length, not its content: the key adds the bundle's
  // modification time, so a rebuilt bundle never runs code compiled from the previous one.
  const key = `${process.version} ${source.length} ${statSync(BUNDLE).mtimeMs} ${BUNDLE}\n`;
  const file = path.join(
    dir,
    `${/^[a-z-]{1,20}$/.test(command ?? '') ? command : 'other'}-${hash(BUNDLE)}.bin`,
  );
  let cachedData;
  try {
    const data = readFileSync(file);
    if (data.subarray(0, Buffer.byteLength(key)).toString() === key)
      cachedData = data.subarray(Buffer.byteLength(key));
  } catch {
    // no cache yet
  }
  // The wrapper Node's CommonJS loader puts around a module.
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: BUNDLE,
    ...(cachedData ? { cachedData } : {}),
  });
  const loaded = { exports: {} };
  script.runInThisContext()(
    loaded.exports,
    module.createRequire(BUNDLE),
    loaded,
    BUNDLE,
    path.dirname(BUNDLE),
  );
  if (!cachedData || script.cachedDataRejected) {
    saveCodeCache = () => {
      try {
        const temporary = `${file}.${process.pid}.tmp`;
        writeFileSync(temporary, Buffer.concat([Buffer.from(key), script.createCachedData()]), {
          mode: 0o600,
        });
        renameSync(temporary, file); // atomic: a concurrent qvm reads the old cache or the new one
      } catch {
        // a full or read-only disk: the next run compiles again
      }
    };
  }
  return loaded.exports;
}

/**
 * QVM_CACHE_DIR (or ~/.cache/qvm)/code, created private. Compiled code is code: a folder that another user
 * owns or can write is never used.
 */
function codeCacheDir() {
  const { QVM_CACHE_DIR, XDG_CACHE_HOME } = process.env;
  const root =
    QVM_CACHE_DIR ||
    (XDG_CACHE_HOME ? path.join(XDG_CACHE_HOME, 'qvm') : path.join(homedir(), '.cache', 'qvm'));
  if (!path.isAbsolute(root)) return undefined;
  const dir = path.join(root, 'code');
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const stat = lstatSync(dir);
    if (!stat.isDirectory() || stat.uid !== process.getuid() || (stat.mode & 0o022) !== 0) return undefined;
    return dir;
  } catch {
    return undefined;
  }
}

/** A short name for a path (two qvm installs keep their caches apart). */
function hash(text) {
  let h = 5381;
  for (let i = 0; i < text.length; i++) h = ((h * 33) ^ text.charCodeAt(i)) >>> 0;
  return h.toString(36);
}
