/**
 * Global setup of the tiers that run real QEMU (qemu, soak): they must run, never skip. When QEMU is missing
 * this fails the whole tier with the command that installs it (`npm test` as root installs it itself).
 */
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  for (const tool of ['qemu-system-x86_64', 'qemu-img', 'qemu-io']) {
    try {
      execFileSync(tool, ['--version'], { stdio: 'ignore' });
    } catch {
      throw new Error(
        `${tool} is not installed; the QEMU tests run real QEMU. Install it with:\n  sudo apt-get install -y qemu-system-x86 qemu-utils\n(or run \`npm test\` as root, which installs it)`,
      );
    }
  }
}
