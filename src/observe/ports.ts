/**
 * Host ports: is one free, and if not, who holds it. Before starting anything, the plan checks the ports its
 * forwards need, so a taken port is a located plan error naming the holder instead of a failed start.
 * The holder is found the way `ss -p` does: the socket's inode in /proc/net/{tcp,udp}, then the process whose
 * fd points at it. A holder that is another qvm VM is named by VM and manifest.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Proto } from '../model/forward.js';
import { dgram } from '../runtime/builtins.js';
import { namespaceRecord } from '../runtime/paths.js';
import { isSocketIn, processWithFd, readProcess } from '../runtime/process.js';

export type PortCheck =
  | { free: true }
  | {
      free: false;
      holder: string;
      /** Set when the holder is a VM qvm started: its runtime namespace folder and name. */
      vm?: { name: string; namespaceDir: string };
    };

/** Tries to bind the port as QEMU would. */
export function checkPort(proto: Proto, address: string, port: number): Promise<PortCheck> {
  return new Promise((resolve) => {
    const taken = (error: NodeJS.ErrnoException) => {
      if (error.code === 'EADDRINUSE') resolve({ free: false, ...findHolder(proto, port) });
      else if (error.code === 'EADDRNOTAVAIL')
        resolve({ free: false, holder: `${address} is not an address of this machine` });
      else if (error.code === 'EACCES')
        resolve({ free: false, holder: 'binding it needs privileges (ports below 1024)' });
      else resolve({ free: false, holder: error.message });
    };
    if (proto === 'udp') {
      const socket = dgram().createSocket('udp4');
      socket.once('error', (error) => {
        socket.close();
        taken(error as NodeJS.ErrnoException);
      });
      socket.bind(port, address, () => socket.close(() => resolve({ free: true })));
      return;
    }
    const server = net.createServer();
    server.once('error', taken);
    // exclusive: a free port here means QEMU can bind it too.
    server.listen({ port, host: address, exclusive: true }, () =>
      server.close(() => resolve({ free: true })),
    );
  });
}

/** Who holds a port: a VM of some manifest, a program with its pid, or "another program". */
function findHolder(
  proto: Proto,
  port: number,
): { holder: string; vm?: { name: string; namespaceDir: string } } {
  const pid = holderPid(proto, port);
  if (pid === undefined) return { holder: 'another program (not visible to this user)' };
  const info = readProcess(pid);
  if (!info) return { holder: `process ${pid}` };
  const vm = qvmVmOf(info.argv);
  if (vm) {
    return {
      holder: `VM ${vm.vm} of ${vm.manifest} (pid ${pid})`,
      vm: { name: vm.vm, namespaceDir: vm.namespaceDir },
    };
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: a command line may hold newlines; keep the message on one line
  const command = info.argv.join(' ').replace(/[\u0000-\u001f\u007f]+/g, ' ');
  return { holder: `pid ${pid} (${command.length > 80 ? `${command.slice(0, 77)}...` : command})` };
}

function socketInodes(proto: Proto, port: number): Set<string> {
  const inodes = new Set<string>();
  for (const table of proto === 'tcp' ? ['tcp', 'tcp6'] : ['udp', 'udp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1];
      const state = fields[3];
      const inode = fields[9];
      if (!local || !inode) continue;
      const localPort = Number.parseInt(local.split(':')[1] ?? '', 16);
      // TCP: listening sockets (0A); UDP: bound sockets (07).
      if (localPort === port && (proto === 'udp' ? state === '07' : state === '0A') && inode !== '0')
        inodes.add(inode);
    }
  }
  return inodes;
}

function holderPid(proto: Proto, port: number): number | undefined {
  const inodes = socketInodes(proto, port);
  return inodes.size === 0 ? undefined : processWithFd(isSocketIn(inodes));
}

/** A QEMU started by qvm: its VM name and manifest, from its -pidfile path and the namespace record. */
export function qvmVmOf(argv: string[]): { vm: string; manifest: string; namespaceDir: string } | undefined {
  const i = argv.indexOf('-pidfile');
  const pidfile = i >= 0 ? argv[i + 1] : undefined;
  if (!pidfile || path.basename(pidfile) !== 'qemu.pid') return undefined;
  const vmDir = path.dirname(pidfile);
  const namespaceDir = path.dirname(vmDir);
  try {
    const record = JSON.parse(readFileSync(namespaceRecord(namespaceDir), 'utf8')) as {
      source?: string;
    };
    return { vm: path.basename(vmDir), manifest: record.source ?? namespaceDir, namespaceDir };
  } catch {
    return undefined;
  }
}
