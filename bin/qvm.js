#!/usr/bin/env node
// The published entry point: the compiled CLI lives in dist/ (`npm run build`).
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

const { main } = await import('../dist/cli/main.js');
process.exitCode = await main(process.argv);
