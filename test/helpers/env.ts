/**
 * The surroundings of a real-QEMU acceptance test of the reconciler: a private runtime root per test file,
 * manifests written to disk, the demo guest, and the checks a user would make from the host (HTTP GETs,
 * ports, /proc). Nothing here mocks qvm or QEMU.
 *
 * The guest, manifest, HTTP and status helpers here also serve watch.ts (the watch and warm-start tests and
 * the benchmarks) and reliability/support.ts, so no vitest import. Process helpers live in processes.ts.
 */
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import type { StatusRow } from '../../src/cli/status.js';
import { type CliResult, qvm } from './cli.js';
import { cmdline, sleep } from './processes.js';
import { tempDir } from './qemu.js';

export { cmdline, isRunning, killQemusUnder, qemusUnder, until } from './processes.js';
/** A row of `qvm status -o json`: the type qvm itself prints. */
export type { StatusRow };

export const GUEST_KERNEL = fileURLToPath(new URL('../../guest/out/vmlinuz', import.meta.url));
export const GUEST_INITRD = fileURLToPath(new URL('../../guest/out/initrd.gz', import.meta.url));
/** A line of the demo guest's index page. */
export const GUEST_HELLO = 'hello from the qvm demo guest';

/** A short private folder (0700): qvm refuses a runtime root open to others; socket paths must stay short. */
export function privateDir(prefix: string): string {
  const dir = tempDir(prefix);
  chmodSync(dir, 0o700);
  return dir;
}

/** A private folder for QVM_RUNTIME_DIR. */
export function runtimeDir(): string {
  return privateDir('qvmrt-');
}

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
 * A VM with no guest OS: the BIOS finds nothing to boot and idles. Cheap, but nothing answers the ACPI power
 * button, so a graceful stop quits after the short stopTimeout. The NIC's boot ROM is left out, or iPXE would
 * spend seconds of CPU trying a network boot.
 */
export function bareVm(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    memory: '32M',
    accel: 'tcg',
    stopTimeout: '1s',
    args: ['-global', 'virtio-net-pci.romfile='],
    ...extra,
  };
}

/** A manifest of these VMs, as YAML. */
export function manifestText(vms: Record<string, unknown>): string {
  return stringify({ vms });
}

/** Writes `{vms}` as YAML to DIR/NAME (m.yaml by default) and returns the file's path. */
export function writeManifest(dir: string, vms: Record<string, unknown>, name = 'm.yaml'): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, name);
  writeFileSync(file, manifestText(vms));
  return file;
}

/** qvm with a runtime root, run from the manifest's folder (the manifest is passed with -f by the caller). */
export function qvmIn(runtime: string, cwd: string) {
  return (args: string[], input?: string): Promise<CliResult> =>
    qvm(args, { cwd, env: { QVM_RUNTIME_DIR: runtime }, ...(input !== undefined ? { input } : {}) });
}

/**
 * The rows of `qvm status -o json` (a qvm/v1 StatusList) through RUN (qvmIn(...) or a sandbox's run), parsed;
 * fails when the command does or prints another kind of document.
 */
export async function statusRows(
  run: (args: string[]) => Promise<CliResult>,
  file: string,
): Promise<StatusRow[]> {
  const r = await run(['status', '-f', file, '-o', 'json']);
  if (r.exitCode !== 0) throw new Error(`qvm status failed (${r.exitCode}): ${r.stderr}`);
  const list = JSON.parse(r.stdout) as { apiVersion: string; kind: string; items: StatusRow[] };
  if (list.apiVersion !== 'qvm/v1' || list.kind !== 'StatusList')
    throw new Error(`qvm status -o json printed ${list.apiVersion} ${list.kind}, not qvm/v1 StatusList`);
  return list.items;
}

export async function statusOf(
  run: (args: string[]) => Promise<CliResult>,
  file: string,
  vm: string,
): Promise<StatusRow> {
  const row = (await statusRows(run, file)).find((r) => r.name === vm);
  if (!row) throw new Error(`qvm status does not list ${vm}`);
  return row;
}

export const url = (port: number, page = '/') => `http://127.0.0.1:${port}${page}`;

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

/** The first number of the guest's /proc/uptime (seconds), served by /cgi-bin/uptime. */
export function parseUptime(body: string): number {
  const uptime = Number.parseFloat(body.trim().split(/\s+/)[0] ?? '');
  if (!Number.isFinite(uptime)) throw new Error(`not an uptime: ${JSON.stringify(body)}`);
  return uptime;
}

/** The guest's uptime in seconds, asked over HTTP on host PORT. */
export async function guestUptime(port: number, timeoutMs = 10_000): Promise<number> {
  return parseUptime((await waitForHttp(url(port, '/cgi-bin/uptime'), timeoutMs)).body);
}

/** What a TCP connect to 127.0.0.1:PORT gets: refused (nothing listens), connected, or nothing in time. */
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

/** Listening IPv4 TCP sockets on PORT from /proc/net/tcp, as hex local addresses (0100007F = 127.0.0.1). */
export function listeningAddresses(port: number): string[] {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const addresses: string[] = [];
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    const local = fields[1];
    if (!local || fields[3] !== '0A') continue;
    const [address, localPort] = local.split(':');
    if (localPort === hexPort && address) addresses.push(address);
  }
  return addresses;
}

/** A VM's runtime folder, read from its QEMU's -pidfile argument: <root>/<namespace>/<vm>/qemu.pid. */
export function vmDirOf(pid: number): string {
  const argv = cmdline(pid);
  const pidfile = argv[argv.indexOf('-pidfile') + 1];
  if (!pidfile || !existsSync(path.dirname(pidfile))) throw new Error(`pid ${pid} has no -pidfile`);
  return path.dirname(pidfile);
}

/** Permission bits as octal text, e.g. "0700" (lstat: a symlink does not pass for what it points at). */
export function mode(file: string): string {
  return `0${(lstatSync(file).mode & 0o777).toString(8)}`;
}

/** N distinct TCP ports that nothing listens on right now (held open together, so no two are the same). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const server = net.createServer();
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

/**
 * qvm's own text with what depends on the moment taken out: pids become `pid N`, durations after " in "
 * become `T` (e.g. "started (pid 4363) in 90ms" -> "started (pid N) in T").
 */
export function normalize(text: string): string {
  return text
    .replace(/\bpid \d+/g, 'pid N')
    .replace(/ in (?:\d+h)?(?:\d+m)?\d+(?:\.\d+)?(?:ms|s)\b/g, ' in T');
}

/** Where TEXT first appears in FILE, as `line:column` (both from 1), the way qvm locates manifest errors. */
export function positionOf(file: string, text: string): string {
  const lines = readFileSync(file, 'utf8').split('\n');
  const line = lines.findIndex((l) => l.includes(text));
  if (line < 0) throw new Error(`${text} is not in ${file}`);
  return `${line + 1}:${lines[line]!.indexOf(text) + 1}`;
}

/**
 * `qvm status`'s table as one record per line, keyed by the header's column names. Cells are cut at the
 * header's column starts, so a column added later does not shift what a test checks. A row starts with its
 * VM's name (a-z); the notes after the table ("! marks...", "VM: error") are not rows.
 */
export function statusTable(text: string): Record<string, string>[] {
  const [header = '', ...lines] = text.split('\n');
  const columns = [...header.matchAll(/\S+/g)].map((m) => ({ name: m[0], start: m.index }));
  return lines
    .filter((line) => /^[a-z]/.test(line) && !line.includes(': '))
    .map((line) =>
      Object.fromEntries(
        columns.map((c, i) => [c.name, line.slice(c.start, columns[i + 1]?.start ?? line.length).trim()]),
      ),
    );
}
