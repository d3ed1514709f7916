/**
 * What the reliability tests need around the real CLI: a private sandbox per test file (temp folder, runtime
 * root 0700), helper processes (port holders, lock holders, `sleep`, qvm runs in the background) that are
 * always killed, tmpfs mounts that are always unmounted, and QEMU processes found and counted through /proc.
 * Nothing here mocks qvm or QEMU. A test file calls `sandbox()` once and `cleanup()` in afterAll.
 *
 * The process helpers come from helpers/processes.ts, the VM and status helpers from helpers/env.ts (shared
 * with the reconcile, watch and warm-start tests); they are re-exported here for the reliability tests.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { namespaceFor } from '../../src/runtime/paths.js';
import { type CliResult, QVM_BIN, qvm, qvmEnv } from '../helpers/cli.js';
import { manifestText, type StatusRow, statusRows } from '../helpers/env.js';
import { killQemusUnder, until } from '../helpers/processes.js';
import { removeDir } from '../helpers/qemu.js';

export { bareVm, listeningAddresses, statusTable } from '../helpers/env.js';
export {
  isRunning,
  killHard,
  killQemusUnder,
  procState,
  qemusUnder,
  qemusWithPidfile,
  until,
} from '../helpers/processes.js';
export { QVM_BIN };

// ---------------------------------------------------------------------------------------------------------
// Helper processes: always killed in cleanup

export interface Helper {
  child: ChildProcess;
  pid: number;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with how the process ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Set once it has ended. */
  exit?: { code: number | null; signal: NodeJS.Signals | null };
}

const helpers = new Set<Helper>();

export function spawnHelper(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
  cwd?: string,
): Helper {
  const child = spawn(command, args, {
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(cwd ? { cwd } : {}),
  });
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
  });
  if (child.pid === undefined) throw new Error(`could not start ${command}`);
  const helper: Helper = {
    child,
    pid: child.pid,
    stdout: () => out,
    stderr: () => err,
    exited: new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        helper.exit = { code, signal };
        resolve({ code, signal });
      });
    }),
  };
  helpers.add(helper);
  return helper;
}

export async function killHelpers(): Promise<void> {
  const running = [...helpers].filter((h) => !h.exit);
  for (const h of running) h.child.kill('SIGKILL');
  await Promise.all(running.map((h) => h.exited));
  helpers.clear();
}

process.on('exit', () => {
  for (const h of helpers) if (!h.exit) h.child.kill('SIGKILL');
});

/** A program listening on 127.0.0.1:PORT (a node child), resolved once the port is taken. */
export async function holdPort(port: number, address = '127.0.0.1'): Promise<Helper> {
  // `node` from PATH, so the holder's command line reads "node -e ..." as a user would see it.
  const holder = spawnHelper('node', [
    '-e',
    `require('net').createServer().listen(${port}, '${address}', () => console.log('listening'))`,
  ]);
  await until(`node holding port ${port}`, () => holder.stdout().includes('listening') || !!holder.exit);
  if (holder.exit) throw new Error(`the port holder exited: ${holder.stderr()}`);
  return holder;
}

/** A QEMU started by someone other than qvm: `qemu-system-x86_64 -nodefaults`, 32M, no display, plus ARGS. */
export function spawnQemu(args: string[]): Helper {
  return spawnHelper('qemu-system-x86_64', [
    '-accel',
    'tcg',
    '-m',
    '32',
    '-display',
    'none',
    '-nodefaults',
    ...args,
  ]);
}

const DIST = path.resolve(path.dirname(QVM_BIN), '..', 'dist');

/**
 * A process holding the namespace lock of MANIFEST the way a running `qvm apply` does: it imports qvm's own
 * lock module (dist/runtime/lock.js), takes the lock for 'apply', prints "locked", and sleeps.
 */
export async function holdLock(manifest: string, runtime: string): Promise<Helper> {
  const lock = pathToFileURL(path.join(DIST, 'runtime/lock.js')).href;
  const paths = pathToFileURL(path.join(DIST, 'runtime/paths.js')).href;
  const script = [
    `import { acquireLock } from ${JSON.stringify(lock)};`,
    `import { namespaceFor } from ${JSON.stringify(paths)};`,
    `await acquireLock(namespaceFor(process.env.QVM_TEST_MANIFEST), 'apply', { wait: false });`,
    `console.log('locked');`,
    'setInterval(() => {}, 1 << 30);',
  ].join('\n');
  const holder = spawnHelper(process.execPath, ['--input-type=module', '-e', script], {
    ...qvmEnv(runtime),
    QVM_TEST_MANIFEST: manifest,
  });
  await until('lock holder locked', () => holder.stdout().includes('locked') || !!holder.exit);
  if (holder.exit) throw new Error(`the lock holder exited: ${holder.stderr()}`);
  return holder;
}

// ---------------------------------------------------------------------------------------------------------
// Root: some faults can only be made as root. Those tests fail, saying so, when not run as root; never skip.

/** Fails the calling test with a message naming what needs root, unless this process runs as root. */
export function requireRoot(what: string): void {
  if (process.getuid?.() === 0) return;
  throw new Error(
    `this test needs root: it ${what}. Run the tests as root (sudo npm test); it is never skipped, so that a fault it covers is not silently left untested`,
  );
}

// ---------------------------------------------------------------------------------------------------------
// tmpfs mounts: always unmounted in cleanup

const mounts: string[] = [];

/** Mounts a tmpfs with OPTIONS (e.g. "size=64k", "ro") on a new folder TARGET. */
export function mountTmpfs(target: string, options: string): string {
  requireRoot(`mounts a tmpfs (${options}) to make a full or read-only folder`);
  mkdirSync(target, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', target]);
  mounts.push(target);
  return target;
}

export function remount(target: string, options: string): void {
  requireRoot(`remounts a tmpfs (${options})`);
  execFileSync('mount', ['-o', `remount,${options}`, target]);
}

export function unmountAll(): void {
  for (const target of mounts.splice(0).reverse()) {
    try {
      execFileSync('umount', [target], { stdio: 'ignore' });
    } catch {
      // busy: a process still holds a file there; detach it now, the kernel frees it when they are gone
      execFileSync('umount', ['-l', target], { stdio: 'ignore' });
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Manifests and the sandbox

/** Writes `{vms}` as YAML to FILE (making its folder) and returns FILE. */
export function writeManifest(file: string, vms: Record<string, unknown>): string {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, manifestText(vms));
  return file;
}

export interface Sandbox {
  /** The temp folder: manifests, disks and the runtime root live under it. */
  root: string;
  /** QVM_RUNTIME_DIR for every qvm run of this file (0700). */
  runtime: string;
  /** `qvm ARGS` with this runtime root, from CWD (default: root). */
  run(args: string[], cwd?: string): Promise<CliResult>;
  /** `qvm ARGS` in the background, for killing it or watching what it says while it runs. */
  spawnQvm(args: string[], cwd?: string): Helper;
  /** The folder of VM's runtime files for MANIFEST. */
  vmDir(manifest: string, vm: string): string;
  pidfile(manifest: string, vm: string): string;
  /** The pid in VM's pidfile. */
  readPid(manifest: string, vm: string): number;
  /** Kills every QEMU and helper, unmounts, removes the temp folder: pass or fail. */
  cleanup(): Promise<void>;
}

/** A private temp folder under /tmp (short: unix socket paths) with a runtime root inside it, mode 0700. */
export function sandbox(prefix: string): Sandbox {
  const root = mkdtempSync(path.join('/tmp', `${prefix}-`));
  const runtime = path.join(root, 'rt');
  mkdirSync(runtime, { mode: 0o700 });
  chmodSync(runtime, 0o700);
  const vmDir = (manifest: string, vm: string) => path.join(namespaceFor(manifest, runtime).dir, vm);
  const pidfile = (manifest: string, vm: string) => path.join(vmDir(manifest, vm), 'qemu.pid');
  return {
    root,
    runtime,
    run: (args, cwd = root) => qvm(args, { cwd, env: { QVM_RUNTIME_DIR: runtime } }),
    spawnQvm: (args, cwd = root) => spawnHelper(process.execPath, [QVM_BIN, ...args], qvmEnv(runtime), cwd),
    vmDir,
    pidfile,
    readPid: (manifest, vm) => Number.parseInt(readFileSync(pidfile(manifest, vm), 'utf8').trim(), 10),
    async cleanup() {
      await killHelpers();
      await killQemusUnder(root);
      unmountAll();
      removeDir(root);
    },
  };
}

/**
 * The first qvm command in a runtime root probes KVM (a few seconds) and caches the answer there: do it once
 * up front, so timed assertions measure qvm and not the probe.
 */
export async function warmUp(box: Sandbox): Promise<void> {
  const file = writeManifest(path.join(box.root, 'warm', 'm.yaml'), {});
  const r = await box.run(['status', '-f', file]);
  if (r.exitCode !== 0) throw new Error(`qvm status failed while warming up: ${r.stderr}`);
}

/** `qvm status -o json` of MANIFEST in BOX, parsed; fails when the command does. */
export function statusJson(box: Sandbox, manifest: string): Promise<StatusRow[]> {
  return statusRows(box.run, manifest);
}

/** A TCP port on 127.0.0.1 that nothing listens on now (distinct from the ones handed out before). */
const handedOut = new Set<number>();
export async function freshPort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

/** `qemu-img info` of an image (force-share, so it works on an image a running QEMU holds). */
export function imageInfo(file: string): { format: string; virtualSize: number } {
  const info = JSON.parse(
    execFileSync('qemu-img', ['info', '-U', '--output=json', file], { encoding: 'utf8' }),
  );
  return { format: info.format, virtualSize: info['virtual-size'] };
}

/** Whether a text looks like a stack trace (qvm prints none for what a user can cause). */
export function hasStackTrace(text: string): boolean {
  return /^\s+at .+[(:]\d+/m.test(text) || text.includes('internal error');
}
