/**
 * Global setup of the tiers that run the real `bin/qvm.js` (cli, qemu, soak): dist/ (the bundle bin/qvm.js loads,
 * and the modules some tests start) is built from the current
 * sources first, once per run however many tiers ask for it.
 */
import { execFileSync } from 'node:child_process';

const BUILT = Symbol.for('qvm.test.built');

export default function setup(): void {
  const state = globalThis as { [BUILT]?: boolean };
  if (state[BUILT]) return;
  execFileSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
  state[BUILT] = true;
}
