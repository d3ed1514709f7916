/**
 * Processes seen through /proc, for the real-QEMU tests and the benchmarks: command lines and states, the
 * QEMUs under a folder (found by the paths on their command line) and killing them, and polling until
 * something holds. No vitest import: the benchmarks use this module too (through watch.ts).
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls CHECK every 25 ms until it holds; fails naming WHAT (and what `detail` says then) after TIMEOUTMS. */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  detail: () => string = () => '',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms ${detail()}`.trim());
    await sleep(25);
  }
}

/** The argv of PID from /proc/PID/cmdline, [] when the process is gone. */
export function cmdline(pid: number): string[] {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    if (argv.at(-1) === '') argv.pop();
    return argv;
  } catch {
    return [];
  }
}

/** The state letter of /proc/PID/stat (R, S, T, Z...), undefined when the process is gone. */
export function procState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

/** Whether PID runs (a zombie does not: it only waits to be reaped). */
export function isRunning(pid: number): boolean {
  const state = procState(pid);
  return state !== undefined && state !== 'Z' && state !== 'X';
}

function qemuPids(match: (argv: string[]) => boolean): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const argv = cmdline(pid);
    if (!argv[0]?.includes('qemu-system')) continue;
    if (match(argv) && isRunning(pid)) pids.push(pid);
  }
  return pids;
}

/** Running QEMU processes started with exactly this -pidfile: how many QEMUs a VM has. */
export function qemusWithPidfile(pidfile: string): number[] {
  return qemuPids((argv) => argv.includes(pidfile));
}

/** Running QEMU processes whose command line names a file under DIR (a runtime root, a VM's folder...). */
export function qemusUnder(dir: string): number[] {
  // DIR/ and not DIR: /tmp/qvmrt-ab must not match /tmp/qvmrt-abc's VMs.
  const inside = `${path.resolve(dir)}/`;
  return qemuPids((argv) => argv.some((arg) => arg.includes(inside)));
}

/** SIGKILLs (after SIGCONT, for frozen ones) every QEMU under DIR; returns their pids once they are gone. */
export async function killQemusUnder(dir: string): Promise<number[]> {
  const pids = qemusUnder(dir);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGCONT');
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await until('QEMUs killed', () => !pids.some(isRunning), 10_000);
  return pids;
}

/** SIGKILL one process and wait until it is gone (or a zombie). */
export async function killHard(pid: number): Promise<void> {
  process.kill(pid, 'SIGKILL');
  await until(`pid ${pid} gone after SIGKILL`, () => !isRunning(pid), 10_000);
}
