#!/usr/bin/env node
// The published entry point: the compiled CLI lives in dist/ (`npm run build`).
import module from 'node:module';

// Node 22.1+ caches compiled code between runs; one-shot commands start faster. Absent on Node 20.
module.enableCompileCache?.();

const { main } = await import('../dist/cli/main.js');
process.exitCode = await main(process.argv);
