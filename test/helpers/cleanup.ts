import { afterAll } from 'vitest';
import { killAllStarted } from './qemu.js';

// Whatever a test file started, it does not outlive the file, pass or fail.
afterAll(() => killAllStarted());
