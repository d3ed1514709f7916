/**
 * Runs once before any test:
 * - the QEMU tests must run, never skip: when QEMU is missing this fails the whole run with the command that
 *   installs it (scripts/ensure-qemu.sh does that install when run as root);
 * - the CLI tests run the real `bin/qvm.js`, so dist/ (the bundle it loads, and the modules some tests start)
 *   is built from the current sources first.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export default function setup(): void {
  // A safety net: a test that forgets its own roots still never touches the user's /run/qvm or state folder.
  const scratch = mkdtempSync(path.join(tmpdir(), 'qvm-test-'));
  chmodSync(scratch, 0o700);
  process.env.QVM_RUNTIME_DIR ??= path.join(scratch, 'run');
  process.env.QVM_STATE_DIR ??= path.join(scratch, 'state');
  for (const tool of ['qemu-system-x86_64', 'qemu-img']) {
    try {
      execFileSync(tool, ['--version'], { stdio: 'ignore' });
    } catch {
      throw new Error(
        `${tool} is not installed; the tests run real QEMU. Install it with:\n  sudo apt-get install -y qemu-system-x86 qemu-utils\n(or run \`npm test\` as root, which installs it)`,
      );
    }
  }
  execFileSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
}
