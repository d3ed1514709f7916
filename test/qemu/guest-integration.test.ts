/**
 * The guest side against a real Debian 12 (guest/debian/): the guest agent (exec, clock, shutdown, status),
 * shared folders over 9p (writable and read-only, unmounted around saves through the agent), a data disk
 * (stable serial, kept by `destroy --delete-disks`, its data across a hibernation), and a screen (VNC only on
 * a private socket or loopback, `qvm screenshot` of the booted console). One cold boot; the rest is warm.
 */
import { execFileSync, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { type CliResult, QVM_BIN, qvm } from '../helpers/cli.js';
import { type DebianGuest, debianGuest } from '../helpers/debian.js';
import { killQemusUnder, privateDir } from '../helpers/env.js';
import { colourCount, decodePng } from '../helpers/png.js';
import { removeDir } from '../helpers/qemu.js';

const root = privateDir('qvmg-');
const dir = path.join(root, 'vm');
const runtime = path.join(root, 'rt');
const env = {
  QVM_RUNTIME_DIR: runtime,
  QVM_STATE_DIR: path.join(root, 'state'),
  QVM_CACHE_DIR: path.join(root, 'cache'),
};
let guest: DebianGuest;

/** qvm COMMAND -f m.yaml ARGS...: the manifest option before any `--` of the arguments. */
const run = (args: string[], input?: string): Promise<CliResult> =>
  qvm([args[0]!, '-f', 'm.yaml', ...args.slice(1)], {
    cwd: dir,
    env,
    timeout: 600_000,
    ...(input !== undefined ? { input } : {}),
  });

function writeManifest(extra: Record<string, unknown> = {}, drop: string[] = []) {
  const vm: Record<string, unknown> = {
    image: guest.image,
    disk: { path: 'disks/dev.qcow2', size: '4G' },
    memory: '1G',
    accel: 'tcg',
    kernel: guest.kernel,
    initrd: guest.initrd,
    append: guest.append,
    cloudInit: { userData: '#cloud-config\nlocale: C.UTF-8\n' },
    ssh: { user: 'dev' },
    agent: true,
    ready: { ssh: true, timeout: '8m' },
    snapshot: 'warm',
    mounts: [
      { host: './rw', guest: '/home/dev/rw', writable: true },
      { host: './ro', guest: '/mnt/ro' },
    ],
    disks: [{ path: 'disks/dev-data.qcow2', size: '256M' }],
    display: 'vnc',
    ...extra,
  };
  for (const key of drop) delete vm[key];
  writeFileSync(path.join(dir, 'm.yaml'), stringify({ vms: { dev: vm } }));
}

/** The local addresses of every TCP port the process listens on. */
function tcpListeners(pid: number): string[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const out: string[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A' || !inodes.has(f[9]!)) continue;
      const [hex, port] = f[1]!.split(':') as [string, string];
      const address =
        hex.length === 8
          ? [3, 2, 1, 0].map((i) => Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16)).join('.')
          : `[${hex}]`;
      out.push(`${address}:${Number.parseInt(port, 16)}`);
    }
  }
  return out;
}

/** Reads what a VNC server says first: its protocol version. */
function rfbBanner(connect: () => net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect();
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('no RFB banner within 10s'));
    }, 10_000);
    socket.once('data', (chunk) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(chunk.toString('latin1'));
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

const pidOf = () => Number(readFileSync(path.join(runtimeVmDir(), 'qemu.pid'), 'utf8').trim());
const runtimeVmDir = () => {
  const [ns] = readdirSync(runtime).filter((d) => /^[0-9a-f]{16}$/.test(d));
  return path.join(runtime, ns!, 'dev');
};

beforeAll(() => {
  guest = debianGuest();
  mkdirSync(path.join(dir, 'rw'), { recursive: true });
  mkdirSync(path.join(dir, 'ro'), { recursive: true });
  writeFileSync(path.join(dir, 'ro', 'from-host.txt'), 'host wrote this\n');
}, 900_000);

afterAll(async () => {
  await killQemusUnder(runtime);
  removeDir(root);
});

describe('a Debian VM with an agent, shares, a data disk and a screen', () => {
  it('boots cold, mounts the shares, and saves the warm snapshot with them unmounted through the agent', {
    timeout: 900_000,
  }, async () => {
    writeManifest();
    const r = await run(['apply']);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('creating data disk disks/dev-data.qcow2');
    expect(r.stdout).toContain(
      'dev: unmounting the shared folders (guest agent)\ndev: saving snapshot warm\ndev: mounting the shared folders (guest agent)\n',
    );
    expect(r.stdout).toMatch(/dev: started \(pid \d+\), ready in \S+, saved snapshot warm/);
  });

  it('qvm exec runs a command through the agent: its output, streamed, and its exit status', {
    timeout: 120_000,
  }, async () => {
    const r = await run(['exec', 'dev', '--', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
    expect(r).toMatchObject({ exitCode: 3, stdout: 'out\n', stderr: 'err\n' });
    expect((await run(['exec', '-i', 'dev', '--', 'wc', '-c'], 'twelve bytes')).stdout.trim()).toBe('12');
    expect((await run(['exec', 'dev', '--', 'no-such-program'])).exitCode).toBe(127);
    // Streamed: the first line arrives while the command is still running.
    const child = spawn(
      'node',
      [QVM_BIN, 'exec', 'dev', '-f', 'm.yaml', '--', 'sh', '-c', 'echo first; sleep 4; echo second'],
      {
        cwd: dir,
        env: { ...process.env, ...env, NO_COLOR: '1' },
      },
    );
    const events: string[] = [];
    child.stdout.on('data', (chunk: Buffer) => events.push(`out:${chunk.toString().trim()}`));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    events.push(`exit:${code}`);
    expect(events).toEqual(['out:first', 'out:second', 'exit:0']);
  });

  it('shares: the guest writes into the writable one and cannot write the read-only one', {
    timeout: 120_000,
  }, async () => {
    const write = await run([
      'exec',
      'dev',
      '--',
      'sh',
      '-c',
      'echo from guest > /home/dev/rw/from-guest.txt',
    ]);
    expect(write.exitCode).toBe(0);
    expect(readFileSync(path.join(dir, 'rw', 'from-guest.txt'), 'utf8')).toBe('from guest\n');
    expect((await run(['exec', 'dev', '--', 'cat', '/mnt/ro/from-host.txt'])).stdout).toBe(
      'host wrote this\n',
    );
    const refused = await run(['exec', 'dev', '--', 'touch', '/mnt/ro/x']);
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toContain('Read-only file system');
    expect(existsSync(path.join(dir, 'ro', 'x'))).toBe(false);
  });

  it('the data disk has its serial, and the status shows the agent and the guest address', {
    timeout: 120_000,
  }, async () => {
    const byId = await run(['exec', 'dev', '--', 'readlink', '-f', '/dev/disk/by-id/virtio-dev-data']);
    expect(byId).toMatchObject({ exitCode: 0, stdout: '/dev/vdb\n' });
    // The OS disk stays the first virtio disk.
    expect((await run(['exec', 'dev', '--', 'findmnt', '-no', 'SOURCE', '/'])).stdout).toBe('/dev/vda\n');
    const mark = await run([
      'exec',
      'dev',
      '--',
      'sh',
      '-c',
      'printf data-mark | dd of=/dev/disk/by-id/virtio-dev-data conv=fsync 2>/dev/null',
    ]);
    expect(mark.exitCode).toBe(0);
    const status = await run(['status']);
    expect(status.stdout.split('\n')[0]!.split(/\s{2,}/)).toEqual([
      'NAME',
      'STATE',
      'READY',
      'PID',
      'AGENT',
      'ADDRESSES',
      'FORWARDS',
      'SNAPSHOTS',
      'UPTIME',
    ]);
    const row = status.stdout.split('\n')[1]!.split(/\s{2,}/);
    expect(row.slice(0, 3)).toEqual(['dev', 'running', 'yes']);
    expect(row[4]).toBe('yes');
    expect(row[5]).toMatch(/^10\.0\.2\.15\/24/);
  });

  it('VNC is served on a private socket only; --tunnel offers it on loopback; screenshot is a real picture', {
    timeout: 120_000,
  }, async () => {
    const socket = path.join(runtimeVmDir(), 'vnc.sock');
    expect((await run(['vnc', 'dev'])).stdout).toBe(`${socket}\n`);
    expect((statSync(socket).mode & 0o777).toString(8)).toBe('600');
    expect(await rfbBanner(() => net.connect(socket))).toMatch(/^RFB 003\.00\d\n$/);
    expect(tcpListeners(pidOf()).every((a) => a.startsWith('127.0.0.1:'))).toBe(true);
    const port = 20000 + Math.floor(Math.random() * 20000);
    const tunnel = spawn('node', [QVM_BIN, 'vnc', 'dev', '-f', 'm.yaml', '--tunnel', String(port)], {
      cwd: dir,
      env: { ...process.env, ...env, NO_COLOR: '1' },
    });
    try {
      await new Promise<void>((resolve) => tunnel.stderr.once('data', () => resolve()));
      expect(await rfbBanner(() => net.connect(port, '127.0.0.1'))).toMatch(/^RFB 003\.00\d\n$/);
    } finally {
      tunnel.kill('SIGINT');
      expect(await new Promise((resolve) => tunnel.once('exit', resolve))).toBe(0);
    }
    const shot = await run(['screenshot', 'dev', '-o', 'screen.png']);
    expect(shot).toMatchObject({ exitCode: 0, stdout: 'screen.png\n' });
    const png = decodePng(readFileSync(path.join(dir, 'screen.png')));
    expect(png.width).toBeGreaterThanOrEqual(640);
    expect(png.height).toBeGreaterThanOrEqual(400);
    // tty1's login prompt: text on a background, not one flat colour.
    expect(colourCount(png)).toBeGreaterThan(1);
  });

  it('a warm start mounts the shares again and sets the clock through the agent', {
    timeout: 300_000,
  }, async () => {
    expect((await run(['destroy'])).exitCode).toBe(0);
    // Let the snapshot age: a clock left as the snapshot had it would be visibly behind.
    await new Promise((r) => setTimeout(r, 25_000));
    const r = await run(['apply']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('dev: mounting the shared folders (guest agent)');
    expect(r.stdout).toContain('dev: setting the guest clock (guest agent)');
    expect(r.stdout).toMatch(/from snapshot warm, ready in \S+, guest clock set/);
    const askedAt = Date.now() / 1000;
    const clock = await run(['exec', 'dev', '--', 'date', '+%s.%N']);
    const answeredAt = Date.now() / 1000;
    const guestNow = Number(clock.stdout.trim());
    expect(guestNow).toBeGreaterThan(askedAt - 2);
    expect(guestNow).toBeLessThan(answeredAt + 2);
    expect((await run(['exec', 'dev', '--', 'cat', '/home/dev/rw/from-guest.txt'])).stdout).toBe(
      'from guest\n',
    );
  });

  it('qvm snapshot save by hand unmounts the shares through the agent and mounts them again', {
    timeout: 300_000,
  }, async () => {
    const saved = await run(['snapshot', 'save', 'dev', 'by-hand']);
    expect(saved.stderr).toBe('');
    expect(saved.exitCode).toBe(0);
    expect(saved.stdout).toBe(
      'dev: unmounting the shared folders (guest agent)\ndev: mounting the shared folders (guest agent)\ndev: saved snapshot by-hand\n',
    );
    expect((await run(['snapshot', 'list', 'dev'])).stdout).toMatch(/^by-hand\s/m);
    // Mounted again: the read-only share's file is there, and the guest still writes into the other one.
    expect((await run(['exec', 'dev', '--', 'cat', '/mnt/ro/from-host.txt'])).stdout).toBe(
      'host wrote this\n',
    );
    expect(
      (await run(['exec', 'dev', '--', 'sh', '-c', 'echo again > /home/dev/rw/again.txt'])).exitCode,
    ).toBe(0);
    expect(readFileSync(path.join(dir, 'rw', 'again.txt'), 'utf8')).toBe('again\n');
    const deleted = await run(['snapshot', 'delete', 'dev', 'by-hand']);
    expect(deleted.exitCode).toBe(0);
    expect((await run(['snapshot', 'list', 'dev'])).stdout).not.toMatch(/^by-hand\s/m);
  });

  it('hibernates with the shares unmounted, resumes with the data disk as it was, and stops through the agent', {
    timeout: 300_000,
  }, async () => {
    // Without snapshot: (whose every start reverts every disk to the snapshot), data written now must stay.
    writeManifest({}, ['snapshot']);
    const mark = await run([
      'exec',
      'dev',
      '--',
      'sh',
      '-c',
      'printf kept-mark | dd of=/dev/disk/by-id/virtio-dev-data conv=fsync 2>/dev/null',
    ]);
    expect(mark.exitCode).toBe(0);
    writeManifest({ state: 'saved' }, ['snapshot']);
    const saved = await run(['apply']);
    expect(saved.exitCode).toBe(0);
    expect(saved.stdout).toContain('dev: unmounting the shared folders (guest agent)\ndev: saving state');
    writeManifest({}, ['snapshot']);
    const resumed = await run(['apply']);
    expect(resumed.exitCode).toBe(0);
    expect(resumed.stdout).toContain('dev: mounting the shared folders (guest agent)');
    const data = await run(['exec', 'dev', '--', 'head', '-c', '9', '/dev/disk/by-id/virtio-dev-data']);
    expect(data.stdout).toBe('kept-mark');
    writeManifest({ state: 'stopped' }, ['snapshot']);
    const stopped = await run(['apply']);
    expect(stopped.exitCode).toBe(0);
    expect(stopped.stdout).toContain('dev: powering off (guest agent)');
    expect(stopped.stdout).toContain('dev: stopped (guest powered off)');
  });

  it('destroy --delete-disks deletes the OS disk and keeps the data disk unless --delete-data-disks', {
    timeout: 120_000,
  }, async () => {
    const r = await run(['destroy', '--delete-disks']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('dev: deleted disks/dev.qcow2 (created by qvm)');
    expect(r.stdout).toContain(
      'dev: kept disks/dev-data.qcow2: a data disk (--delete-data-disks deletes it too)',
    );
    const raw = path.join(root, 'data.raw');
    execFileSync('qemu-img', [
      'convert',
      '-f',
      'qcow2',
      '-O',
      'raw',
      path.join(dir, 'disks', 'dev-data.qcow2'),
      raw,
    ]);
    expect(readFileSync(raw).subarray(0, 9).toString()).toBe('kept-mark');
    const all = await run(['destroy', '--delete-disks', '--delete-data-disks']);
    expect(all.stdout).toContain('dev: deleted disks/dev-data.qcow2 (created by qvm)');
    expect(existsSync(path.join(dir, 'disks', 'dev-data.qcow2'))).toBe(false);
  });
});
