/**
 * Data safety: qvm never damages what is on a disk. A disk that was there before qvm survives every command,
 * `destroy --delete-disks` included; a disk qvm created is deleted only by `destroy --delete-disks`; a disk is
 * never shrunk, and grown only when asked; a disk another QEMU holds is named, not forced; and a VM is never
 * ended by hibernation unless its state was really written.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bareVm,
  imageInfo,
  mountTmpfs,
  qemusWithPidfile,
  sandbox,
  spawnQemu,
  statusJson,
  until,
  warmUp,
  writeManifest,
} from './support.js';

const MiB = 2 ** 20;
/** The pattern written into a disk before qvm sees it: 1 MiB of 0xab at offset 0. */
const PATTERN = { byte: 0xab, bytes: MiB };
/** Hibernation that cannot fit: this much guest RAM, filled with this much random data, on a tmpfs this big. */
const SAVED_MEMORY = '256M';
const SAVED_RANDOM_RAM_MIB = 16;
const SAVED_TMPFS = '8m';

const box = sandbox('qrd');

beforeAll(() => warmUp(box));
afterAll(() => box.cleanup());

function hasQemuIo(): boolean {
  try {
    execFileSync('qemu-io', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A qcow2 image of SIZE with PATTERN written at offset 0, made without qvm. */
function preexistingDisk(file: string, size: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, size]);
  if (hasQemuIo()) {
    execFileSync(
      'qemu-io',
      ['-f', 'qcow2', '-c', `write -P 0x${PATTERN.byte.toString(16)} 0 ${PATTERN.bytes}`, file],
      {
        stdio: 'ignore',
      },
    );
  } else {
    // Without qemu-io: a raw image with the pattern, converted to qcow2.
    const raw = `${file}.raw`;
    writeFileSync(raw, Buffer.alloc(PATTERN.bytes, PATTERN.byte));
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, file]);
    execFileSync('qemu-img', ['resize', '-q', file, size]);
  }
}

/** Whether the guest-visible content still starts with PATTERN (read through the image format, force-share). */
function patternIntact(file: string): boolean {
  if (!existsSync(file)) return false;
  if (hasQemuIo()) {
    const out = execFileSync(
      'qemu-io',
      ['-U', '-r', '-f', 'qcow2', '-c', `read -P 0x${PATTERN.byte.toString(16)} 0 ${PATTERN.bytes}`, file],
      { encoding: 'utf8' },
    );
    return (
      out.includes(`read ${PATTERN.bytes}/${PATTERN.bytes} bytes`) &&
      !out.includes('Pattern verification failed')
    );
  }
  const raw = `${file}.check.raw`;
  execFileSync('qemu-img', ['convert', '-U', '-f', 'qcow2', '-O', 'raw', file, raw]);
  const data = execFileSync('head', ['-c', String(PATTERN.bytes), raw]);
  execFileSync('rm', ['-f', raw]);
  return data.length === PATTERN.bytes && data.every((b) => b === PATTERN.byte);
}

/** validate, plan, apply, status, snapshot list, destroy of MANIFEST (VM web): none may harm a disk. */
function everydayCommands(manifest: string): string[][] {
  return [
    ['validate', '-f', manifest],
    ['plan', '-f', manifest],
    ['apply', '-f', manifest],
    ['status', '-f', manifest],
    ['snapshot', 'list', 'web', '-f', manifest],
    ['destroy', '-f', manifest],
  ];
}

/** Runs the qvm commands in turn: each must exit 0, and HOLDS must still be true after each one. */
async function runEach(commands: string[][], holds: () => boolean): Promise<void> {
  for (const args of commands) {
    const r = await box.run(args);
    expect(r.exitCode, `qvm ${args.join(' ')}: ${r.stderr}`).toBe(0);
    expect(holds(), `after qvm ${args.join(' ')}`).toBe(true);
  }
}

describe('a disk that was there before qvm', () => {
  it('keeps its data through validate, plan, apply, status, snapshot list, destroy and destroy --delete-disks', {
    timeout: 60_000,
  }, async () => {
    const dir = path.join(box.root, 'before');
    const disk = path.join(dir, 'disks', 'web.qcow2');
    preexistingDisk(disk, '64M');
    expect(patternIntact(disk)).toBe(true);
    const file = writeManifest(path.join(dir, 'm.yaml'), {
      web: bareVm({ disk: { path: 'disks/web.qcow2' } }),
    });
    const commands = [
      ...everydayCommands(file),
      ['apply', '-f', file],
      ['destroy', '--delete-disks', '-f', file],
    ];
    await runEach(commands, () => patternIntact(disk));
    expect(imageInfo(disk)).toEqual({ format: 'qcow2', virtualSize: 64 * MiB });
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toHaveLength(0);
  });
});

describe('a disk qvm created', () => {
  it('is deleted only by destroy --delete-disks', { timeout: 60_000 }, async () => {
    const dir = path.join(box.root, 'created');
    const disk = path.join(dir, 'disks', 'web.qcow2');
    const file = writeManifest(path.join(dir, 'm.yaml'), {
      web: bareVm({ disk: { path: 'disks/web.qcow2', size: '64M' } }),
    });
    const apply = await box.run(['apply', '-f', file]);
    expect(apply.exitCode, apply.stderr).toBe(0);
    expect(apply.stdout).toContain('web: creating disks/web.qcow2');
    await runEach([...everydayCommands(file), ['plan', '-f', file]], () => existsSync(disk));
    const destroy = await box.run(['destroy', '--delete-disks', '-f', file]);
    expect(destroy.exitCode, destroy.stderr).toBe(0);
    expect(destroy.stdout).toContain('web: deleted disks/web.qcow2 (created by qvm)');
    expect(existsSync(disk)).toBe(false);
  });
});

describe('disk size', () => {
  it('a manifest size below the disk is a plan error ("never shrinks"); above it, apply grows the stopped disk', {
    timeout: 60_000,
  }, async () => {
    const dir = path.join(box.root, 'size');
    const disk = path.join(dir, 'disks', 'web.qcow2');
    preexistingDisk(disk, '128M');
    const file = path.join(dir, 'm.yaml');
    writeManifest(file, { web: bareVm({ disk: { path: 'disks/web.qcow2', size: '64M' } }) });
    const plan = await box.run(['plan', '-f', file]);
    expect(plan.exitCode).toBe(1);
    expect(plan.stdout).toContain('never shrinks');
    expect(plan.stdout).toMatch(/vms\.web\.disk\.size: is 64M but disks\/web\.qcow2 is already 128M/);
    const refused = await box.run(['apply', '-f', file]);
    expect(refused.exitCode).toBe(1);
    expect(imageInfo(disk).virtualSize).toBe(128 * MiB);
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toHaveLength(0);

    writeManifest(file, { web: bareVm({ disk: { path: 'disks/web.qcow2', size: '256M' } }) });
    const grow = await box.run(['apply', '-f', file]);
    expect(grow.exitCode, grow.stderr).toBe(0);
    expect(grow.stdout).toContain('grows the disk 128M -> 256M');
    expect(imageInfo(disk).virtualSize).toBe(256 * MiB);
    expect(patternIntact(disk)).toBe(true);
    const again = await box.run(['plan', '-f', file]);
    expect(again.stdout).toContain('No changes.');
  });
});

describe('a disk locked by another QEMU', () => {
  it('apply fails naming the image and who holds it ("is in use by")', { timeout: 30_000 }, async () => {
    const dir = path.join(box.root, 'locked');
    const disk = path.join(dir, 'disks', 'web.qcow2');
    preexistingDisk(disk, '64M');
    const other = spawnQemu(['-drive', `file=${disk},format=qcow2,if=virtio`]);
    // Locked once qemu-img (without force-share) cannot open it for reading any more.
    await until('the other QEMU locks the disk', () => {
      try {
        execFileSync('qemu-img', ['info', disk], { stdio: 'pipe' });
        return false;
      } catch {
        return true;
      }
    });
    expect(other.exit).toBeUndefined();
    const file = writeManifest(path.join(dir, 'm.yaml'), {
      web: bareVm({ disk: { path: 'disks/web.qcow2' } }),
    });
    const r = await box.run(['apply', '-f', file]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`the disk ${disk} is in use by QEMU pid ${other.pid}`);
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toHaveLength(0);
    expect(patternIntact(disk)).toBe(true);
    other.child.kill('SIGKILL');
    await other.exited;
  });
});

describe('hibernation that cannot fit on the disk', () => {
  const dir = path.join(box.root, 'saved');
  const file = path.join(dir, 'm.yaml');
  const blob = path.join(box.root, 'ram.bin');
  // The generic loader puts random data in guest RAM, so the saved state cannot be squeezed to nothing.
  const vm = (extra: Record<string, unknown> = {}) =>
    bareVm({
      memory: SAVED_MEMORY,
      disk: { path: 'disks/web.qcow2', size: '64M' },
      args: [
        '-global',
        'virtio-net-pci.romfile=',
        '-device',
        `loader,file=${blob},addr=0x2000000,force-raw=on`,
      ],
      ...extra,
    });

  beforeAll(async () => {
    writeFileSync(blob, randomBytes(SAVED_RANDOM_RAM_MIB * MiB));
    mountTmpfs(path.join(dir, 'disks'), `size=${SAVED_TMPFS}`);
    writeManifest(file, { web: vm() });
    const r = await box.run(['apply', '-f', file]);
    expect(r.exitCode, r.stderr).toBe(0);
  });

  it('apply (state: saved) exits 1 and the VM is still running: never quit without the snapshot written', {
    timeout: 60_000,
  }, async () => {
    const pid = box.readPid(file, 'web');
    writeManifest(file, { web: vm({ state: 'saved' }) });
    const r = await box.run(['apply', '-f', file]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('error: web: saving state (savevm qvm-saved-state)');
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toEqual([pid]);
    const [row] = await statusJson(box, file);
    expect(row).toMatchObject({ name: 'web', state: 'running', pid });
    const snapshots = execFileSync(
      'qemu-img',
      ['snapshot', '-U', '-l', path.join(dir, 'disks', 'web.qcow2')],
      {
        encoding: 'utf8',
      },
    );
    expect(snapshots).not.toContain('qvm-saved-state');
  });

  it("`qvm monitor VM savevm` that QEMU fails to write exits 1 with QEMU's message", {
    timeout: 30_000,
  }, async () => {
    // QEMU prints "failed to save SaveStateEntry ..." first and "Error: Error while writing VM state" second.
    const r = await box.run(['monitor', '-f', file, 'web', 'savevm', 'by-hand']);
    expect(r.stderr).toContain('Error while writing VM state');
    expect(r.exitCode).toBe(1);
  });
});
