/**
 * Parts of a VM's life the other stories leave out, each against real QEMU: `apply --dry-run` (a plan, and
 * nothing done), `state: stopped` of a VM qvm started (the ACPI power button, answered by the demo guest),
 * `disk.backing` (an overlay whose base image qvm only reads), growing the disk of a running VM (a restart
 * with qemu-img resize in between, the data kept), and `accel: auto` (the KVM probe, its cache, and the
 * accelerator on the command line).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { namespaceFor } from '../../src/runtime/paths.js';
import { qvm } from '../helpers/cli.js';
import { cmdline, demoVm, freePorts, GUEST_HELLO, normalize, url, waitForHttp } from '../helpers/env.js';
import {
  bareVm,
  holdLock,
  imageInfo,
  isRunning,
  qemusUnder,
  qemusWithPidfile,
  sandbox,
  statusJson,
  until,
  warmUp,
  writeManifest,
} from '../reliability/support.js';

const box = sandbox('qlc');

beforeAll(() => warmUp(box));
afterAll(() => box.cleanup());

const PLAN_ONE_START = 'Plan: 1 to start, 0 to change live, 0 to restart, 0 to stop.\n';

/** Whether qemu-io reads LENGTH bytes of BYTE at OFFSET of a qcow2 image (read-only, force-share). */
function holds(disk: string, byte: number, offset: string, length = '64k'): boolean {
  const out = execFileSync(
    'qemu-io',
    ['-r', '-U', '-f', 'qcow2', '-c', `read -P ${byte} ${offset} ${length}`, disk],
    { encoding: 'utf8' },
  );
  return !out.includes('Pattern verification failed');
}

/** The size of the VM's disk as its running QEMU has it open (QMP query-block on qvm's socket). */
async function sizeSeenByQemu(manifest: string): Promise<number> {
  const qmp = path.join(box.vmDir(manifest, 'web'), 'qmp.sock');
  const r = await box.run(['monitor', '--socket', qmp, '{"execute": "query-block"}']);
  expect(r.exitCode, r.stderr).toBe(0);
  const devices = JSON.parse(r.stdout) as {
    device: string;
    inserted?: { image: { 'virtual-size': number } };
  }[];
  return devices.find((d) => d.device === 'disk0')!.inserted!.image['virtual-size'];
}

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

describe.concurrent('apply --dry-run', () => {
  it('prints the plan, exactly as plan does, and changes nothing: no disk, no QEMU, no lock taken', {
    timeout: 60_000,
  }, async () => {
    const dir = path.join(box.root, 'dry');
    const file = writeManifest(path.join(dir, 'm.yaml'), {
      web: bareVm({ disk: { path: 'd.qcow2', size: '16M' } }),
    });
    const plan = await box.run(['plan', '-f', file], dir);
    expect(plan).toEqual({
      exitCode: 0,
      stdout: `  + web   start (creates d.qcow2, 16M)\n\n${PLAN_ONE_START}`,
      stderr: '',
    });
    // Another qvm holds the lock: a dry run only reads, so it neither waits nor fails.
    const holder = await holdLock(file, box.runtime);
    const dry = await box.run(['apply', '--dry-run', '--no-wait', '-f', file], dir);
    expect(dry).toEqual(plan);
    const json = await box.run(['apply', '--dry-run', '-o', 'json', '-f', file], dir);
    expect(json.exitCode).toBe(0);
    expect(JSON.parse(json.stdout).plan).toMatchObject({
      summary: { start: 1 },
      changes: [{ action: 'start', vm: 'web', createDisk: { path: path.join(dir, 'd.qcow2') } }],
    });
    expect(holder.exit).toBeUndefined();
    holder.child.kill('SIGTERM');
    await holder.exited;
    expect(existsSync(path.join(dir, 'd.qcow2'))).toBe(false);
    expect(qemusUnder(dir)).toEqual([]);
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toEqual([]);
    // A plan with a problem is exit 1 in a dry run too, as in plan.
    writeManifest(file, { web: bareVm({ disk: 'missing.qcow2' }) });
    const problem = await box.run(['apply', '--dry-run', '-f', file], dir);
    expect(problem.exitCode).toBe(1);
    expect(problem.stdout).toContain('missing.qcow2 does not exist; set disk.size (or disk.backing)');
    expect(qemusUnder(dir)).toEqual([]);
  });
});

describe.concurrent('state: stopped of a VM qvm started', () => {
  const dir = path.join(box.root, 'acpi');
  const file = path.join(dir, 'm.yaml');
  let port = 0;
  let pid = 0;

  it.sequential('presses the ACPI power button; the guest powers itself off; QEMU is gone', {
    timeout: 120_000,
  }, async () => {
    [port] = (await freePorts(1)) as [number];
    writeManifest(file, { web: demoVm('web', { forwards: [{ host: port, guest: 80 }] }) });
    expect((await box.run(['apply', '-f', file], dir)).exitCode).toBe(0);
    expect((await waitForHttp(url(port), 60_000)).body).toContain(GUEST_HELLO);
    pid = box.readPid(file, 'web');
    const serialLog = path.join(box.vmDir(file, 'web'), 'serial.log');

    writeManifest(file, { web: demoVm('web', { forwards: [{ host: port, guest: 80 }], state: 'stopped' }) });
    expect((await box.run(['plan', '-f', file], dir)).stdout).toBe(
      '  - web   stop: state is stopped\n\nPlan: 0 to start, 0 to change live, 0 to restart, 1 to stop.\n',
    );
    const r = await box.run(['apply', '-f', file], dir);
    expect(r.exitCode, r.stderr).toBe(0);
    // The guest answered the button (not a quit at the stop timeout, not a kill).
    expect(normalize(r.stdout)).toContain(
      '\nweb: stopping\nweb: powering off (ACPI)\nweb: quitting\nweb: stopped (guest powered off) in T\n',
    );
    expect(isRunning(pid)).toBe(false);
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toEqual([]);
    const serial = readFileSync(serialLog, 'utf8');
    expect(serial).toContain('qvm-guest: ACPI power button pressed, powering off');
    expect(serial).toContain('qvm-guest: shutting down');
    expect((await statusJson(box, file))[0]).toMatchObject({ name: 'web', state: 'stopped', pid: null });
    expect((await box.run(['plan', '-f', file], dir)).stdout).toBe(
      'No changes. The VMs match the manifest.\n',
    );
  });

  it.sequential('state: running starts it again, cold, with a new process', {
    timeout: 120_000,
  }, async () => {
    writeManifest(file, { web: demoVm('web', { forwards: [{ host: port, guest: 80 }] }) });
    const r = await box.run(['apply', '-f', file], dir);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain('  + web   start\n');
    const again = box.readPid(file, 'web');
    expect(again).not.toBe(pid);
    expect((await waitForHttp(url(port), 60_000)).body).toContain(GUEST_HELLO);
    expect((await box.run(['destroy', '-f', file], dir)).exitCode).toBe(0);
  });
});

describe.concurrent('disk.backing', () => {
  it('creates an overlay of the base image, which stays byte for byte the same; destroy --delete-disks keeps it', {
    timeout: 90_000,
  }, async () => {
    const dir = path.join(box.root, 'backing');
    mkdirSync(dir, { recursive: true });
    const base = path.join(dir, 'base.qcow2');
    const overlay = path.join(dir, 'overlay.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', base, '16M']);
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xaa 0 1M', base], { stdio: 'ignore' });
    const baseSum = sha256(base);
    const baseTime = statSync(base).mtimeMs;
    const file = writeManifest(path.join(dir, 'm.yaml'), {
      web: bareVm({ disk: { path: 'overlay.qcow2', backing: 'base.qcow2' } }),
    });
    expect((await box.run(['plan', '-f', file], dir)).stdout).toBe(
      `  + web   start (creates overlay.qcow2, overlay of base.qcow2)\n\n${PLAN_ONE_START}`,
    );
    expect((await box.run(['apply', '-f', file], dir)).exitCode).toBe(0);
    const info = JSON.parse(
      execFileSync('qemu-img', ['info', '-U', '-f', 'qcow2', '--output=json', overlay], { encoding: 'utf8' }),
    );
    expect(info).toMatchObject({
      format: 'qcow2',
      'virtual-size': 16 * 2 ** 20,
      'full-backing-filename': base,
      'backing-filename-format': 'qcow2',
    });
    // The VM writes over the base's data and next to it; the writes land in the overlay only.
    for (const command of ['qemu-io disk0 "write -P 0xcd 0 64k"', 'qemu-io disk0 "write -P 0xee 2M 64k"']) {
      const r = await box.run(['monitor', '-f', file, 'web', command], dir);
      expect(r, command).toMatchObject({ exitCode: 0, stderr: '' });
    }
    expect(holds(overlay, 0xcd, '0')).toBe(true);
    expect(holds(overlay, 0xaa, '64k', '960k')).toBe(true); // the rest of the base's data, read through it
    expect(holds(overlay, 0xee, '2M')).toBe(true);
    expect(holds(base, 0xaa, '0', '1M')).toBe(true);
    expect(holds(base, 0, '2M')).toBe(true);

    const destroy = await box.run(['destroy', '-f', file, '--delete-disks'], dir);
    expect(destroy.exitCode, destroy.stderr).toBe(0);
    expect(destroy.stdout).toContain('deleted overlay.qcow2 (created by qvm)');
    expect(existsSync(overlay)).toBe(false);
    expect(sha256(base)).toBe(baseSum);
    expect(statSync(base).mtimeMs).toBe(baseTime);
  });
});

describe.concurrent('a bigger disk for a running VM', () => {
  it('restarts it with the disk grown in between (qemu-img resize), the data kept, the new size seen by QEMU', {
    timeout: 90_000,
  }, async () => {
    const dir = path.join(box.root, 'grow');
    const disk = path.join(dir, 'g.qcow2');
    const file = writeManifest(path.join(dir, 'm.yaml'), {
      web: bareVm({ disk: { path: 'g.qcow2', size: '16M' } }),
    });
    expect((await box.run(['apply', '-f', file], dir)).exitCode).toBe(0);
    const pid = box.readPid(file, 'web');
    const write = await box.run(['monitor', '-f', file, 'web', 'qemu-io disk0 "write -P 0x5a 1M 64k"'], dir);
    expect(write.exitCode, write.stderr).toBe(0);
    expect(await sizeSeenByQemu(file)).toBe(16 * 2 ** 20);

    writeManifest(file, { web: bareVm({ disk: { path: 'g.qcow2', size: '32M' } }) });
    const plan = await box.run(['plan', '-f', file], dir);
    expect(plan.stdout.split('\n')[0]).toBe('-/+ web   restart: disk size 16M -> 32M');
    const r = await box.run(['apply', '-f', file], dir);
    expect(r.exitCode, r.stderr).toBe(0);
    // In this order: the old process stops (freeing the image), the disk grows, the new process starts.
    const steps = r.stdout.split('\n').filter((l) => l.startsWith('web: '));
    const at = (text: string) => steps.findIndex((l) => l.startsWith(`web: ${text}`));
    expect(at('stopping')).toBeGreaterThanOrEqual(0);
    expect(at('growing g.qcow2 to 32M')).toBeGreaterThan(at('stopping'));
    expect(at('starting QEMU')).toBeGreaterThan(at('growing g.qcow2 to 32M'));
    expect(isRunning(pid)).toBe(false);
    expect(box.readPid(file, 'web')).not.toBe(pid);
    expect(imageInfo(disk)).toEqual({ format: 'qcow2', virtualSize: 32 * 2 ** 20 });
    expect(holds(disk, 0x5a, '1M')).toBe(true);
    expect(await sizeSeenByQemu(file)).toBe(32 * 2 ** 20);
    expect((await box.run(['plan', '-f', file], dir)).stdout).toBe(
      'No changes. The VMs match the manifest.\n',
    );
    expect((await box.run(['destroy', '-f', file], dir)).exitCode).toBe(0);
  });
});

describe.concurrent('accel: auto', () => {
  it('probes KVM once per host boot, caches the answer in the runtime root, and starts with what it found', {
    timeout: 90_000,
  }, async ({ annotate }) => {
    const dir = path.join(box.root, 'accel');
    // A runtime root of its own, so this is the first command in it and the probe runs.
    const runtime = path.join(box.root, 'rt-accel');
    mkdirSync(runtime, { mode: 0o700 });
    const run = (args: string[]) => qvm(args, { cwd: dir, env: { QVM_RUNTIME_DIR: runtime } });
    const file = writeManifest(path.join(dir, 'm.yaml'), { web: bareVm({ accel: 'auto' }) });
    const cache = path.join(runtime, 'kvm-probe.json');
    expect(existsSync(cache)).toBe(false);
    const plan = await run(['plan', '-f', file, '-o', 'json']);
    expect(plan.exitCode, plan.stderr).toBe(0);
    const probe = JSON.parse(readFileSync(cache, 'utf8'));
    expect(probe).toEqual({
      usable: expect.any(Boolean),
      reason: expect.any(String),
      bootId: readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(),
    });
    const accel = probe.usable ? 'kvm' : 'tcg';
    await annotate(`KVM probe: ${probe.reason}; accel auto -> ${accel}`);
    const args: string[] = JSON.parse(plan.stdout).changes[0].launch.args;
    expect(args[args.indexOf('-accel') + 1]).toBe(accel);

    const cachedAt = statSync(cache).mtimeMs;
    expect((await run(['apply', '-f', file])).exitCode).toBe(0);
    const pidfile = path.join(namespaceFor(file, runtime).dir, 'web', 'qemu.pid');
    const pid = Number(readFileSync(pidfile, 'utf8'));
    const argv = cmdline(pid);
    expect(argv[argv.indexOf('-accel') + 1]).toBe(accel);
    // Cached: the next commands did not probe again.
    expect(statSync(cache).mtimeMs).toBe(cachedAt);

    // auto and what it resolved to are the same command line: no restart.
    writeManifest(file, { web: bareVm({ accel }) });
    expect((await run(['plan', '-f', file])).stdout).toBe('No changes. The VMs match the manifest.\n');
    // A restart shows the accelerator on its command line.
    writeManifest(file, { web: bareVm({ accel: 'auto', memory: '48M' }) });
    const restart = await run(['plan', '-f', file]);
    expect(restart.stdout).toContain(
      `\n              -accel ${accel}\n            - -m 32\n            + -m 48\n`,
    );
    expect((await run(['destroy', '-f', file])).exitCode).toBe(0);
    await until('QEMU gone', () => !isRunning(pid));
  });
});
