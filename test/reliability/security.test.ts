/**
 * Security of what qvm leaves on the host: private runtime folders (0700) and sockets (0600), a runtime root
 * that is open to others or a symlink refused, an adopted VM's socket left exactly as its owner made it, and
 * forwards that bind loopback unless the manifest gives an address (and are marked when they do not).
 */
import { lstatSync, mkdirSync, readdirSync, statSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qvm } from '../helpers/cli.js';
import {
  bareVm,
  freshPort,
  listeningAddresses,
  qemusUnder,
  qemusWithPidfile,
  sandbox,
  spawnQemu,
  statusJson,
  statusTable,
  until,
  warmUp,
  writeManifest,
} from './support.js';

const box = sandbox('qrs');

beforeAll(() => warmUp(box));
afterAll(() => box.cleanup());

const mode = (file: string) => (lstatSync(file).mode & 0o777).toString(8).padStart(4, '0');

/** Every file under DIR (recursively), with its lstat. */
function walk(dir: string): { file: string; isDir: boolean; isSocket: boolean }[] {
  const out: { file: string; isDir: boolean; isSocket: boolean }[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    out.push({ file, isDir: entry.isDirectory(), isSocket: entry.isSocket() });
    if (entry.isDirectory()) out.push(...walk(file));
  }
  return out;
}

describe('runtime folders and sockets', () => {
  it('namespace and VM folders are 0700, every *.sock is 0600, nothing is open to others', {
    timeout: 30_000,
  }, async () => {
    const file = writeManifest(path.join(box.root, 'modes', 'm.yaml'), { web: bareVm(), db: bareVm() });
    const r = await box.run(['apply', '-f', file]);
    expect(r.exitCode, r.stderr).toBe(0);
    const namespace = path.dirname(box.vmDir(file, 'web'));
    expect(mode(box.runtime)).toBe('0700');
    expect(mode(namespace)).toBe('0700');
    const entries = walk(namespace);
    const folders = entries.filter((e) => e.isDir).map((e) => path.basename(e.file));
    expect(folders.sort()).toEqual(['db', 'web']);
    for (const e of entries.filter((x) => x.isDir)) expect(mode(e.file), e.file).toBe('0700');
    const sockets = entries.filter((e) => e.file.endsWith('.sock'));
    // qmp, events, hmp and serial for each VM.
    expect(sockets).toHaveLength(8);
    for (const s of sockets) {
      expect(s.isSocket, s.file).toBe(true);
      expect(mode(s.file), s.file).toBe('0600');
    }
    for (const e of entries) expect(lstatSync(e.file).mode & 0o007, `${e.file} is open to others`).toBe(0);
    // Still so after status and a second apply.
    expect((await box.run(['status', '-f', file])).exitCode).toBe(0);
    expect((await box.run(['apply', '-f', file])).exitCode).toBe(0);
    for (const s of sockets) expect(mode(s.file), s.file).toBe('0600');
  });

  it('a runtime root open to others is refused with the chmod to run; nothing starts', {
    timeout: 30_000,
  }, async () => {
    const root = path.join(box.root, 'open-rt');
    mkdirSync(root, { mode: 0o755 });
    const file = writeManifest(path.join(box.root, 'open', 'm.yaml'), { web: bareVm() });
    const r = await qvm(['apply', '-f', file], { env: { QVM_RUNTIME_DIR: root } });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`${root} is open to other users (mode 755)`);
    expect(r.stderr).toContain(`chmod 700 ${root}`);
    expect(qemusUnder(root)).toEqual([]);
    expect(mode(root)).toBe('0755');
  });

  it('a runtime root that is a symlink (even to a private folder) is refused', {
    timeout: 30_000,
  }, async () => {
    const real = path.join(box.root, 'real-rt');
    mkdirSync(real, { mode: 0o700 });
    const link = path.join(box.root, 'link-rt');
    symlinkSync(real, link);
    const file = writeManifest(path.join(box.root, 'link', 'm.yaml'), { web: bareVm() });
    const r = await qvm(['apply', '-f', file], { env: { QVM_RUNTIME_DIR: link } });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`${link} is not a folder (a symlink or a file is in the way)`);
    expect(qemusUnder(real)).toEqual([]);
    expect(readdirSync(real).filter((f) => f !== 'kvm-probe.json')).toEqual([]);
  });
});

describe("an adopted VM's monitor socket", () => {
  it('keeps its mode through apply and status', { timeout: 30_000 }, async () => {
    const dir = path.join(box.root, 'adopted');
    mkdirSync(dir, { recursive: true });
    const socket = path.join(dir, 'mon.sock');
    // Started the classic way, by someone else (here: this test, with its own umask).
    const other = spawnQemu([
      '-monitor',
      `unix:${socket},server,nowait`,
      '-netdev',
      'user,id=net0',
      '-device',
      'e1000,netdev=net0,romfile=',
    ]);
    await until('the adopted QEMU listens on its monitor', () => {
      try {
        return statSync(socket).isSocket();
      } catch {
        return false;
      }
    });
    const before = mode(socket);
    const port = await freshPort();
    const file = writeManifest(path.join(dir, 'm.yaml'), {
      theirs: { monitor: socket, forwards: [{ host: port, guest: 80 }] },
    });
    const apply = await box.run(['apply', '-f', file]);
    expect(apply.exitCode, apply.stderr).toBe(0);
    expect(apply.stdout).toContain('theirs: updated live: 1 forward added');
    expect(mode(socket)).toBe(before);
    const [row] = await statusJson(box, file);
    expect(row).toMatchObject({ name: 'theirs', adopted: true, forwards: [`tcp 127.0.0.1:${port}->80`] });
    expect(mode(socket)).toBe(before);
    expect(other.exit).toBeUndefined();
  });
});

describe('forwards bind loopback unless an address is given', () => {
  it('/proc/net/tcp shows 127.0.0.1 for forwards without an address and 0.0.0.0 for the exposed one, which plan and status mark', {
    timeout: 30_000,
  }, async () => {
    const [mapping, rule, exposed] = [await freshPort(), await freshPort(), await freshPort()];
    const file = path.join(box.root, 'bind', 'm.yaml');
    const loopback = [{ host: mapping, guest: 80 }, `tcp::${rule}-:22`];
    writeManifest(file, { web: bareVm({ forwards: loopback }) });
    const up = await box.run(['apply', '-f', file]);
    expect(up.exitCode, up.stderr).toBe(0);

    writeManifest(file, {
      web: bareVm({ forwards: [...loopback, { host: exposed, guest: 8080, address: '0.0.0.0' }] }),
    });
    const plan = await box.run(['plan', '-f', file]);
    expect(plan.exitCode, plan.stderr).toBe(0);
    expect(plan.stdout.split('\n').filter((l) => l.includes('(exposed on every interface)'))).toEqual([
      expect.stringContaining(`+ tcp 0.0.0.0:${exposed} -> :8080`),
    ]);

    const apply = await box.run(['apply', '-f', file]);
    expect(apply.exitCode, apply.stderr).toBe(0);
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toHaveLength(1);
    expect(listeningAddresses(mapping)).toEqual(['0100007F']);
    expect(listeningAddresses(rule)).toEqual(['0100007F']);
    expect(listeningAddresses(exposed)).toEqual(['00000000']);

    const status = await box.run(['status', '-f', file]);
    expect(status.exitCode).toBe(0);
    const [row] = statusTable(status.stdout);
    expect(row!.FORWARDS!.split(', ').sort()).toEqual(
      [`tcp 127.0.0.1:${mapping}->80`, `tcp 127.0.0.1:${rule}->22`, `tcp 0.0.0.0:${exposed}->8080!`].sort(),
    );
    expect(status.stdout).toContain('! marks a forward exposed beyond this machine');
  });

  it('a plan that starts a VM with an exposed forward marks it too', { timeout: 30_000 }, async () => {
    // README: "`qvm plan` and `qvm status` mark exposed forwards". A VM's first start is when a forward on
    // every interface is most easily missed.
    const [mapping, exposed] = [await freshPort(), await freshPort()];
    const file = writeManifest(path.join(box.root, 'bind-new', 'm.yaml'), {
      web: bareVm({
        forwards: [
          { host: mapping, guest: 80 },
          { host: exposed, guest: 8080, address: '0.0.0.0' },
        ],
      }),
    });
    const plan = await box.run(['plan', '-f', file]);
    expect(plan.exitCode, plan.stderr).toBe(0);
    expect(plan.stdout).toContain('+ web');
    expect(plan.stdout).toContain(`0.0.0.0:${exposed}`);
    expect(plan.stdout).toContain(`(exposes tcp 0.0.0.0:${exposed} on every interface)`);
  });
});
