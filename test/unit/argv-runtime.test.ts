import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { launchSpec } from '../../src/plan/launch.js';
import { argvLines, buildQemuArgs, optionValue, restartRelevantArgs } from '../../src/qemu/argv.js';
import { ensurePrivateDir, namespaceFor, vmPaths } from '../../src/runtime/paths.js';
import { manifest, NS } from '../helpers/builders.js';

describe('qemu argv', () => {
  it('doubles commas so a path cannot add -drive options', () => {
    expect(optionValue('/d/x.qcow2,if=none,file=/etc/shadow')).toBe('/d/x.qcow2,,if=none,,file=/etc/shadow');
    const m = manifest('vms:\n  web:\n    disk: "a,b.qcow2"\n');
    const args = buildQemuArgs(launchSpec(m.vms[0]!, 'tcg', [], undefined), vmPaths(NS, 'web'));
    expect(args).toContain('file=/srv/vms/a,,b.qcow2,format=qcow2,if=virtio,id=disk0');
  });

  it('passes append and args as single argv items, never through a shell', () => {
    const m = manifest(
      'vms:\n  web:\n    kernel: k\n    append: "console=ttyS0; rm -rf /"\n    args: ["-device", "virtio-rng-pci"]\n',
    );
    const args = buildQemuArgs(launchSpec(m.vms[0]!, 'tcg', [], undefined), vmPaths(NS, 'web'));
    expect(args.slice(args.indexOf('-append'), args.indexOf('-append') + 2)).toEqual([
      '-append',
      'console=ttyS0; rm -rf /',
    ]);
    expect(args.slice(-2)).toEqual(['-device', 'virtio-rng-pci']);
  });

  it("starts QEMU without its default devices, adding only the manifest's, the serial port and a VGA", () => {
    const m = manifest(
      'vms:\n  web:\n    disk: web.qcow2\n    cdrom: d.iso\n  bare:\n    nic: ne2k_isa\n    kernel: k\n',
    );
    const web = argvLines(buildQemuArgs(launchSpec(m.vms[0]!, 'tcg', [], undefined), vmPaths(NS, 'web')));
    expect(web).toContain('-nodefaults');
    expect(web).toContain('-vga std');
    // No option ROM: no iPXE network boot attempt; SeaBIOS boots the disk and the CD-ROM itself.
    expect(web).toContain('-device virtio-net-pci,netdev=net0,romfile=');
    expect(web.filter((l) => l.startsWith('-drive') || l.startsWith('-boot'))).toEqual([
      '-drive file=/srv/vms/web.qcow2,format=qcow2,if=virtio,id=disk0',
      '-drive file=/srv/vms/d.iso,format=raw,media=cdrom,readonly=on,if=ide,id=cdrom0',
      '-boot order=cd',
    ]);
    expect(web.filter((l) => l.startsWith('-serial') || l.startsWith('-chardev socket'))).toHaveLength(2);
    const bare = argvLines(buildQemuArgs(launchSpec(m.vms[1]!, 'tcg', [], undefined), vmPaths(NS, 'bare')));
    expect(bare.filter((l) => l.startsWith('-drive') || l.startsWith('-boot'))).toEqual([]);
    // The one ISA NIC has no romfile property: QEMU would refuse to start.
    expect(bare).toContain('-device ne2k_isa,netdev=net0');
  });

  it('adds every device of agent, mounts, data disks and display explicitly, and keeps the VGA VNC shows', () => {
    const m = manifest(
      'vms:\n  dev:\n    disk: os.qcow2\n    disks: [{ path: data.qcow2, size: 1G }]\n    agent: true\n    mounts: [{ host: /srv/src, guest: /src }]\n    display: vnc\n    kernel: k\n',
    );
    const args = buildQemuArgs(launchSpec(m.vms[0]!, 'tcg', [], { format: 'qcow2' }), vmPaths(NS, 'dev'));
    const lines = argvLines(args);
    expect(args.filter((a) => a === '-nodefaults')).toHaveLength(1);
    // One VGA, before anything the manifest adds, so that -vnc has a screen to serve and screendump a picture.
    expect(lines.filter((l) => l.startsWith('-vga') || /^-device (VGA|.*-vga)/.test(l))).toEqual([
      '-vga std',
    ]);
    expect(args.indexOf('-vga')).toBeLessThan(args.indexOf('-vnc'));
    expect(lines).toContain('-vnc unix:/run/qvm/ns/dev/vnc.sock');
    expect(lines.filter((l) => l.startsWith('-device'))).toEqual([
      '-device virtio-net-pci,netdev=net0,romfile=',
      '-device virtio-blk-pci,drive=disk0,bootindex=1',
      '-device virtio-blk-pci,drive=data0,serial=data',
      '-device virtio-serial-pci,id=vser0',
      '-device virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0',
      '-device virtio-9p-pci,fsdev=fs0,mount_tag=qvm0',
    ]);
    // No drive is left to QEMU's defaults: each has an interface (none, with its -device) and an id.
    expect(lines.filter((l) => l.startsWith('-drive'))).toEqual([
      '-drive file=/srv/vms/os.qcow2,format=qcow2,if=none,id=disk0',
      '-drive file=/srv/vms/data.qcow2,format=qcow2,if=none,id=data0',
    ]);
  });

  it('leaves forwards and -loadvm out of the restart comparison', () => {
    const m = manifest('vms:\n  web:\n    forwards: ["tcp::8080-:80"]\n');
    const spec = m.vms[0]!;
    const paths = vmPaths(NS, 'web');
    const a = buildQemuArgs(
      launchSpec(spec, 'tcg', spec.forwards, undefined, { tag: 'ready', kind: 'snapshot' }),
      paths,
    );
    const b = buildQemuArgs(launchSpec(spec, 'tcg', [], undefined), paths);
    expect(restartRelevantArgs(a)).toEqual(restartRelevantArgs(b));
    expect(restartRelevantArgs(a)).toContain('user,id=net0');
    expect(argvLines(['-m', '512', '-daemonize', '-name', 'x'])).toEqual(['-m 512', '-daemonize', '-name x']);
  });
});

describe('runtime folders', () => {
  it('gives two manifests in different folders different namespaces, and the same path the same one', () => {
    const a = namespaceFor('/srv/a/qvm.yaml', '/run/qvm');
    const b = namespaceFor('/srv/b/qvm.yaml', '/run/qvm');
    expect(a.id).not.toBe(b.id);
    expect(namespaceFor('/srv/a/qvm.yaml', '/run/qvm')).toEqual(a);
    expect(vmPaths(a, 'web').qmp).toBe(`/run/qvm/${a.id}/web/qmp.sock`);
  });

  it('names a namespace by the SHA-256 of its manifest path, as every qvm version did (running VMs keep theirs)', () => {
    // Computed in JavaScript since namespaces stopped loading node:crypto: the ids must not change.
    expect(namespaceFor('/srv/a/qvm.yaml', '/run/qvm').id).toBe('a7f89b6740e90533');
    for (const file of [
      '/srv/a/qvm.yaml',
      '/srv/ünï/qvm.yaml',
      `/${'long/'.repeat(40)}qvm.yaml`,
      '/x 🙂/q.yaml',
    ])
      expect(namespaceFor(file, '/run/qvm').id).toBe(
        createHash('sha256').update(file).digest('hex').slice(0, 16),
      );
  });

  it('keeps socket paths short whatever the manifest path', () => {
    const deep = `/${'x'.repeat(200)}/qvm.yaml`;
    const ns = namespaceFor(deep, '/tmp/qvm-0');
    expect(Buffer.byteLength(vmPaths(ns, 'a'.repeat(40)).serial)).toBeLessThanOrEqual(107);
  });

  it('refuses a runtime root too long for unix sockets, saying what to do', () => {
    const ns = namespaceFor('/srv/qvm.yaml', `/${'r'.repeat(90)}`);
    expect(() => vmPaths(ns, 'web')).toThrow(
      /too long for unix sockets .* set QVM_RUNTIME_DIR to a shorter folder/,
    );
  });

  it('refuses VM names that could leave the folder', () => {
    expect(() => vmPaths(NS, '../etc')).toThrow('invalid VM name "../etc"');
  });

  it('creates private folders and refuses ones open to others', () => {
    const base = mkdtempSync(path.join(tmpdir(), 'qvm-rt-'));
    try {
      const dir = path.join(base, 'a', 'b');
      ensurePrivateDir(dir);
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      const open = path.join(base, 'open');
      mkdirSync(open);
      chmodSync(open, 0o755);
      expect(() => ensurePrivateDir(open)).toThrow(
        `${open} is open to other users (mode 755); qvm keeps monitor sockets there. Run: chmod 700 ${open}`,
      );
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});
