/**
 * QEMU processes seen through /proc, for what a VM's own folder cannot tell: a QEMU of this VM running under
 * another runtime root (qvm started with another QVM_RUNTIME_DIR), and which process listens on an adopted
 * VM's monitor socket (so two entries, or an entry and a VM qvm started, are never the same QEMU).
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { isSocketIn, processWithFd, readProcess } from '../runtime/process.js';

/** Pids and argv of the QEMU processes this user can see. */
export function qemuProcesses(): { pid: number; argv: string[] }[] {
  const out: { pid: number; argv: string[] }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (!cmdline.includes('qemu-system')) continue;
    const argv = cmdline.split('\0');
    if (argv.at(-1) === '') argv.pop();
    out.push({ pid: Number(entry), argv });
  }
  return out;
}

/**
 * A QEMU started by qvm for namespace `id` and VM `vm` under a runtime root other than `root`, found by its
 * -pidfile argument (<root>/<namespace>/<vm>/qemu.pid).
 */
export function runningElsewhere(
  processes: { pid: number; argv: string[] }[],
  id: string,
  vm: string,
  root: string,
): { pid: number; root: string } | undefined {
  for (const { pid, argv } of processes) {
    const pidfile = argv[argv.indexOf('-pidfile') + 1];
    if (!argv.includes('-pidfile') || !pidfile || path.basename(pidfile) !== 'qemu.pid') continue;
    const vmDir = path.dirname(pidfile);
    const namespaceDir = path.dirname(vmDir);
    if (path.basename(vmDir) !== vm || path.basename(namespaceDir) !== id) continue;
    const otherRoot = path.dirname(namespaceDir);
    if (otherRoot === root) continue;
    const state = readProcess(pid)?.state;
    if (state && state !== 'Z' && state !== 'X') return { pid, root: otherRoot };
  }
  return undefined;
}

/** The process listening on a unix socket path, when this user can see it. */
export function socketOwner(socketPath: string): number | undefined {
  let table: string;
  try {
    table = readFileSync('/proc/net/unix', 'utf8');
  } catch {
    return undefined;
  }
  const inodes = new Set<string>();
  for (const line of table.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[7] === socketPath && fields[6]) inodes.add(fields[6]);
  }
  return inodes.size === 0 ? undefined : processWithFd(isSocketIn(inodes));
}
