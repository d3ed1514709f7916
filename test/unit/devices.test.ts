/**
 * Guest integration without a guest: what `agent:`, `mounts:`, `disks:` and `display:` become on the QEMU
 * command line, what the manifest checks refuse, what the plan does with them, the seed's mount lines, the
 * PPM to PNG conversion, and the agent client's framing against a socket that speaks like qemu-ga.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inflateSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { formatDiagnostic } from '../../src/errors.js';
import { AgentSession, AgentUnavailableError, withAgent } from '../../src/guest/agent.js';
import { mergeUserData } from '../../src/guest/cloud-init.js';
import { parseYaml } from '../../src/manifest/load.js';
import { checkManifest } from '../../src/manifest/validate.js';
import { launchSpec } from '../../src/plan/launch.js';
import { plan } from '../../src/plan/plan.js';
import { renderPlan } from '../../src/plan/render.js';
import { buildQemuArgs } from '../../src/qemu/argv.js';
import { PNG_SIGNATURE, ppmToPng } from '../../src/qemu/screendump.js';
import { vmPaths } from '../../src/runtime/paths.js';
import {
  disk,
  manifest,
  missingDisk,
  NS,
  observation,
  runningAsSpecified,
  stopped,
} from '../helpers/builders.js';

const scratch = mkdtempSync(path.join(tmpdir(), 'qvm-devices-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function problems(text: string): string[] {
  return checkManifest(parseYaml(text, 'vm.yaml'), '/srv/vms').diagnostics.map(formatDiagnostic);
}

function argsOf(text: string): string[] {
  const m = manifest(text);
  return buildQemuArgs(launchSpec(m.vms[0]!, 'tcg', [], { format: 'qcow2' }), vmPaths(NS, m.vms[0]!.name));
}

/** The argv items from the first `-drive` up to (not including) the first item after the last virtio disk. */
function diskArgs(args: string[]): string[] {
  const first = args.indexOf('-drive');
  let last = first;
  for (let i = first; i < args.length; i++) if (args[i] === '-drive' || args[i] === '-device') last = i + 1;
  return args
    .slice(first, last + 1)
    .filter((a, i, all) => !(a === '-device' && !all[i + 1]?.includes('blk')));
}

describe('argv', () => {
  it('gives the agent a virtio-serial port on the VM socket', () => {
    const args = argsOf('vms:\n  dev:\n    agent: true\n');
    const i = args.indexOf('-chardev', args.indexOf('chardev:serial0'));
    expect(args.slice(i, i + 6)).toEqual([
      '-chardev',
      'socket,id=qga0,path=/run/qvm/ns/dev/qga.sock,server=on,wait=off',
      '-device',
      'virtio-serial-pci,id=vser0',
      '-device',
      'virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0',
    ]);
  });

  it('keeps the OS disk first in PCI order when there are data disks, each with its serial, the seed last', () => {
    const args = argsOf(
      'vms:\n  dev:\n    disk: os.qcow2\n    disks: [{ path: data/dev-data.qcow2, size: 1G }, { path: scratch.img, format: raw, serial: scr }]\n',
    );
    const i = args.indexOf('-drive');
    expect(args.slice(i, i + 12)).toEqual([
      '-drive',
      'file=/srv/vms/os.qcow2,format=qcow2,if=none,id=disk0',
      '-device',
      'virtio-blk-pci,drive=disk0,bootindex=1',
      '-drive',
      'file=/srv/vms/data/dev-data.qcow2,format=qcow2,if=none,id=data0',
      '-device',
      'virtio-blk-pci,drive=data0,serial=dev-data',
      '-drive',
      'file=/srv/vms/scratch.img,format=raw,if=none,id=data1',
      '-device',
      'virtio-blk-pci,drive=data1,serial=scr',
    ]);
    // Without data disks the OS disk line is as earlier versions wrote it (no restart for their VMs).
    expect(diskArgs(argsOf('vms:\n  dev:\n    disk: os.qcow2\n'))).toContain(
      'file=/srv/vms/os.qcow2,format=qcow2,if=virtio,id=disk0',
    );
  });

  it('shares folders over 9p, read-only unless writable, with security_model=none', () => {
    mkdirSync(path.join(scratch, 'src'), { recursive: true });
    const args = argsOf(
      `vms:\n  dev:\n    mounts: [{ host: ${scratch}/src, guest: /src, writable: true }, { host: "${scratch}/a,b", guest: /ro }]\n`,
    );
    const i = args.indexOf('-fsdev');
    expect(args.slice(i, i + 8)).toEqual([
      '-fsdev',
      `local,id=fs0,path=${scratch}/src,security_model=none`,
      '-device',
      'virtio-9p-pci,fsdev=fs0,mount_tag=qvm0',
      '-fsdev',
      `local,id=fs1,path=${scratch}/a,,b,security_model=none,readonly=on`,
      '-device',
      'virtio-9p-pci,fsdev=fs1,mount_tag=qvm1',
    ]);
  });

  it('serves VNC on the private socket, or on the address and port given (127.0.0.1 by default)', () => {
    const socket = argsOf('vms:\n  dev:\n    display: vnc\n');
    expect(socket[socket.indexOf('-vnc') + 1]).toBe('unix:/run/qvm/ns/dev/vnc.sock');
    const tcp = argsOf('vms:\n  dev:\n    display: { vnc: { port: 5901 } }\n');
    expect(tcp[tcp.indexOf('-vnc') + 1]).toBe('127.0.0.1:1');
    const open = argsOf('vms:\n  dev:\n    display: { vnc: { port: 5999, address: 0.0.0.0 } }\n');
    expect(open[open.indexOf('-vnc') + 1]).toBe('0.0.0.0:99');
    expect(argsOf('vms:\n  dev: {}\n')).not.toContain('-vnc');
  });
});

describe('manifest checks', () => {
  it('refuses what cannot work, each at its field', () => {
    expect(
      problems(
        [
          'vms:',
          '  a:',
          '    disk: a.qcow2',
          '    snapshot: warm',
          '    ready: { agent: true }',
          '    mounts: [{ host: /srv, guest: /srv }, { host: /tmp, guest: /srv }]',
          '    disks: [{ path: d/x.qcow2, size: 1G }, { path: e/x.img, format: raw }, { path: a.qcow2 }]',
          '  b:',
          '    monitor: /run/b.sock',
          '    agent: true',
          '    display: vnc',
          '',
        ].join('\n'),
      ),
    ).toEqual([
      'vm.yaml:4:15: vms.a.snapshot: with `mounts` needs `agent: true`: QEMU refuses to save a VM while a 9p share is mounted in the guest; with the agent qvm unmounts the shares before saving and mounts them again after a resume',
      'vm.yaml:5:21: vms.a.ready.agent: needs `agent: true`: the probe asks the guest agent',
      'vm.yaml:6:64: vms.a.mounts[1].guest: is also where mounts[0] is mounted',
      'vm.yaml:7:44: vms.a.disks[1]: has the serial "x" of disks[0]; give one of them `serial:` so the guest can tell them apart',
      'vm.yaml:7:69: vms.a.disks[1].format: must be qcow2 with `snapshot`: QEMU saves a snapshot into every writable disk, and a raw disk cannot hold one',
      'vm.yaml:7:84: vms.a.disks[2].path: is also the disk of this VM (vm.yaml:3); a disk is attached once',
      "vm.yaml:10:12: vms.b.agent: cannot be used with `monitor`: qvm does not choose an adopted VM's devices",
      "vm.yaml:11:14: vms.b.display: cannot be used with `monitor`: qvm does not choose an adopted VM's devices",
    ]);
  });

  it('checks guest paths, serials and VNC ports in the schema', () => {
    expect(
      problems(
        'vms:\n  a:\n    mounts: [{ host: x, guest: "rel dir" }]\n    disks: [{ path: d.qcow2, serial: "way-too-long-serial-number" }]\n    display: { vnc: { port: 80 } }\n',
      ),
    ).toEqual([
      'vm.yaml:3:32: vms.a.mounts[0].guest: must be an absolute guest path of letters, digits and . _ / @ + -, got "rel dir"',
      "vm.yaml:4:38: vms.a.disks[0].serial: must be 1 to 20 letters, digits, '.', '_' or '-', got \"way-too-long-serial-number\"",
      'vm.yaml:5:29: vms.a.display.vnc.port: must be an integer from 5900 to 65535, got 80',
    ]);
  });

  it('reads mounts with tags in order, ~ as the home folder, read-only by default; serials from file names', () => {
    const vm = manifest(
      'vms:\n  a:\n    mounts: [{ host: src, guest: /home/dev/src/, writable: true }, { host: ~/go, guest: /go }]\n    disks: [{ path: disks/my.data.disk.qcow2, size: 2G }]\n',
    ).vms[0]!;
    expect(vm.mounts).toEqual([
      { host: '/srv/vms/src', guest: '/home/dev/src', writable: true, tag: 'qvm0', index: 0 },
      { host: path.join(process.env.HOME ?? '', 'go'), guest: '/go', writable: false, tag: 'qvm1', index: 1 },
    ]);
    expect(vm.dataDisks).toEqual([
      {
        path: '/srv/vms/disks/my.data.disk.qcow2',
        format: 'qcow2',
        sizeBytes: 2 * 2 ** 30,
        serial: 'my.data.disk',
        index: 0,
      },
    ]);
  });
});

describe('plan', () => {
  const options = { namespace: NS, prune: false };

  it('creates a missing data disk, grows a smaller one, and refuses to shrink', () => {
    const m = manifest(
      'vms:\n  a:\n    disk: a.qcow2\n    disks: [{ path: new.qcow2, size: 1G }, { path: old.qcow2, size: 2G }]\n',
    );
    const p = plan(
      m,
      observation([
        stopped('a', {
          disk: disk('/srv/vms/a.qcow2'),
          dataDisks: [
            missingDisk('/srv/vms/new.qcow2'),
            disk('/srv/vms/old.qcow2', { virtualSizeBytes: 2 ** 30 }),
          ],
        }),
      ]),
      options,
    );
    expect(p.changes).toMatchObject([
      {
        action: 'start',
        createDataDisks: [{ path: '/srv/vms/new.qcow2', sizeBytes: 2 ** 30, format: 'qcow2' }],
        growDataDisks: [
          { path: '/srv/vms/old.qcow2', format: 'qcow2', fromBytes: 2 ** 30, toBytes: 2 * 2 ** 30 },
        ],
      },
    ]);
    expect(renderPlan(p).split('\n')[0]).toBe(
      '  + a   start (creates data disk new.qcow2, 1G; grows old.qcow2 1G -> 2G)',
    );
    const shrink = plan(
      m,
      observation([
        stopped('a', {
          disk: disk('/srv/vms/a.qcow2'),
          dataDisks: [
            disk('/srv/vms/new.qcow2', { virtualSizeBytes: 2 ** 30 }),
            disk('/srv/vms/old.qcow2', { virtualSizeBytes: 4 * 2 ** 30 }),
          ],
        }),
      ]),
      options,
    );
    expect(shrink.changes).toEqual([]);
    expect(shrink.problems.map((x) => x.message)).toEqual([
      'is 2G but old.qcow2 is already 4G; qvm never shrinks a disk (it would cut off data)',
    ]);
  });

  it('restarts a running VM to grow its data disk', () => {
    const m = manifest('vms:\n  a:\n    disks: [{ path: d.qcow2, size: 2G }]\n');
    const running = runningAsSpecified(m, 'a', {
      dataDisks: [disk('/srv/vms/d.qcow2', { virtualSizeBytes: 2 ** 30 })],
    });
    const p = plan(m, observation([running]), options);
    expect(renderPlan(p).split('\n')[0]).toBe('-/+ a   restart: size of d.qcow2 1G -> 2G');
  });

  it('refuses a share whose host folder is missing, at its mount', () => {
    const m = manifest(`vms:\n  a:\n    mounts: [{ host: ${scratch}/absent, guest: /x }]\n`);
    const p = plan(m, observation([stopped('a')]), options);
    expect(p.problems.map((x) => x.message)).toEqual([
      `${scratch}/absent does not exist; create it or fix the path`,
    ]);
    expect(p.problems[0]!.location?.path).toBe('vms.a.mounts[0].host');
  });

  it('sets the clock through the agent after a warm resume, and handles shares around the save', () => {
    mkdirSync(path.join(scratch, 'src'), { recursive: true });
    const text = `vms:\n  a:\n    disk: a.qcow2\n    agent: true\n    ready: { agent: true }\n    snapshot: warm\n    mounts: [{ host: ${scratch}/src, guest: /src }]\n`;
    const m = manifest(text);
    const cold = plan(m, observation([stopped('a', { disk: disk('/srv/vms/a.qcow2') })]), options);
    expect(cold.changes).toMatchObject([
      { action: 'start', saveSnapshot: 'warm', shareAgent: '/run/qvm/ns/a/qga.sock' },
    ]);
    const warm = plan(
      m,
      observation([stopped('a', { disk: disk('/srv/vms/a.qcow2', { snapshots: ['warm'] }) })]),
      options,
    );
    expect(warm.changes).toMatchObject([
      {
        action: 'start',
        bootFrom: { tag: 'warm', kind: 'snapshot' },
        syncClock: { agent: '/run/qvm/ns/a/qga.sock' },
        shareAgent: '/run/qvm/ns/a/qga.sock',
      },
    ]);
  });

  it('shows turning the agent on as a restart', () => {
    const before = manifest('vms:\n  a: {}\n');
    const after = manifest('vms:\n  a:\n    agent: true\n');
    const p = plan(after, observation([runningAsSpecified(before, 'a')]), options);
    expect(renderPlan(p).split('\n')[0]).toBe('-/+ a   restart: agent false -> true');
  });
});

describe('the seed mounts the shares', () => {
  it('writes fstab lines and mounts, giving folders made in the ssh user home to that user', () => {
    const merged = mergeUserData('#cloud-config\nruncmd:\n  - [make, -C, /src]\n', undefined, [
      { tag: 'qvm0', guest: '/src', writable: true },
      { tag: 'qvm1', guest: '/home/dev/.cache/go', writable: false },
    ]);
    expect(merged).toContain('runcmd:\n  - - sh\n    - -c\n');
    const script = /- -c\n {4}- (.*)\n/.exec(merged)?.[1];
    expect(script).toBe(
      "sed -i '/^qvm[0-9]* .* 9p /d' /etc/fstab; echo 'qvm0 /src 9p trans=virtio,version=9p2000.L,nofail,rw 0 0' >> /etc/fstab; mkdir -p /src; echo 'qvm1 /home/dev/.cache/go 9p trans=virtio,version=9p2000.L,nofail,ro 0 0' >> /etc/fstab; mkdir -p /home/dev/.cache/go; mount -a -t 9p",
    );
    // The user's own runcmd comes after qvm's.
    expect(merged.indexOf('[ make, -C, /src ]')).toBeGreaterThan(merged.indexOf('mount -a -t 9p'));
    const withUser = mergeUserData(
      '#cloud-config\n',
      { user: 'dev', authorizedKey: 'k', hostKey: { privateKey: 'p', publicKey: 'q' } },
      [{ tag: 'qvm0', guest: '/home/dev/.cache/go', writable: false }],
    );
    expect(withUser).toContain('chown dev: /home/dev/.cache /home/dev/.cache/go; mount -a -t 9p');
  });
});

describe('screendump', () => {
  it('turns a PPM into a PNG that decodes to the same pixels', () => {
    const width = 3;
    const height = 2;
    const pixels = Buffer.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9, 100, 150, 200, 0, 0, 0]);
    const png = ppmToPng(Buffer.concat([Buffer.from(`P6\n${width} ${height}\n255\n`), pixels]));
    expect(png.subarray(0, 8)).toEqual(PNG_SIGNATURE);
    expect(png.readUInt32BE(16)).toBe(width);
    expect(png.readUInt32BE(20)).toBe(height);
    const idat = png.indexOf('IDAT');
    const raw = inflateSync(png.subarray(idat + 4, idat + 4 + png.readUInt32BE(idat - 4)));
    expect(raw).toEqual(
      Buffer.concat([Buffer.from([0]), pixels.subarray(0, 9), Buffer.from([0]), pixels.subarray(9)]),
    );
    expect(() => ppmToPng(Buffer.from('P3\n1 1\n255\n0 0 0\n'))).toThrow('not a binary PPM');
  });
});

describe('the agent client', () => {
  /** A socket that answers like qemu-ga: a stale reply first, replies glued to a 0xFF, late sync answers. */
  async function fakeAgent(onLine: (line: string, reply: (text: string | Buffer) => void) => void) {
    const socket = path.join(scratch, `qga-${Math.random().toString(16).slice(2)}.sock`);
    const server = net.createServer((conn) => {
      let buffer = '';
      conn.on('data', (chunk) => {
        buffer += chunk.toString('latin1');
        for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
          const line = buffer.slice(0, i).replace(/^\xff/, '');
          buffer = buffer.slice(i + 1);
          onLine(line, (text) => conn.write(text));
        }
      });
    });
    await new Promise<void>((r) => server.listen(socket, r));
    return { socket, close: () => new Promise<void>((r) => server.close(() => r())) };
  }

  it('syncs past stale replies and 0xFF bytes, skips late sync answers, and keeps replies in order', async () => {
    let syncs = 0;
    const agent = await fakeAgent((line, reply) => {
      const { execute, arguments: args } = JSON.parse(line);
      if (execute === 'guest-sync-delimited') {
        syncs++;
        // The first sync goes unanswered (an agent still starting); the second gets a stale reply first.
        if (syncs === 1) return;
        reply(
          Buffer.concat([
            Buffer.from('{"return": {"stale": true}}\n'),
            Buffer.from([0xff]),
            Buffer.from(`{"return": ${args.id}}\n`),
          ]),
        );
        return;
      }
      if (execute === 'guest-ping') reply('{"return": {}}\n');
      if (execute === 'guest-info') reply('{"return": {"version": "7.2.22"}}\n');
      if (execute === 'guest-bogus')
        reply(
          '{"error": {"class": "CommandNotFound", "desc": "The command guest-bogus has not been found"}}\n',
        );
    });
    try {
      const result = await withAgent(agent.socket, async (a) => [
        await a.call('guest-ping'),
        await a.call('guest-info'),
        await a.call('guest-bogus').catch((e: Error) => e.message),
      ]);
      expect(syncs).toBe(2);
      expect(result).toEqual([
        {},
        { version: '7.2.22' },
        'guest-bogus: The command guest-bogus has not been found',
      ]);
    } finally {
      await agent.close();
    }
  });

  it('says "not answering" within the deadline when nothing answers, and "no channel" when there is no socket', async () => {
    const silent = await fakeAgent(() => {});
    try {
      await expect(AgentSession.open(silent.socket, { syncTimeoutMs: 1500 })).rejects.toThrow(
        'the guest agent did not answer within 2s (is qemu-guest-agent installed and running in the guest?)',
      );
    } finally {
      await silent.close();
    }
    const missing = path.join(scratch, 'none.sock');
    const error = await AgentSession.open(missing).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AgentUnavailableError);
    expect((error as Error).message).toBe(
      `no guest agent channel at ${missing} (is the VM running, with agent: true?)`,
    );
  });
});
