/**
 * Bare VMs started by qvm for the benchmarks that time qvm against running VMs (startup, apply, scale): a
 * private runtime root and manifest folder each, one `qvm apply` to start them, every QEMU idle before the
 * caller times anything, and `qvm destroy` plus a SIGKILL of whatever is left on clean-up (also on Ctrl-C).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { killQemusUnder, qemusUnder } from '../test/helpers/processes.js';
import { privateDir, writeVms } from '../test/helpers/watch.js';
import { type IdleReport, onCleanup, qvmRunner, timed, waitForIdle } from './lib.js';

/**
 * A VM with no guest OS: the BIOS finds nothing to boot and halts. qvm's lean device set leaves the NIC's
 * boot ROM out (iPXE would keep a core busy for seconds per VM); the minimal form also drops the VGA.
 */
export function bareVm(options: { minimal?: boolean; memory?: string; forwardPort?: number } = {}) {
  return {
    memory: options.memory ?? '32M',
    accel: 'tcg',
    stopTimeout: '1s',
    args: options.minimal ? ['-vga', 'none'] : [],
    ...(options.forwardPort ? { forwards: [{ host: options.forwardPort, guest: 22 }] } : {}),
  };
}

export interface Fleet {
  runtime: string;
  dir: string;
  file: string;
  qvm: ReturnType<typeof qvmRunner>;
  pids: number[];
  /** How long the one `qvm apply` that started them took. */
  startMs: number;
  idle: IdleReport;
  /** qvm destroy, then SIGKILL whatever still runs, then remove the folders. Safe to call twice. */
  destroy(): Promise<void>;
}

/** Starts VMS (name -> manifest entry) with one `qvm apply` and waits until they are idle. */
export async function startFleet(label: string, vms: Record<string, unknown>): Promise<Fleet> {
  const runtime = privateDir(`qvmb${label}-`);
  const dir = mkdtempSync(path.join(tmpdir(), `qvm-bench-${label}-`));
  const file = path.join(dir, 'm.yaml');
  const qvm = qvmRunner(runtime, dir);
  let destroyed = false;
  const destroy = async () => {
    if (destroyed) return;
    destroyed = true;
    try {
      await qvm(['destroy', '-f', 'm.yaml'], undefined, 120_000);
    } catch (error) {
      console.error(`qvm destroy (${label}) failed: ${(error as Error).message.split('\n')[0]}`);
    }
    await killQemusUnder(runtime);
    rmSync(runtime, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  };
  onCleanup(destroy);
  writeVms(file, vms);
  const count = Object.keys(vms).length;
  const startMs = await timed(() => qvm(['apply', '-f', 'm.yaml']));
  const pids = qemusUnder(runtime);
  if (pids.length !== count) throw new Error(`${label}: ${pids.length} QEMUs running, expected ${count}`);
  const idle = await waitForIdle(pids);
  return { runtime, dir, file, qvm, pids, startMs, idle, destroy };
}

/** `qvm plan`/`apply` printed that nothing differs. */
export const noChanges = (out: string) => out.startsWith('No changes.');
