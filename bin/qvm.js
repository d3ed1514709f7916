#!/usr/bin/env node
// The published entry point: the compiled CLI lives in dist/ (`npm run build`).
import { main } from '../dist/cli/main.js';

process.exitCode = await main(process.argv);
