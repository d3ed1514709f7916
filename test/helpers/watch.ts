/**
 * What the `qvm watch` and warm-start acceptance tests (and their benchmarks) need around the real CLI: a
 * `qvm watch --json` child whose NDJSON events can be awaited, manifests written the ways editors write them,
 * the demo guest checked from the host (HTTP, uptime, serial console), and QEMU processes found and killed by
 * their runtime folder through /proc. No vitest import: the benchmarks use this module too.
 *
 * The guest, manifest and HTTP helpers it shares with the reconcile tests come from env.ts, the process
 * helpers from processes.ts; both are re-exported here for the watch and warm-start tests and the benchmarks.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { QVM_BIN, qvmEnv } from './cli.js';
import { httpGet, manifestText, url } from './env.js';
import { cmdline, isRunning, sleep } from './processes.js';
import { freePort } from './qemu.js';

export {
  bareVm,
  demoVm,
  GUEST_HELLO,
  guestUptime,
  httpGet,
  manifestText,
  parseUptime,
  privateDir,
  statusTable,
  tcpConnect,
  url,
  waitForHttp,
} from './env.js';
export { isRunning, killQemusUnder, sleep } from './processes.js';

/** N different ports that nothing listens on now (freePort() until N distinct ones came back). */
export async function freePortsDistinct(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

// ---------------------------------------------------------------------------------------------------------
// Manifests

/** `forwards:` entries from host ports to the guest's port 80. */
export function toPort80(...hostPorts: number[]): { host: number; guest: number }[] {
  return hostPorts.map((host) => ({ host, guest: 80 }));
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
    env: { ...process.env, ...qvmEnv(options.runtime), NO_COLOR: '1' },
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

/**
 * Types LINE on the guest's serial console (a unix socket): presses Enter until the shell's prompt shows,
 * then sends the line and waits for its echo.
 */
export function typeOnSerial(socketPath: string, line: string, timeoutMs = 15_000): Promise<string> {
  return typeOnSerialUntil(socketPath, line, (after) => after.includes(line), timeoutMs);
}

/**
 * Types LINE on the guest's serial console once its prompt shows, then waits until what came after the line
 * was sent satisfies DONE; returns that.
 */
async function typeOnSerialUntil(
  socketPath: string,
  line: string,
  done: (after: string) => boolean,
  timeoutMs: number,
): Promise<string> {
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
    await until(`the answer to ${JSON.stringify(line)}`, () => done(seen.slice(before)));
    return seen.slice(before);
  } finally {
    socket.end();
    socket.destroy();
  }
}

/**
 * Runs COMMAND in the guest's serial shell and returns what it printed (CR stripped). The output is framed by
 * markers the shell computes (`$((1+1))`), so the echo of the typed line is never taken for output.
 */
export async function runOnSerial(socketPath: string, command: string, timeoutMs = 30_000): Promise<string> {
  const seen = await typeOnSerialUntil(
    socketPath,
    `echo QVM-B$((1+1)); ${command}; echo QVM-E$((2+2))`,
    (text) => /QVM-B2\r?\n[\s\S]*QVM-E4/.test(text),
    timeoutMs,
  );
  const output = /QVM-B2\r?\n([\s\S]*?)QVM-E4/.exec(seen)![1]!;
  return output.replace(/\r/g, '');
}

/**
 * What tells one boot of the guest from another: where the kernel (KASLR) and the modules /init loads were
 * put, drawn at random while the guest boots and then fixed for its life. The same after a start means the
 * guest resumed (a snapshot or a saved state restored its memory); different means it booted. (Neither the
 * kernel's boot_id, drawn when first read, nor PID 1's memory map, redrawn when /init execs busybox init
 * after the guest is ready, stays fixed from the moment a warm snapshot is taken.)
 */
export async function guestBoot(serialSocketPath: string): Promise<string> {
  const text = await runOnSerial(
    serialSocketPath,
    'grep " _stext$" /proc/kallsyms; cut -d" " -f1,6 /proc/modules',
  );
  const lines = text.trim().split('\n');
  if (lines.length < 2 || !/ _stext$/.test(lines[0]!))
    throw new Error(`not a boot fingerprint: ${JSON.stringify(text)}`);
  return lines.join('; ');
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

// ---------------------------------------------------------------------------------------------------------
// Processes, through /proc

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
    env: { ...process.env, ...qvmEnv(options.runtime), NO_COLOR: '1' },
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
