/**
 * What the `qvm watch` and warm-start acceptance tests (and their benchmarks) need around the real CLI: a
 * `qvm watch --json` child whose NDJSON events can be awaited, manifests written the ways editors write them,
 * the demo guest checked from the host (HTTP, uptime, serial console), and QEMU processes found and killed by
 * their runtime folder through /proc. No vitest import: the benchmarks use this module too.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { QVM_BIN } from './cli.js';
import { freePort } from './qemu.js';

export const GUEST_KERNEL = fileURLToPath(new URL('../../guest/out/vmlinuz', import.meta.url));
export const GUEST_INITRD = fileURLToPath(new URL('../../guest/out/initrd.gz', import.meta.url));
/** A line of the demo guest's index page. */
export const GUEST_HELLO = 'hello from the qvm demo guest';

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A short private folder (0700): qvm refuses a runtime root open to others, and socket paths must stay short. */
/** N different ports that nothing listens on now (freePort() until N distinct ones came back). */
export async function freePortsDistinct(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

export function privateDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  chmodSync(dir, 0o700);
  return dir;
}

// ---------------------------------------------------------------------------------------------------------
// Manifests

/** The demo guest (guest/README.md) as a manifest entry, with a 64M qcow2 disk for snapshots. */
export function demoVm(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    memory: '256M',
    accel: 'tcg',
    kernel: GUEST_KERNEL,
    initrd: GUEST_INITRD,
    append: 'console=ttyS0 quiet panic=-1',
    nic: 'virtio-net-pci',
    disk: { path: `disks/${name}.qcow2`, size: '64M' },
    stopTimeout: '20s',
    ...extra,
  };
}

/**
 * A VM without a guest: the BIOS finds nothing to boot and idles. The NIC's boot ROM is left out, or iPXE
 * spends seconds of CPU on a network boot.
 */
export function bareVm(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { memory: '32M', accel: 'tcg', stopTimeout: '1s', args: ['-global', 'e1000.romfile='], ...extra };
}

/** `forwards:` entries from host ports to the guest's port 80. */
export function toPort80(...hostPorts: number[]): { host: number; guest: number }[] {
  return hostPorts.map((host) => ({ host, guest: 80 }));
}

export function manifestText(vms: Record<string, unknown>): string {
  return stringify({ vms });
}

/** Writes the manifest in place (truncate and write), as most programs save. */
export function writeVms(file: string, vms: Record<string, unknown>): void {
  writeFileSync(file, manifestText(vms));
}

/** Saves the way many editors do: a temporary file renamed over the manifest (a new inode). */
export function writeVmsByRename(file: string, vms: Record<string, unknown>): void {
  const temporary = `${file}.tmp`;
  writeFileSync(temporary, manifestText(vms));
  renameSync(temporary, file);
}

// ---------------------------------------------------------------------------------------------------------
// `qvm watch --json` as a child process

/** One NDJSON event as watch printed it, plus when this process read it (Date.now()). */
export interface WatchEventRecord {
  time: string;
  event: string;
  receivedAt: number;
  // biome-ignore lint/suspicious/noExplicitAny: events differ by kind; tests read the fields they expect
  [field: string]: any;
}

export interface WatchExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Date.now() when the process ended. */
  at: number;
}

const watches = new Set<WatchProcess>();

export class WatchProcess {
  readonly events: WatchEventRecord[] = [];
  /** Lines of stdout that are not JSON (there should be none). */
  readonly garbage: string[] = [];
  stderr = '';
  readonly exited: Promise<WatchExit>;
  exit: WatchExit | undefined;
  private readonly listeners = new Set<() => void>();

  constructor(readonly child: ChildProcess) {
    let buffer = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      buffer += chunk;
      for (let newline = buffer.indexOf('\n'); newline >= 0; newline = buffer.indexOf('\n')) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (!line.trim()) continue;
        try {
          this.events.push({ ...JSON.parse(line), receivedAt: Date.now() });
        } catch {
          this.garbage.push(line);
        }
      }
      this.notify();
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exit = { code, signal, at: Date.now() };
        watches.delete(this);
        resolve(this.exit);
        this.notify();
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The number of events so far: pass it as `from` to look only at what comes after this moment. */
  mark(): number {
    return this.events.length;
  }

  since(from: number): WatchEventRecord[] {
    return this.events.slice(from);
  }

  /** The first event at index >= from that matches, now or when it comes; fails after timeoutMs. */
  waitForEvent(
    match: (e: WatchEventRecord) => boolean,
    timeoutMs: number,
    from = 0,
    what = 'a matching event',
  ): Promise<WatchEventRecord> {
    return new Promise((resolve, reject) => {
      let next = from;
      const check = (): boolean => {
        for (; next < this.events.length; next++) {
          const event = this.events[next]!;
          if (match(event)) {
            finish();
            resolve(event);
            return true;
          }
        }
        if (this.exit) {
          finish();
          reject(
            new Error(`qvm watch exited (${JSON.stringify(this.exit)}) before ${what}${this.describe(from)}`),
          );
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no ${what} within ${timeoutMs} ms${this.describe(from)}`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.listeners.delete(listener);
      };
      const listener = () => {
        check();
      };
      this.listeners.add(listener);
      check();
    });
  }

  /** The first `pass-finished` with a pass number >= pass. */
  waitForPassEnd(pass: number, timeoutMs: number): Promise<WatchEventRecord> {
    return this.waitForEvent(
      (e) => e.event === 'pass-finished' && e.pass >= pass,
      timeoutMs,
      0,
      `end of pass ${pass}`,
    );
  }

  /** The number of the latest pass that started, 0 before the first. */
  lastPass(): number {
    const started = this.events.filter((e) => e.event === 'pass-started');
    return started.at(-1)?.pass ?? 0;
  }

  /** Sends SIGTERM (or another signal) and resolves when the process has ended. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<WatchExit> {
    if (!this.exit) this.child.kill(signal);
    return this.exited;
  }

  private describe(from: number): string {
    const events = this.events
      .slice(Math.max(0, from - 3))
      .map(({ receivedAt: _r, time: _t, ...e }) => JSON.stringify(e));
    return `; events since then:\n  ${events.join('\n  ')}${this.stderr ? `\nstderr: ${this.stderr}` : ''}`;
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }
}

/** Starts `qvm watch ARGS` (the subcommand is added) in CWD with QVM_RUNTIME_DIR and NO_COLOR set. */
export function startWatch(args: string[], options: { cwd: string; runtime: string }): WatchProcess {
  const child = spawn(process.execPath, [QVM_BIN, 'watch', ...args], {
    cwd: options.cwd,
    env: { ...process.env, QVM_RUNTIME_DIR: options.runtime, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const watch = new WatchProcess(child);
  watches.add(watch);
  return watch;
}

/** SIGKILLs every watch child started here that is still running, and waits for them to end. */
export async function killWatches(): Promise<void> {
  const running = [...watches];
  for (const w of running) w.child.kill('SIGKILL');
  await Promise.all(running.map((w) => w.exited));
}

process.on('exit', () => {
  for (const w of watches) w.child.kill('SIGKILL');
});

// ---------------------------------------------------------------------------------------------------------
// The guest, from the host

/** One GET with a deadline for the whole exchange (slirp accepts the connection before the guest listens). */
export function httpGet(url: string, timeoutMs = 300): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { agent: false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        body += chunk;
      });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      response.on('error', reject);
    });
    request.setTimeout(timeoutMs, () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    request.on('error', reject);
  });
}

/** Polls URL (300 ms per request, `stepMs` between) until it answers 200; returns the body and when. */
export async function waitForHttp(
  url: string,
  timeoutMs: number,
  stepMs = 25,
): Promise<{ body: string; at: number }> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no attempt';
  for (;;) {
    try {
      const { status, body } = await httpGet(url, 300);
      if (status === 200) return { body, at: Date.now() };
      last = `HTTP ${status}`;
    } catch (error) {
      last = (error as Error).message;
    }
    if (Date.now() > deadline)
      throw new Error(`${url} did not answer within ${timeoutMs} ms (last: ${last})`);
    await sleep(stepMs);
  }
}

export const url = (port: number, page = '/') => `http://127.0.0.1:${port}${page}`;

/** The first number of the guest's /proc/uptime, served by /cgi-bin/uptime. */
export function parseUptime(body: string): number {
  const uptime = Number.parseFloat(body.trim().split(/\s+/)[0] ?? '');
  if (!Number.isFinite(uptime)) throw new Error(`not an uptime: ${JSON.stringify(body)}`);
  return uptime;
}

export async function guestUptime(port: number, timeoutMs = 10_000): Promise<number> {
  return parseUptime((await waitForHttp(url(port, '/cgi-bin/uptime'), timeoutMs)).body);
}

/** What a TCP connect to 127.0.0.1:PORT gets. */
export function tcpConnect(port: number, timeoutMs = 1000): Promise<'refused' | 'connected' | 'timeout'> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = (outcome: 'refused' | 'connected' | 'timeout') => {
      socket.destroy();
      resolve(outcome);
    };
    socket.setTimeout(timeoutMs, () => done('timeout'));
    socket.once('connect', () => done('connected'));
    socket.once('error', (error: NodeJS.ErrnoException) =>
      done(error.code === 'ECONNREFUSED' ? 'refused' : 'timeout'),
    );
  });
}

/**
 * Types LINE on the guest's serial console (a unix socket): presses Enter until the shell's prompt shows,
 * then sends the line and waits for its echo.
 */
export async function typeOnSerial(socketPath: string, line: string, timeoutMs = 15_000): Promise<string> {
  const socket = net.connect(socketPath);
  let seen = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    seen += chunk;
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  try {
    const deadline = Date.now() + timeoutMs;
    const until = async (what: string, text: () => boolean, poke?: () => void) => {
      let pokedAt = 0;
      while (!text()) {
        if (Date.now() > deadline)
          throw new Error(`serial console: no ${what} within ${timeoutMs} ms; got ${JSON.stringify(seen)}`);
        if (poke && Date.now() - pokedAt > 1000) {
          poke();
          pokedAt = Date.now();
        }
        await sleep(20);
      }
    };
    await until(
      'prompt',
      () => seen.includes('qvm-guest#'),
      () => socket.write('\n'),
    );
    const before = seen.length;
    socket.write(`${line}\n`);
    await until(`echo of ${JSON.stringify(line)}`, () => seen.slice(before).includes(line));
    return seen;
  } finally {
    socket.end();
    socket.destroy();
  }
}

/** Host ports of the tcp forwards in `info usernet` output. */
export function usernetHostPorts(text: string): number[] {
  const ports: number[] = [];
  for (const line of text.split('\n')) {
    const row = /^\s*TCP\[HOST_FORWARD\]\s+-?\d+\s+\S+\s+(\d+)\s/.exec(line);
    if (row) ports.push(Number(row[1]));
  }
  return ports.sort((a, b) => a - b);
}

/** `qvm status`'s table as records keyed by header names (cells cut at the header's column starts). */
export function statusTable(text: string): Record<string, string>[] {
  const [header = '', ...lines] = text.split('\n');
  const columns = [...header.matchAll(/\S+/g)].map((m) => ({ name: m[0], start: m.index }));
  return lines
    .filter((line) => line.trim() !== '' && !line.startsWith('! '))
    .map((line) =>
      Object.fromEntries(
        columns.map((c, i) => [c.name, line.slice(c.start, columns[i + 1]?.start ?? line.length).trim()]),
      ),
    );
}

/** Milliseconds in a duration as qvm prints it: `850ms`, `2.4s`, `1m30s`. */
export function parsePrintedDuration(text: string): number {
  let total = 0;
  let matched = '';
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    matched += m[0];
    total += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  }
  if (matched !== text) throw new Error(`not a duration: ${JSON.stringify(text)}`);
  return total;
}

// ---------------------------------------------------------------------------------------------------------
// Processes, through /proc

export function cmdline(pid: number): string[] {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    if (argv.at(-1) === '') argv.pop();
    return argv;
  } catch {
    return [];
  }
}

/** Whether PID runs (a zombie does not). */
export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Running QEMU processes whose command line names something under DIR. */
export function qemusUnder(dir: string): number[] {
  const inside = `${path.resolve(dir)}/`;
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const argv = cmdline(pid);
    if (!argv[0]?.includes('qemu-system')) continue;
    if (argv.some((arg) => arg.includes(inside)) && isRunning(pid)) pids.push(pid);
  }
  return pids;
}

/** SIGKILLs (after SIGCONT) every QEMU under DIR and waits until they are gone. */
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
  const deadline = Date.now() + 5000;
  while (pids.some(isRunning) && Date.now() < deadline) await sleep(20);
  return pids;
}

/** `<runtime>/<namespace>/<vm>` folders of a VM name, in every namespace of a runtime root. */
function vmDirs(runtime: string, vm: string): string[] {
  return readdirSync(runtime, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => path.join(runtime, e.name, vm))
    .filter((dir) => existsSync(dir));
}

/** The pid of the QEMU running VM under RUNTIME (its pidfile, checked against /proc), if one runs. */
export function vmPid(runtime: string, vm: string): number | undefined {
  for (const dir of vmDirs(runtime, vm)) {
    const pidfile = path.join(dir, 'qemu.pid');
    let pid: number;
    try {
      pid = Number.parseInt(readFileSync(pidfile, 'utf8').trim(), 10);
    } catch {
      continue;
    }
    const argv = cmdline(pid);
    if (argv[argv.indexOf('-pidfile') + 1] === pidfile && isRunning(pid)) return pid;
  }
  return undefined;
}

/** `<runtime>/<namespace>/<vm>/serial.sock`. */
export function serialSocket(runtime: string, vm: string): string {
  const found = vmDirs(runtime, vm)
    .map((dir) => path.join(dir, 'serial.sock'))
    .filter((s) => existsSync(s));
  if (found.length !== 1)
    throw new Error(`expected one serial.sock for ${vm} under ${runtime}, found ${found}`);
  return found[0]!;
}

/** Resident memory of a process in bytes (VmRSS), undefined once it is gone. */
export function residentBytes(pid: number): number | undefined {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------------
// A qvm command timed against the guest

export interface PolledRun {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  /** Date.now() when the command was started. */
  startedAt: number;
  /** Each stdout line with when it was read. */
  lines: { at: number; text: string }[];
  /** Every 200 answer of PAGE while the command ran (and until the first one, if later), with when it came. */
  answers: { at: number; body: string }[];
}

/**
 * Runs `qvm ARGS` and, at the same time, polls http://127.0.0.1:PORT/PAGE (a request every 20 ms, 300 ms
 * each) until the command has ended and the guest has answered at least once (or untilMs has passed).
 */
export async function runWhilePolling(
  args: string[],
  options: { cwd: string; runtime: string; port: number; page?: string; untilMs?: number },
): Promise<PolledRun> {
  const startedAt = Date.now();
  const child = spawn(process.execPath, [QVM_BIN, ...args], {
    cwd: options.cwd,
    env: { ...process.env, QVM_RUNTIME_DIR: options.runtime, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let partial = '';
  const lines: PolledRun['lines'] = [];
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    stdout += chunk;
    partial += chunk;
    for (let newline = partial.indexOf('\n'); newline >= 0; newline = partial.indexOf('\n')) {
      lines.push({ at: Date.now(), text: partial.slice(0, newline) });
      partial = partial.slice(newline + 1);
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderr += chunk;
  });
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) =>
    child.on('exit', (code) => {
      exitCode = code;
      resolve();
    }),
  );
  const answers: PolledRun['answers'] = [];
  const deadline = startedAt + (options.untilMs ?? 60_000);
  const target = url(options.port, options.page ?? '/');
  // A new request every 20 ms without waiting for the last: while the guest boots, slirp holds connections
  // open until their 300 ms deadline, and a poller that waited would miss the moment the guest starts serving.
  const inFlight = new Set<Promise<void>>();
  while ((exitCode === undefined || answers.length === 0) && Date.now() < deadline) {
    const request: Promise<void> = httpGet(target, 300)
      .then(
        ({ status, body }) => {
          if (status === 200) answers.push({ at: Date.now(), body });
        },
        () => {}, // not answering yet
      )
      .finally(() => inFlight.delete(request));
    inFlight.add(request);
    await sleep(20);
  }
  await Promise.all(inFlight);
  answers.sort((a, b) => a.at - b.at);
  await exited;
  return { exitCode: exitCode ?? null, stdout, stderr, startedAt, lines, answers };
}
