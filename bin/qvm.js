#!/usr/bin/env node
// The published entry point: the CLI is bundled by `npm run build` (scripts/build.ts) into dist/bundle/:
// qvm.cjs holds every command, and the commands a person waits on most (validate, plan, apply, status,
// monitor, destroy) also have a bundle of their own, a third to four fifths of its size, which is all such a
// command loads. This file is CommonJS (bin/package.json says so): Node's ES module loader costs a one-shot
// command 3-4 ms more.
'use strict';
const {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} = require('node:fs');
const Module = require('node:module');
const { homedir } = require('node:os');
const path = require('node:path');
const vm = require('node:vm');

const command = process.argv[2];
/** How many runs of a command add to its code cache (see loadBundle). */
const GENERATIONS = 4;
const BUNDLE = bundleFor(command);

// `qvm watch` runs for days and is mostly idle: trade peak speed for memory. Lite mode (no optimizing
// compiler) and a small young generation keep it near 65 MB resident with 10 VMs instead of 80-85 MB.
// They must be set before the code that allocates is loaded.
// (node:v8 is loaded only here: it costs a one-shot command 2 ms.)
if (command === 'watch') {
  const v8 = require('node:v8');
  v8.setFlagsFromString('--lite-mode');
  v8.setFlagsFromString('--max-semi-space-size=1');
}

// Stack traces are printed only with QVM_DEBUG (an internal error otherwise shows its message): only then
// are source maps read, so the trace names src/ files. Reading them costs ~8% of a one-shot command.
if (process.env.QVM_DEBUG) process.setSourceMapsEnabled(true);

let saveCodeCache;
const { main } = loadBundle();
main(process.argv).then((code) => {
  process.exitCode = code;
  saveCodeCache?.();
});

/** The command's own bundle when it has one, else the whole CLI. */
function bundleFor(name) {
  const dir = path.join(__dirname, '..', 'dist', 'bundle');
  if (name && /^[a-z][a-z-]{0,19}$/.test(name)) {
    const own = path.join(dir, `${name}.cjs`);
    if (name !== 'qvm' && existsSync(own)) return own;
  }
  return path.join(dir, 'qvm.cjs');
}

/**
 * The bundle, compiled with a cache of the code V8 compiled on an earlier run of the same command: parsing
 * and compiling qvm was a third of a one-shot command's start-up. Node 22.1+ keeps such a cache itself
 * (Module.enableCompileCache); on Node 20, qvm compiles the bundle with vm.Script and V8's cached data, and
 * writes the cache after a run that had none (or had one V8 refused), so it holds the functions that command
 * ran. One command takes several paths (`qvm monitor` on a QMP or an HMP socket, `qvm apply` starting VMs
 * or finding nothing to do), and a function missing from the cache is compiled on every run (20% of
 * `qvm monitor --socket` when the cache came from the other kind of socket): the cache is written again
 * after each of the first GENERATIONS runs that used it, and V8 then writes what it had plus what that run
 * compiled. Without a usable cache folder qvm simply runs without a cache.
 */
function loadBundle() {
  const dir = codeCacheDir();
  // watch changes V8's flags (a cache would be refused) and runs for days; QVM_DEBUG wants Node's own loader,
  // which applies the source map; so does coverage (NODE_V8_COVERAGE, set by npm test for the qvm processes
  // it starts): its positions must be the bundle's own, which the wrapper below would shift.
  if (
    Module.enableCompileCache ||
    !dir ||
    command === 'watch' ||
    process.env.QVM_DEBUG ||
    process.env.NODE_V8_COVERAGE
  ) {
    if (dir) Module.enableCompileCache?.(dir);
    return require(BUNDLE);
  }
  // The bundles are ASCII (scripts/build.ts checks): read as latin1, a copy, not a UTF-8 decode (0.5 ms).
  const source = readFileSync(BUNDLE, 'latin1');
  // V8 checks its version, its flags and the source's length, not its content: the key adds the bundle's
  // modification time, so a rebuilt bundle never runs code compiled from the previous one.
  const key = `${process.version} ${source.length} ${statSync(BUNDLE).mtimeMs} ${BUNDLE}`;
  const file = path.join(
    dir,
    `${/^[a-z-]{1,20}$/.test(command ?? '') ? command : 'other'}-${hash(BUNDLE)}.bin`,
  );
  // The file: the key, a space, the generation (how many runs made it), a newline, V8's data.
  let cachedData;
  let generation = 0;
  try {
    const data = readFileSync(file);
    const newline = data.indexOf(10);
    const header = data.subarray(0, newline).toString();
    if (newline > 0 && header.startsWith(`${key} `)) {
      generation = Number.parseInt(header.slice(key.length + 1), 10) || 0;
      cachedData = data.subarray(newline + 1);
    }
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
    Module.createRequire(BUNDLE),
    loaded,
    BUNDLE,
    path.dirname(BUNDLE),
  );
  const rejected = !cachedData || script.cachedDataRejected;
  if (rejected || generation < GENERATIONS) {
    saveCodeCache = () => {
      try {
        const temporary = `${file}.${process.pid}.tmp`;
        const header = `${key} ${rejected ? 1 : generation + 1}\n`;
        writeFileSync(temporary, Buffer.concat([Buffer.from(header), script.createCachedData()]), {
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
