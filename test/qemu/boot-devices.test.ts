/**
 * qvm starts QEMU with -nodefaults and adds only the manifest's devices, the NIC without its boot ROM: SeaBIOS
 * must still boot a disk, and an installer CD-ROM behind an empty disk (`-boot order=cd`). The guests are
 * boot sectors made here that write a line to the serial port; `qvm logs --serial` shows it. The devices of
 * agent:, mounts:, disks: and display: are explicit too, and the VGA that VNC and `qvm screenshot` need is there.
 */
import { mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { qvm } from '../helpers/cli.js';
import { killQemusUnder, privateDir, writeManifest } from '../helpers/env.js';
import { decodePng } from '../helpers/png.js';
import { until } from '../helpers/processes.js';
import { removeDir, tempDir } from '../helpers/qemu.js';

const runtime = privateDir('qvmb-');
const root = tempDir('qvmbm-');

afterAll(async () => {
  await killQemusUnder(runtime);
  removeDir(runtime);
  removeDir(root);
});

/** A 512-byte x86 boot sector that writes MESSAGE to COM1 (port 0x3f8) and halts. */
function bootSector(message: string): Buffer {
  const sector = Buffer.alloc(512);
  const code = [
    0xfa, // cli
    0x31,
    0xc0, // xor ax, ax
    0x8e,
    0xd8, // mov ds, ax
    0xbe,
    0x16,
    0x7c, // mov si, 0x7c16 (the message, right after this code)
    0xba,
    0xf8,
    0x03, // mov dx, 0x3f8
    0xac, // next: lodsb
    0x84,
    0xc0, // test al, al
    0x74,
    0x03, // jz halt
    0xee, // out dx, al
    0xeb,
    0xf8, // jmp next
    0xf4, // halt: hlt
    0xeb,
    0xfd, // jmp halt
  ];
  Buffer.from(code).copy(sector, 0);
  Buffer.from(`${message}\r\n\0`, 'latin1').copy(sector, code.length);
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

/**
 * An El Torito ISO whose no-emulation boot image is SECTOR: the volume descriptors (primary, boot record,
 * terminator), the boot catalog and the image, in 2048-byte sectors.
 */
function bootIso(sector: Buffer): Buffer {
  const iso = Buffer.alloc(21 * 2048);
  const descriptor = (lba: number, type: number) => {
    iso[lba * 2048] = type;
    iso.write('CD001', lba * 2048 + 1, 'latin1');
    iso[lba * 2048 + 6] = 1;
  };
  descriptor(16, 1);
  iso.writeUInt32LE(21, 16 * 2048 + 80); // volume space size, both byte orders
  iso.writeUInt32BE(21, 16 * 2048 + 84);
  descriptor(17, 0);
  iso.write('EL TORITO SPECIFICATION', 17 * 2048 + 7, 'latin1');
  iso.writeUInt32LE(19, 17 * 2048 + 71); // the boot catalog's sector
  descriptor(18, 255);
  const catalog = 19 * 2048;
  iso[catalog] = 1; // validation entry: header, platform 0 (x86)
  iso[catalog + 30] = 0x55;
  iso[catalog + 31] = 0xaa;
  let sum = 0;
  for (let i = 0; i < 32; i += 2) sum = (sum + iso.readUInt16LE(catalog + i)) & 0xffff;
  iso.writeUInt16LE((0x10000 - sum) & 0xffff, catalog + 28); // the entry's 16-bit words sum to 0
  iso[catalog + 32] = 0x88; // default entry: bootable, no emulation, load segment 0 (0x7c0)
  iso.writeUInt16LE(4, catalog + 32 + 6); // four 512-byte sectors
  iso.writeUInt32LE(20, catalog + 32 + 8); // the image's sector
  sector.copy(iso, 20 * 2048);
  return iso;
}

describe('the lean device set', () => {
  const run = (dir: string, args: string[]) => qvm(args, { cwd: dir, env: { QVM_RUNTIME_DIR: runtime } });
  const serialShows = async (dir: string, vm: string, line: string) => {
    let last = '';
    await until(
      `${vm} printing ${line}`,
      async () => {
        last = (await run(dir, ['logs', vm, '--serial', '-f', 'm.yaml'])).stdout;
        return last.includes(line);
      },
      30_000,
      () => `(serial so far: ${JSON.stringify(last)})`,
    );
  };

  it('boots a disk through SeaBIOS, with no NIC boot ROM, floppy or default CD-ROM', async () => {
    const dir = path.join(root, 'disk');
    writeManifest(dir, {
      disk: { memory: '32M', accel: 'tcg', stopTimeout: '1s', disk: { path: 'boot.img', format: 'raw' } },
    });
    // SeaBIOS cannot read a disk smaller than its geometry (a 256 KiB image fails): 8 MiB, sparse.
    writeFileSync(path.join(dir, 'boot.img'), bootSector('QVM-DISK-BOOTED'));
    truncateSync(path.join(dir, 'boot.img'), 8 * 2 ** 20);
    const applied = await run(dir, ['apply', '-f', 'm.yaml']);
    expect(applied.stderr).toBe('');
    expect(applied.exitCode).toBe(0);
    await serialShows(dir, 'disk', 'QVM-DISK-BOOTED');
    const monitor = await run(dir, ['monitor', '-f', 'm.yaml', 'disk', 'info', 'block']);
    // Only the manifest's disk: no floppy0, no ide1-cd0 of QEMU's defaults.
    expect(monitor.stdout).toMatch(/^disk0 /m);
    expect(monitor.stdout).not.toMatch(/floppy|ide1-cd0|sd0/);
    expect((await run(dir, ['destroy', '-f', 'm.yaml'])).exitCode).toBe(0);
  });

  it('boots the OS disk ahead of a data disk, with the agent channel, a 9p share and VNC; screenshot works', {
    timeout: 60_000,
  }, async () => {
    const dir = path.join(root, 'guest');
    mkdirSync(path.join(dir, 'share'), { recursive: true });
    writeManifest(dir, {
      guest: {
        memory: '64M',
        accel: 'tcg',
        stopTimeout: '1s',
        disk: { path: 'boot.img', format: 'raw' },
        disks: [{ path: 'data.qcow2', size: '16M' }],
        agent: true,
        mounts: [{ host: 'share', guest: '/share' }],
        display: 'vnc',
      },
    });
    writeFileSync(path.join(dir, 'boot.img'), bootSector('QVM-OS-DISK-BOOTED'));
    truncateSync(path.join(dir, 'boot.img'), 8 * 2 ** 20);
    const applied = await run(dir, ['apply', '-f', 'm.yaml']);
    expect(applied.stderr).toBe('');
    expect(applied.exitCode).toBe(0);
    // bootindex=1 on the OS disk: SeaBIOS boots it, not the (empty) data disk.
    await serialShows(dir, 'guest', 'QVM-OS-DISK-BOOTED');
    const block = await run(dir, ['monitor', '-f', 'm.yaml', 'guest', 'info', 'block']);
    expect(block.stdout).toMatch(/^disk0 /m);
    expect(block.stdout).toMatch(/^data0 /m);
    expect(block.stdout).not.toMatch(/floppy|ide1-cd0|sd0/);
    const pci = (await run(dir, ['monitor', '-f', 'm.yaml', 'guest', 'info', 'pci'])).stdout;
    // The machine's own functions (host bridge, ISA bridge, IDE, power management), then only what qvm asked
    // for, in order: the VGA, the NIC, the OS disk, the data disk, the agent's virtio-serial, the 9p share.
    expect([...pci.matchAll(/PCI device ([0-9a-f]{4}:[0-9a-f]{4})/g)].map((m) => m[1])).toEqual([
      '8086:1237',
      '8086:7000',
      '8086:7010',
      '8086:7113',
      '1234:1111',
      '1af4:1000',
      '1af4:1001',
      '1af4:1001',
      '1af4:1003',
      '1af4:1009',
    ]);
    const shot = await run(dir, ['screenshot', 'guest', '-f', 'm.yaml', '-o', 'screen.png']);
    expect(shot).toMatchObject({ exitCode: 0, stdout: 'screen.png\n' });
    const png = decodePng(readFileSync(path.join(dir, 'screen.png')));
    expect(png.width).toBeGreaterThanOrEqual(640);
    expect((await run(dir, ['destroy', '-f', 'm.yaml'])).exitCode).toBe(0);
  });

  it('boots an installer CD-ROM behind an empty disk', async () => {
    const dir = path.join(root, 'cdrom');
    writeManifest(dir, {
      installer: {
        memory: '32M',
        accel: 'tcg',
        stopTimeout: '1s',
        disk: { path: 'empty.qcow2', size: '16M' },
        cdrom: 'installer.iso',
      },
    });
    writeFileSync(path.join(dir, 'installer.iso'), bootIso(bootSector('QVM-CD-BOOTED')));
    const applied = await run(dir, ['apply', '-f', 'm.yaml']);
    expect(applied.stderr).toBe('');
    expect(applied.exitCode).toBe(0);
    await serialShows(dir, 'installer', 'QVM-CD-BOOTED');
    expect((await run(dir, ['destroy', '-f', 'm.yaml'])).exitCode).toBe(0);
  });
});
