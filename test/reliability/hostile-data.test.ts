/**
 * Faults found by hostile testing that could lose data or hand a guest a host file (issue "never lose a disk"),
 * items 1 to 8, each reproduced against real QEMU: a leftover hibernation snapshot, a hibernated VM whose
 * manifest changed, destroy --delete-disks of a disk in use, a VM paused on a full disk, durations past a
 * timer's range, a path that is not a disk image, one manifest seen from two runtime roots, and a raw disk
 * whose guest wrote a qcow2 header.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qvm } from '../helpers/cli.js';
import { demoVm, freePorts, GUEST_HELLO, positionOf, waitForHttp } from '../helpers/env.js';
import {
  bareVm,
  hasStackTrace,
  mountTmpfs,
  qemusUnder,
  qemusWithPidfile,
  remount,
  sandbox,
  spawnHelper,
  statusJson,
  until,
  warmUp,
  writeManifest,
} from './support.js';

const box = sandbox('qhd');
const SAVED = 'qvm-saved-state';

beforeAll(() => warmUp(box));
afterAll(() => box.cleanup());

/** qemu-io on a disk (read-only, force-share, so it works while QEMU holds the image). */
function readsPattern(disk: string, byte: number, offset = 0, length = '64k', format = 'qcow2'): boolean {
  const out = execFileSync(
    'qemu-io',
    ['-r', '-U', '-f', format, '-c', `read -P ${byte} ${offset} ${length}`, disk],
    {
      encoding: 'utf8',
    },
  );
  return !out.includes('Pattern verification failed');
}

function snapshotTags(disk: string): string[] {
  const info = JSON.parse(
    execFileSync('qemu-img', ['info', '-U', '-f', 'qcow2', '--output=json', disk], { encoding: 'utf8' }),
  );
  return (info.snapshots ?? []).map((s: { name: string }) => s.name);
}

/** A bare VM with a 16M qcow2 disk qvm creates. */
function diskVm(disk: string, extra: Record<string, unknown> = {}) {
  return bareVm({ disk: { path: disk, size: '16M' }, ...extra });
}

describe.concurrent('1. a leftover hibernation snapshot never reverts the disk', () => {
  const dir = path.join(box.root, 'leftover');
  const file = path.join(dir, 'm.yaml');
  const disk = path.join(dir, 'd.qcow2');

  it.sequential('on a running VM it is shown in the plan and removed, never loaded', {
    timeout: 60_000,
  }, async () => {
    writeManifest(file, { web: diskVm(disk) });
    expect((await box.run(['apply', '-f', file])).exitCode).toBe(0);
    // What qvm leaves when it is killed during `savevm` (QEMU finishes and runs on), then the guest writes.
    expect((await box.run(['monitor', '-f', file, 'web', 'savevm', SAVED])).exitCode).toBe(0);
    expect(
      (await box.run(['monitor', '-f', file, 'web', 'qemu-io disk0 "write -P 0xcd 0 64k"'])).exitCode,
    ).toBe(0);
    const plan = await box.run(['plan', '-f', file]);
    expect(plan.stdout).toBe(
      `  ~ web   delete the left-over saved state ${SAVED} (never loaded), live\n\nPlan: 0 to start, 1 to change live, 0 to restart, 0 to stop.\n`,
    );
    const pid = box.readPid(file, 'web');
    expect((await box.run(['apply', '-f', file])).exitCode).toBe(0);
    expect(snapshotTags(disk)).toEqual([]);
    expect(box.readPid(file, 'web')).toBe(pid);
    expect(readsPattern(disk, 0xcd)).toBe(true);
  });

  it.sequential('after a crash it is not loaded: the plan says why, and --discard-saved-state boots cold with the data intact', {
    timeout: 60_000,
  }, async () => {
    expect((await box.run(['monitor', '-f', file, 'web', 'savevm', SAVED])).exitCode).toBe(0);
    expect(
      (await box.run(['monitor', '-f', file, 'web', 'qemu-io disk0 "write -P 0xee 0 64k"'])).exitCode,
    ).toBe(0);
    process.kill(box.readPid(file, 'web'), 'SIGKILL');
    await until(
      'QEMU gone',
      () => qemusUnder(dir).length === 0 && qemusWithPidfile(box.pidfile(file, 'web')).length === 0,
    );
    const plan = await box.run(['plan', '-f', file]);
    expect(plan.exitCode).toBe(1);
    expect(plan.stdout).toContain(
      `has a hibernation snapshot (${SAVED}) on its disk, but qvm has no record of saving it`,
    );
    const apply = await box.run(['apply', '-f', file]);
    expect(apply.exitCode).toBe(1);
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toEqual([]);
    expect(readsPattern(disk, 0xee)).toBe(true);
    const discard = await box.run(['apply', '-f', file, '--discard-saved-state']);
    expect(discard.exitCode).toBe(0);
    expect(discard.stdout).toContain('  + web   start: its QEMU exited');
    expect(discard.stdout).toContain('drops the saved state');
    expect(snapshotTags(disk)).toEqual([]);
    expect(readsPattern(disk, 0xee)).toBe(true);
    expect((await box.run(['destroy', '-f', file])).exitCode).toBe(0);
  });
});

describe.concurrent('2. a hibernated VM whose manifest changed', () => {
  const dir = path.join(box.root, 'changed');
  const file = path.join(dir, 'm.yaml');
  const disk = path.join(dir, 'd.qcow2');

  it.sequential('gets a plan that says what differs and the way out, instead of failing forever', {
    timeout: 60_000,
  }, async () => {
    writeManifest(file, { web: diskVm(disk, { memory: '32M' }) });
    expect((await box.run(['apply', '-f', file])).exitCode).toBe(0);
    writeManifest(file, { web: diskVm(disk, { memory: '32M', state: 'saved' }) });
    const save = await box.run(['apply', '-f', file]);
    expect(save.exitCode).toBe(0);
    expect(snapshotTags(disk)).toEqual([SAVED]);
    expect((await statusJson(box, file))[0]!.state).toBe('saved');

    writeManifest(file, { web: diskVm(disk, { memory: '48M' }) });
    const plan = await box.run(['plan', '-f', file]);
    expect(plan.exitCode).toBe(1);
    expect(plan.stdout).toContain(
      "with another configuration than the manifest's now (memory 32M -> 48M), and QEMU resumes a saved state only with the configuration it was saved with. Set those fields back and apply to resume it, or `qvm apply --discard-saved-state`",
    );
    expect((await box.run(['apply', '-f', file])).exitCode).toBe(1);
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toEqual([]);
    expect(snapshotTags(disk)).toEqual([SAVED]);
  });

  it.sequential('with the fields set back it resumes; with --discard-saved-state it boots cold', {
    timeout: 60_000,
  }, async () => {
    writeManifest(file, { web: diskVm(disk, { memory: '32M' }) });
    const resume = await box.run(['apply', '-f', file]);
    expect(resume.exitCode).toBe(0);
    expect(resume.stdout).toContain('resumed from the saved state');
    writeManifest(file, { web: diskVm(disk, { memory: '32M', state: 'saved' }) });
    expect((await box.run(['apply', '-f', file])).exitCode).toBe(0);
    writeManifest(file, { web: diskVm(disk, { memory: '48M' }) });
    const discard = await box.run(['apply', '-f', file, '--discard-saved-state']);
    expect(discard.exitCode).toBe(0);
    expect(discard.stdout).not.toContain('resumed');
    expect(snapshotTags(disk)).toEqual([]);
    expect((await box.run(['destroy', '-f', file])).exitCode).toBe(0);
  });
});

describe.concurrent('3. destroy --delete-disks keeps disks in use', () => {
  it('keeps a disk another VM of the manifest now declares (a VM renamed), and one a process holds open', {
    timeout: 60_000,
  }, async () => {
    const dir = path.join(box.root, 'inuse');
    const file = path.join(dir, 'm.yaml');
    const disk = path.join(dir, 'd.qcow2');
    const other = path.join(dir, 'o.qcow2');
    writeManifest(file, { old: diskVm(disk), keep: diskVm(other) });
    expect((await box.run(['apply', '-f', file])).exitCode).toBe(0);
    expect((await box.run(['destroy', '-f', file])).exitCode).toBe(0);
    // `old` is renamed `new`: the disk qvm created for `old` is now `new`'s.
    writeManifest(file, { new: diskVm(disk), keep: diskVm(other) });
    const renamed = await box.run(['destroy', '-f', file, 'old', '--delete-disks']);
    expect(renamed.exitCode).toBe(0);
    expect(renamed.stdout).toContain('old: kept d.qcow2: VM new of the manifest declares it as its disk');
    expect(existsSync(disk)).toBe(true);
    // A process (here a reader started by the test) has keep's disk open.
    const holder = spawnHelper('node', [
      '-e',
      `require('fs').openSync(${JSON.stringify(other)}, 'r'); console.log('open'); setInterval(() => {}, 1e9)`,
    ]);
    await until('holder has the disk open', () => holder.stdout().includes('open'));
    const held = await box.run(['destroy', '-f', file, 'keep', '--delete-disks']);
    expect(held.exitCode).toBe(0);
    expect(held.stdout).toContain(`keep: kept o.qcow2: it is open in pid ${holder.pid}`);
    expect(existsSync(other)).toBe(true);
    holder.child.kill('SIGKILL');
    await holder.exited;
  });
});

describe.concurrent('4. a VM paused on an I/O error (disk full)', () => {
  it('is reported and left paused, then resumed once the disk has room: same process, the write done', {
    timeout: 120_000,
  }, async () => {
    const dir = path.join(box.root, 'full');
    const disks = mountTmpfs(path.join(dir, 'disks'), 'size=24m');
    const file = path.join(dir, 'm.yaml');
    const [port] = (await freePorts(1)) as [number];
    writeManifest(file, {
      web: demoVm('web', {
        disk: { path: 'disks/web.qcow2', size: '64M' },
        forwards: [{ host: port, guest: 80 }],
      }),
    });
    expect((await box.run(['apply', '-f', file], dir)).exitCode).toBe(0);
    await waitForHttp(`http://127.0.0.1:${port}/`, 30_000);
    const pid = box.readPid(file, 'web');
    // The guest writes 48 MiB; the host's 24 MiB run out: QEMU pauses the VM (werror=enospc).
    const fill = http.get(`http://127.0.0.1:${port}/cgi-bin/fill?48`, { agent: false }, (r) => r.resume());
    fill.on('error', () => {});
    await until(
      'the VM paused on the full disk',
      async () => (await statusJson(box, file))[0]!.state === 'paused (I/O error)',
      60_000,
    );
    const plan = await box.run(['plan', '-f', file], dir);
    expect(plan.exitCode).toBe(1);
    expect(plan.stdout).toContain(
      "is paused: no space left on device on disks/web.qcow2. qvm leaves it paused (a restart would lose the guest's memory and its pending write)",
    );
    const stuck = await box.run(['apply', '-f', file], dir);
    expect(stuck.exitCode).toBe(1);
    expect(box.readPid(file, 'web')).toBe(pid);
    expect(statSync(disks).isDirectory()).toBe(true);

    remount(disks, 'size=256m');
    const resumed = await box.run(['apply', '-f', file], dir);
    expect(resumed.exitCode).toBe(0);
    expect(resumed.stdout).toContain('  ~ web   resume (disks/web.qcow2 has room again), live');
    expect(box.readPid(file, 'web')).toBe(pid);
    expect((await waitForHttp(`http://127.0.0.1:${port}/`, 30_000)).body).toContain(GUEST_HELLO);
    expect((await statusJson(box, file))[0]!.state).toBe('running');
    fill.destroy();
    expect((await box.run(['destroy', '-f', file], dir)).exitCode).toBe(0);
  });
});

describe.concurrent("5. durations past a timer's range", () => {
  it('are located errors in validate, and in flags', async () => {
    const file = writeManifest(path.join(box.root, 'durations', 'm.yaml'), {
      web: bareVm({
        stopTimeout: '1000h',
        forwards: [{ host: 18081, guest: 80 }],
        ready: { tcp: 18081, timeout: '25d' },
      }),
    });
    const r = await box.run(['validate', '-f', file]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(
      `${file}:${positionOf(file, '1000h')}: vms.web.stopTimeout: must be at most 24h, got "1000h"`,
    );
    expect(r.stderr).toContain(`${file}:${positionOf(file, '25d')}: vms.web.ready.timeout:`);
    const flag = await box.run(['status', '-f', file, '--timeout', '900h']);
    expect(flag.exitCode).toBe(1);
    expect(flag.stderr).toContain(
      "option '--timeout <duration>' argument '900h' is invalid. must be at most 24h",
    );
  });
});

describe.concurrent('6. a path to a file that is not a disk image', () => {
  it('is neither grown nor attached: a located plan error, the file untouched', {
    timeout: 30_000,
  }, async () => {
    const dir = path.join(box.root, 'notes');
    mkdirSync(dir, { recursive: true });
    const notes = path.join(dir, 'notes.txt');
    writeFileSync(notes, 'my notes\n');
    const file = writeManifest(path.join(dir, 'm.yaml'), {
      web: bareVm({ disk: { path: 'notes.txt', size: '64M' } }),
      null: bareVm({ disk: { path: '/dev/null', size: '64M' } }),
    });
    const plan = await box.run(['plan', '-f', file], dir);
    expect(plan.exitCode).toBe(1);
    expect(plan.stdout).toContain('vms.web.disk: cannot use notes.txt: it is not a qcow2 image (qemu-img:');
    expect(plan.stdout).toContain(
      'vms.null.disk: cannot use /dev/null: /dev/null is a character device, not a disk image',
    );
    expect((await box.run(['apply', '-f', file], dir)).exitCode).toBe(1);
    expect(readFileSync(notes, 'utf8')).toBe('my notes\n');
    expect(qemusUnder(dir)).toEqual([]);
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toEqual([]);
  });
});

describe.concurrent('7. one manifest, whichever way qvm is started', () => {
  it('a VM running under another runtime root is found: no second QEMU, and destroy says it cannot see it', {
    timeout: 60_000,
  }, async () => {
    const dir = path.join(box.root, 'roots');
    const file = writeManifest(path.join(dir, 'm.yaml'), { web: bareVm() });
    const other = path.join(box.root, 'rt2');
    mkdirSync(other, { mode: 0o700 });
    const fromOther = (args: string[]) =>
      qvm(args, { cwd: dir, env: { QVM_RUNTIME_DIR: other, QVM_STATE_DIR: `${other}-state` } });
    expect((await fromOther(['apply', '-f', file])).exitCode).toBe(0);
    const plan = await box.run(['plan', '-f', file], dir);
    expect(plan.exitCode).toBe(1);
    expect(plan.stdout).toContain(`runs under another runtime folder, ${other} (QEMU pid`);
    expect((await box.run(['apply', '-f', file], dir)).exitCode).toBe(1);
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toEqual([]);
    expect((await statusJson(box, file))[0]!.state).toBe(`running elsewhere (${other})`);
    const destroy = await box.run(['destroy', '-f', file], dir);
    expect(destroy.exitCode).toBe(1);
    expect(destroy.stderr).toContain(
      'web: cannot be destroyed by this qvm: it runs under another runtime folder',
    );
    expect(destroy.stdout).not.toContain('destroyed');
    expect((await fromOther(['destroy', '-f', file])).exitCode).toBe(0);
  });

  it('the default runtime root does not depend on XDG_RUNTIME_DIR or HOME', async () => {
    const show = (env: Record<string, string>) =>
      execFileSync(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `import { runtimeRoot, stateRoot } from ${JSON.stringify(`${new URL('../../dist/runtime/paths.js', import.meta.url).pathname}`)}; console.log(runtimeRoot(), stateRoot())`,
        ],
        {
          encoding: 'utf8',
          env: { PATH: process.env.PATH!, ...env },
        },
      ).trim();
    const plain = show({});
    expect(show({ XDG_RUNTIME_DIR: '/run/user/1000' })).toBe(plain);
    expect(show({ HOME: '/nowhere' })).toBe(plain);
    expect(plain.split(' ')[0]).toBe(
      process.getuid?.() === 0 ? '/run/qvm' : `/tmp/qvm-${process.getuid?.()}`,
    );
    const manifest = writeManifest(path.join(box.root, 'relative', 'm.yaml'), { web: bareVm() });
    const relative = await qvm(['status', '-f', manifest], { env: { QVM_RUNTIME_DIR: 'rel/dir' } });
    expect(relative.exitCode).toBe(1);
    expect(relative.stderr).toBe('error: QVM_RUNTIME_DIR must be an absolute path, got "rel/dir"\n');
  });
});

describe.concurrent('8. disk formats are never probed', () => {
  it('a raw disk whose guest wrote a qcow2 header naming a host file stays raw, and is never reopened as qcow2', {
    timeout: 60_000,
  }, async () => {
    const dir = path.join(box.root, 'raw');
    mkdirSync(dir, { recursive: true });
    const disk = path.join(dir, 'd.img');
    const secret = path.join(dir, 'host-secret.txt');
    writeFileSync(secret, 'host secret\n');
    execFileSync('qemu-img', ['create', '-q', '-f', 'raw', disk, '16M']);
    const file = writeManifest(path.join(dir, 'm.yaml'), {
      web: bareVm({ disk: { path: 'd.img', format: 'raw' } }),
    });
    expect((await box.run(['apply', '-f', file], dir)).exitCode).toBe(0);
    // What a guest can do to its raw disk: write a qcow2 header whose backing file is a host file.
    const header = path.join(dir, 'evil.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', secret, '-F', 'raw', header, '16M']);
    execFileSync('dd', [`if=${header}`, `of=${disk}`, 'conv=notrunc', 'status=none']);
    const plan = await box.run(['plan', '-f', file], dir);
    expect(plan).toMatchObject({ exitCode: 0, stdout: 'No changes. The VMs match the manifest.\n' });
    const argv = readFileSync(`/proc/${box.readPid(file, 'web')}/cmdline`, 'utf8').split('\0');
    expect(argv.find((a) => a.includes('id=disk0'))).toContain('format=raw');
    expect((await box.run(['destroy', '-f', file], dir)).exitCode).toBe(0);
    // Dropping `format: raw` (a careless edit) does not open it as qcow2: qvm recorded it as raw.
    writeManifest(file, { web: bareVm({ disk: 'd.img' }) });
    const careless = await box.run(['plan', '-f', file], dir);
    expect(careless.exitCode).toBe(1);
    expect(careless.stdout).toContain(
      'd.img was first opened by qvm as a raw image, and the manifest now says qcow2',
    );
    expect((await box.run(['apply', '-f', file], dir)).exitCode).toBe(1);
    expect(qemusUnder(dir)).toEqual([]);
    expect(hasStackTrace(careless.stdout + careless.stderr)).toBe(false);
  });

  it('two VMs with one disk, also through a symlink, are a located validate error', async () => {
    const dir = path.join(box.root, 'shared');
    mkdirSync(dir, { recursive: true });
    symlinkSync(path.join(dir, 'a.qcow2'), path.join(dir, 'link.qcow2'));
    const file = writeManifest(path.join(dir, 'm.yaml'), {
      a: bareVm({ disk: { path: 'a.qcow2', size: '16M' } }),
      b: bareVm({ disk: { path: 'link.qcow2', size: '16M' } }),
    });
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', path.join(dir, 'a.qcow2'), '16M']);
    const r = await box.run(['validate', '-f', file], dir);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`vms.b.disk: is also the disk of VM a (${file}:`);
    expect(r.stderr).toContain('two VMs cannot share a disk');
  });
});
