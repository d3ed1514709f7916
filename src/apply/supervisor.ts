/**
 * Starting and stopping QEMU processes, for real. Everything here has a deadline; a QEMU that does not
 * answer is reported, not waited on forever.
 */

import {
  appendFileSync,
  chmodSync,
  existsSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import {
  MissingToolError,
  MonitorClosedError,
  MonitorCommandError,
  MonitorError,
  QemuProcessError,
  RuntimeDirError,
} from '../errors.js';
import { withAgent } from '../guest/agent.js';
import { formatDuration } from '../model/units.js';
import { QEMU_SYSTEM } from '../qemu/argv.js';
import { type AnyMonitor, connectMonitor } from '../qemu/monitor.js';
import { parseStatus } from '../qemu/parse/status.js';
import { QmpClient } from '../qemu/qmp.js';
import {
  ensurePrivateDir,
  type Namespace,
  runtimeRoot,
  socketFiles,
  type VmPaths,
} from '../runtime/paths.js';
import { checkPidfile, isAlive, readProcess } from '../runtime/process.js';
import { errnoText } from '../runtime/records.js';

/** How long `-daemonize` may take to hand over (it returns once the monitors' sockets exist, ~0.2 s). */
const LAUNCH_TIMEOUT_MS = 60_000;
/** After `quit`, how long the process gets to exit before it is killed (only processes qvm started). */
const QUIT_GRACE_MS = 10_000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const started = Date.now();
  while (isAlive(pid)) {
    if (Date.now() - started > timeoutMs) return false;
    // A QEMU told to quit is usually gone within a few ms: look often at first (reading /proc is cheap).
    await sleep(Date.now() - started < 250 ? 5 : 25);
  }
  return true;
}

/** Removes a pidfile and sockets left by a QEMU that is gone. Refuses while a live QEMU owns them. */
function removeStaleFiles(paths: VmPaths): void {
  if (checkPidfile(paths.pidfile).kind === 'ours') return;
  for (const file of [paths.pidfile, ...socketFiles(paths)]) rmSync(file, { force: true });
}

/** Creates (or checks) the private runtime folders of a VM, and the namespace record that names its manifest. */
export function prepareRuntimeDirs(namespace: Namespace, paths: VmPaths): void {
  ensurePrivateDir(runtimeRoot());
  ensurePrivateDir(namespace.dir);
  ensurePrivateDir(paths.dir);
  // Which manifest this namespace belongs to, so a port held by one of its VMs can be named (observe/ports.ts).
  if (!existsSync(namespace.record)) {
    try {
      writeFileSync(namespace.record, `${JSON.stringify({ source: namespace.source })}\n`, { mode: 0o600 });
    } catch (error) {
      throw new RuntimeDirError(`cannot write ${namespace.record}: ${errnoText(error)}`, { cause: error });
    }
  }
}

function logLine(paths: VmPaths, text: string): void {
  try {
    appendFileSync(paths.qemuLog, `[qvm ${new Date().toISOString()}] ${text.trimEnd()}\n`, { mode: 0o600 });
  } catch {
    // The log is a convenience; failing to write it must not fail the start.
  }
}

/**
 * Launches `qemu-system-x86_64 ARGS` (which include -daemonize and -pidfile) and returns the daemon's pid.
 * QEMU's start errors (a taken port, a locked disk, a missing snapshot) come back as a QemuProcessError
 * carrying QEMU's message. On failure nothing of the attempt is left in the runtime folder but the logs, so
 * a VM that never started does not look crashed.
 *
 * QEMU quirks: with -D, a daemonizing QEMU writes its messages, start errors included, to that file rather
 * than to stderr, and it truncates the file when it opens it. So the previous run's log is kept as
 * qemu.previous.log, and a failed start's message is read from the log when stderr is empty. -daemonize also
 * sets QEMU's umask to 027; the 0700 folder keeps others out, and the files are made 0600 once they exist.
 */
export async function launchQemu(args: string[], paths: VmPaths): Promise<number> {
  removeStaleFiles(paths);
  keepPreviousLog(paths);
  const { execa } = await import('execa');
  const result = await execa(QEMU_SYSTEM, args, {
    reject: false,
    timeout: LAUNCH_TIMEOUT_MS,
    stdin: 'ignore',
    cwd: paths.dir,
  });
  if ((result.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    throw new MissingToolError(
      `${QEMU_SYSTEM} is not installed; install it with: sudo apt-get install -y --no-install-recommends qemu-system-x86`,
    );
  }
  const stderr = String(result.stderr ?? '').trim();
  const said = stderr || readText(paths.qemuLog).trim();
  if (stderr) logLine(paths, stderr);
  if (result.failed) {
    removeStaleFiles(paths);
    const locked = /Failed to get "(?:write|read|consistent read)" lock/.test(said)
      ? lockedImage(said)
      : undefined;
    if (locked) {
      throw new QemuProcessError(`QEMU did not start: ${locked}`, [QEMU_SYSTEM, ...args], said);
    }
    const message = result.timedOut
      ? `QEMU did not finish starting within ${formatDuration(LAUNCH_TIMEOUT_MS)}`
      : said.replace(new RegExp(`^${QEMU_SYSTEM}: `, 'gm'), '') ||
        (result.cause as Error | undefined)?.message ||
        `exit code ${result.exitCode}`;
    throw new QemuProcessError(`QEMU did not start: ${message}`, [QEMU_SYSTEM, ...args], said);
  }
  const check = checkPidfile(paths.pidfile);
  if (check.kind !== 'ours') {
    removeStaleFiles(paths);
    const message = readText(paths.qemuLog)
      .trim()
      .replace(new RegExp(`^${QEMU_SYSTEM}: `, 'gm'), '');
    throw new QemuProcessError(
      `QEMU exited right after starting${message ? `: ${message}` : ` (see ${paths.qemuLog})`}`,
      [QEMU_SYSTEM, ...args],
      said,
    );
  }
  for (const file of [...socketFiles(paths), paths.serialLog, paths.qemuLog]) {
    try {
      chmodSync(file, 0o600);
    } catch {
      // not there (no serial output yet); the folder is 0700 either way
    }
  }
  logLine(paths, `started pid ${check.process.pid}: ${QEMU_SYSTEM} ${args.join(' ')}`);
  return check.process.pid;
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** QEMU truncates its -D log on start: keep the last run's messages (why it crashed, say). */
function keepPreviousLog(paths: VmPaths): void {
  const text = readText(paths.qemuLog);
  if (text.trim() === '') return;
  try {
    writeFileSync(paths.previousQemuLog, text, { mode: 0o600 });
  } catch {
    // The previous log is a convenience; a full disk shows up where it matters (the launch record).
  }
}

/**
 * QEMU says `Failed to get "write" lock` and `Is another process using the image [PATH]?` when another QEMU
 * has the disk open. Name the image and, when visible, the process.
 */
function lockedImage(stderr: string): string | undefined {
  const image = /Is another process using the image \[([^\]]+)\]/.exec(stderr)?.[1];
  if (!image) return undefined;
  return `the disk ${image} is in use by ${processUsing(image) ?? 'another process'} (QEMU locks an image while it runs)`;
}

function processUsing(file: string): string | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const info = readProcess(Number(entry));
    if (!info?.argv[0]?.includes('qemu')) continue;
    if (
      info.argv.some(
        (arg) => arg === file || arg.includes(`file=${file}`) || arg.includes(file.replace(/,/g, ',,')),
      )
    ) {
      return `QEMU pid ${info.pid}${info.argv.includes('-name') ? ` (${info.argv[info.argv.indexOf('-name') + 1]?.split(',')[0]})` : ''}`;
    }
  }
  return undefined;
}

export interface StopTarget {
  vm: string;
  socket: string;
  /** Set for processes qvm started: they may be killed as a last resort. Never for adopted VMs. */
  pid?: number;
  adopted: boolean;
  stopTimeoutMs: number;
  alreadyPoweredOff: boolean;
  /** Called with progress words: "powering off", "quitting". */
  onStep?: (step: string) => void;
  /** The VM's guest agent socket: the power-off is asked of the agent first (`guest-shutdown`). */
  agentSocket?: string;
}

export type StopOutcome = 'powered-off' | 'quit-after-timeout' | 'killed' | 'already-gone';

/**
 * Graceful stop: the ACPI power button (system_powerdown), up to stopTimeout for the guest to power off,
 * then `quit`. A process qvm started that still does not exit is killed; an adopted one is never signalled.
 * Guarantee on return: the process is gone and qvm's runtime files for it are removed.
 */
export async function stopVm(target: StopTarget, paths?: VmPaths): Promise<StopOutcome> {
  let outcome: StopOutcome = 'powered-off';
  let monitor: AnyMonitor | undefined;
  try {
    monitor = await connectMonitor(target.socket, { timeoutMs: 5000 });
  } catch (error) {
    if (!(error instanceof MonitorError)) throw error;
    if (target.pid === undefined || !isAlive(target.pid)) {
      if (paths) removeStaleFiles(paths);
      return 'already-gone';
    }
    if (target.adopted) throw error;
    // Our process, but its monitor is dead or frozen: it cannot be asked, so it is ended.
    target.onStep?.('killing (monitor does not answer)');
    await killProcess(target.pid, paths?.pidfile);
    if (paths) removeStaleFiles(paths);
    return 'killed';
  }
  try {
    if (!target.alreadyPoweredOff) {
      const poweredOff = await powerDown(monitor, target);
      if (!poweredOff) outcome = 'quit-after-timeout';
    }
    if (!monitor.closed) {
      target.onStep?.('quitting');
      try {
        await monitor.hmp('quit', { timeoutMs: 5000 });
      } catch (error) {
        // `quit` ends the process: the connection closing under it is the expected answer.
        if (!(error instanceof MonitorClosedError)) throw error;
      }
    }
  } finally {
    await monitor.close();
  }
  if (target.pid !== undefined && !(await waitForExit(target.pid, QUIT_GRACE_MS))) {
    if (target.adopted) throw new QemuProcessError(`${target.vm} did not exit after quit`, [], '');
    await killProcess(target.pid, paths?.pidfile);
    outcome = 'killed';
  }
  if (paths) removeStaleFiles(paths);
  return outcome;
}

/**
 * Asks the guest to power off, through its agent when it has one (it needs no ACPI daemon in the guest),
 * else with the power button, and waits for it. False when stopTimeout ran out first.
 */
async function powerDown(monitor: AnyMonitor, target: StopTarget): Promise<boolean> {
  const deadline = Date.now() + target.stopTimeoutMs;
  if (monitor instanceof QmpClient) {
    const shutdown = monitor
      .waitForEvent((e) => e.event === 'SHUTDOWN', target.stopTimeoutMs)
      .then(
        () => true,
        (error) => {
          // The connection closing means the process exited: powered off too.
          if (error instanceof MonitorClosedError) return true;
          return false;
        },
      );
    if (!(target.agentSocket && (await agentShutdown(target.agentSocket)))) {
      target.onStep?.('powering off (ACPI)');
      await monitor.execute('system_powerdown');
    } else {
      target.onStep?.('powering off (guest agent)');
    }
    return shutdown;
  }
  target.onStep?.('powering off (ACPI)');
  await monitor.hmp('system_powerdown');
  while (Date.now() < deadline) {
    await sleep(200);
    try {
      const status = parseStatus(await monitor.hmp('info status', { timeoutMs: 5000 }));
      if (status?.status === 'shutdown') return true;
    } catch (error) {
      if (error instanceof MonitorClosedError) return true;
      if (!(error instanceof MonitorCommandError)) throw error;
    }
  }
  return false;
}

/** `guest-shutdown` through the agent; false when there is no agent to ask (then ACPI it is). */
async function agentShutdown(socket: string): Promise<boolean> {
  try {
    await withAgent(socket, (agent) => agent.send('guest-shutdown', { mode: 'powerdown' }), {
      syncTimeoutMs: 3000,
    });
    return true;
  } catch {
    // No agent running in the guest, or it refused (no dbus in the guest: "child process has failed to
    // shutdown"): the power button still works.
    return false;
  }
}

/**
 * SIGKILL for a QEMU qvm started. The pid is checked again right before the signal: if the process ended and
 * the pid was reused, the new owner's command line does not name this VM's pidfile, and it is left alone.
 */
async function killProcess(pid: number, pidfile: string | undefined): Promise<void> {
  const info = readProcess(pid);
  if (!info || (pidfile !== undefined && !info.argv.includes(pidfile))) return;
  try {
    process.kill(pid, 'SIGCONT');
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  await waitForExit(pid, 5000);
}
