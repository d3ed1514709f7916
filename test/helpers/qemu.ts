/**
 * Real QEMU processes for tests. Every process started here is registered and killed when its test file
 * ends (cleanup.ts), and on exit of the test worker, even when a test fails, so no QEMU outlives the run.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';

const started = new Set<number>();

export function registerPid(pid: number): void {
  started.add(pid);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Kills (SIGCONT first, for frozen ones, then SIGKILL) every QEMU this test process started. */
export function killAllStarted(): void {
  for (const pid of started) {
    try {
      process.kill(pid, 'SIGCONT');
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
    started.delete(pid);
  }
}

process.on('exit', killAllStarted);

/** A short private temp folder (unix socket paths are limited to about 108 bytes). */
export function tempDir(prefix = 'qvmt-'): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface TestVm {
  dir: string;
  pid: number;
  qmp: string;
  hmp: string;
  disk: string | undefined;
  /** SIGKILL and wait until the process is gone. */
  kill(): Promise<void>;
}

export interface TestVmOptions {
  /** Attach a fresh 16M qcow2 disk (needed for savevm). Default true. */
  disk?: boolean;
  /** hostfwd rules for `-netdev user,id=net0`. */
  forwards?: string[];
  extraArgs?: string[];
  memoryMiB?: number;
}

/**
 * A bare VM (no guest OS: the CPU runs the BIOS and idles) with a QMP and an HMP socket, started the way the
 * classic recipe does: -daemonize, so the sockets exist when this returns.
 */
export async function startBareVm(options: TestVmOptions = {}): Promise<TestVm> {
  const dir = tempDir();
  const qmp = path.join(dir, 'qmp.sock');
  const hmp = path.join(dir, 'mon.sock');
  const pidfile = path.join(dir, 'qemu.pid');
  let disk: string | undefined;
  if (options.disk ?? true) {
    disk = path.join(dir, 'disk.qcow2');
    execFileSync('qemu-img', ['create', '-f', 'qcow2', disk, '16M'], { stdio: 'ignore' });
  }
  const hostfwd = (options.forwards ?? []).map((f) => `,hostfwd=${f}`).join('');
  const args = [
    '-accel',
    'tcg',
    '-m',
    String(options.memoryMiB ?? 64),
    '-display',
    'none',
    '-daemonize',
    '-pidfile',
    pidfile,
    '-qmp',
    `unix:${qmp},server=on,wait=off`,
    '-monitor',
    `unix:${hmp},server,nowait`,
    '-netdev',
    `user,id=net0${hostfwd}`,
    '-device',
    'e1000,netdev=net0',
    ...(disk ? ['-drive', `file=${disk},format=qcow2,if=ide`] : []),
    ...(options.extraArgs ?? []),
  ];
  await execa('qemu-system-x86_64', args, { timeout: 20_000 });
  const pid = Number.parseInt(readFileSync(pidfile, 'utf8').trim(), 10);
  registerPid(pid);
  return {
    dir,
    pid,
    qmp,
    hmp,
    disk,
    kill: async () => {
      try {
        process.kill(pid, 'SIGCONT');
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
      await waitUntil(() => !isAlive(pid), 5000);
      started.delete(pid);
    },
  };
}

export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  stepMs = 20,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Reads a fixture captured from real QEMU. */
export function fixture(name: string): string {
  return readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8');
}
