/**
 * Facts about processes from /proc: what a pid runs (argv), when it started, whether it is alive. qvm trusts
 * a pidfile only when the pid's command line names that very pidfile, so a pid reused by another program is
 * never mistaken for a VM, and never signalled.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export interface ProcessInfo {
  pid: number;
  argv: string[];
  /** Wall-clock start time, in ms since the epoch. */
  startedAtMs: number;
  /** The state letter from /proc/PID/stat: R, S, D, T (stopped), Z (zombie), ... */
  state: string;
}

/** Clock ticks per second for /proc/PID/stat times; 100 on every Linux QEMU runs on. */
const CLOCK_TICKS = 100;
let bootTimeMs: number | undefined;

function bootTime(): number {
  if (bootTimeMs === undefined) {
    const btime = /^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'));
    bootTimeMs = btime ? Number(btime[1]) * 1000 : 0;
  }
  return bootTimeMs;
}

/** What /proc says of a pid (argv, state, start time); undefined when there is no such process. */
export function readProcess(pid: number): ProcessInfo | undefined {
  if (!Number.isInteger(pid) || pid <= 1) return undefined;
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    if (argv.at(-1) === '') argv.pop();
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may contain spaces or parentheses: fields start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const state = fields[0] ?? '?';
    const startTicks = Number(fields[19]);
    return { pid, argv, state, startedAtMs: bootTime() + (startTicks * 1000) / CLOCK_TICKS };
  } catch {
    return undefined;
  }
}

/** Whether the pid runs (a zombie does not). */
export function isAlive(pid: number): boolean {
  const info = readProcess(pid);
  return info !== undefined && info.state !== 'Z' && info.state !== 'X';
}

function readPidfile(pidfile: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(pidfile, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export type PidfileCheck =
  | { kind: 'none' }
  /** The pidfile names a live QEMU that was started with this very pidfile. */
  | { kind: 'ours'; process: ProcessInfo }
  /** Left by a QEMU that died without cleaning up (SIGKILL, crash), or the pid now runs something else. */
  | { kind: 'stale'; pid: number; reason: string };

/** Whether a pidfile names a live QEMU started with that very pidfile, a stale pid, or nothing. */
export function checkPidfile(pidfile: string): PidfileCheck {
  const pid = readPidfile(pidfile);
  if (pid === undefined) return { kind: 'none' };
  const info = readProcess(pid);
  if (!info || info.state === 'Z' || info.state === 'X')
    return { kind: 'stale', pid, reason: `process ${pid} has exited` };
  const i = info.argv.indexOf('-pidfile');
  if (i < 0 || info.argv[i + 1] !== pidfile) {
    return {
      kind: 'stale',
      pid,
      reason: `pid ${pid} now belongs to another program (${info.argv[0] ?? 'unknown'})`,
    };
  }
  return { kind: 'ours', process: info };
}

/**
 * The first process with an open file descriptor that `match` accepts (given the fd's /proc path), when this
 * user may look at that process's descriptors. A descriptor that closes while we look simply does not match.
 */
export function processWithFd(match: (fdPath: string) => boolean): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue; // gone, or not ours to look at
    }
    for (const fd of fds) {
      try {
        if (match(`/proc/${entry}/fd/${fd}`)) return Number(entry);
      } catch {
        // closed meanwhile
      }
    }
  }
  return undefined;
}

/** A `processWithFd` matcher: the descriptor is one of these sockets (inode numbers as /proc/net lists them). */
export function isSocketIn(inodes: Set<string>): (fdPath: string) => boolean {
  return (fdPath) => {
    const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(fdPath));
    return m !== null && inodes.has(m[1]!);
  };
}
