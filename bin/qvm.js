#!/usr/bin/env node
// The published entry point: the CLI is bundled into dist/bundle/ by `npm run build` (scripts/build.ts).
import module from 'node:module';
import v8 from 'node:v8';

// Node 22.1+ caches compiled code between runs; one-shot commands start faster. Absent on Node 20.
module.enableCompileCache?.();

// `qvm watch` runs for days and is mostly idle: trade peak speed for memory. Lite mode (no optimizing
// compiler) and a small young generation keep it near 65 MB resident with 10 VMs instead of 80-85 MB.
// They must be set before the code that allocates is loaded.
if (process.argv[2] === 'watch') {
  v8.setFlagsFromString('--lite-mode');
  v8.setFlagsFromString('--max-semi-space-size=1');
}

// Stack traces are printed only with QVM_DEBUG (an internal error otherwise shows its message): only then
// are the bundle's source maps read, so the trace names src/ files. Reading them costs ~10% of start-up.
if (process.env.QVM_DEBUG) process.setSourceMapsEnabled(true);

const { main } = await import('../dist/bundle/main.js');
process.exitCode = await main(process.argv);
