/**
 * Global setup of every tier: one private scratch folder per run, removed when the run ends.
 * - QVM_RUNTIME_DIR, QVM_STATE_DIR and QVM_CACHE_DIR point into it, a safety net for a test that forgets its own roots: no test
 *   ever reads or writes the user's /run/qvm or state folder.
 * - TMPDIR points into it too, so every temp folder a test makes (os.tmpdir()) lives there. A test killed by its
 *   timeout skips its own clean-up; the teardown below still kills the QEMUs started from the scratch folder and
 *   removes it, so runs never pile up folders (or disks) in /tmp.
 * Needs nothing installed.
 */
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** Pids of the processes whose command line names something under `dir` (QEMUs, qvm watchers, helpers). */
function processesUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`${dir}/`)) pids.push(pid);
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

const SCRATCH = Symbol.for('qvm.test.scratch');

export default function setup(): void {
  // Every tier lists this setup, and vitest may tear a tier down while others still run: one folder for the
  // whole run, made by the first tier, removed when the vitest process exits.
  const state = globalThis as { [SCRATCH]?: string };
  if (state[SCRATCH]) return;
  const scratch = mkdtempSync(path.join(tmpdir(), 'qvm-test-'));
  state[SCRATCH] = scratch;
  chmodSync(scratch, 0o700);
  process.env.QVM_RUNTIME_DIR ??= path.join(scratch, 'run');
  process.env.QVM_STATE_DIR ??= path.join(scratch, 'state');
  // The image cache and the CLI's code cache too: a run never fills the user's ~/.cache/qvm.
  process.env.QVM_CACHE_DIR ??= path.join(scratch, 'cache');
  process.env.TMPDIR = scratch;
  process.once('exit', () => {
    for (const pid of processesUnder(scratch)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    try {
      rmSync(scratch, { recursive: true, force: true });
    } catch (error) {
      // A file system a test mounted and left behind (EBUSY): say where, never fail the run over it.
      console.warn(`could not remove the test scratch folder ${scratch}: ${(error as Error).message}`);
    }
  });
}
