/**
 * Runs once before any test:
 * - the QEMU tests must run, never skip: when QEMU is missing this fails the whole run with the command that
 *   installs it (scripts/ensure-qemu.sh does that install when run as root);
 * - the CLI tests run the real `bin/qvm.js`, so dist/ is built from the current sources first.
 */
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  for (const tool of ['qemu-system-x86_64', 'qemu-img']) {
    try {
      execFileSync(tool, ['--version'], { stdio: 'ignore' });
    } catch {
      throw new Error(
        `${tool} is not installed; the tests run real QEMU. Install it with:\n  sudo apt-get install -y qemu-system-x86 qemu-utils\n(or run \`npm test\` as root, which installs it)`,
      );
    }
  }
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
}
