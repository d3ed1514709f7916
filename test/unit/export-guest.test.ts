/**
 * The guest-integration fields exported, document for document: `agent:`, `mounts:`, `disks:` (data disks),
 * `display:` and `ready: {agent}`, each as the engine expresses it (the warnings are export-warnings.test.ts's).
 */
import { describe, expect, it } from 'vitest';
import { exportManifest } from '../../src/export/export.js';
import type { ExportOptions, ExportTarget } from '../../src/export/types.js';
import { manifestFrom, parseExported, schemaProblems } from '../helpers/scale-out.js';

const OPTIONS: ExportOptions = {
  artifactBase: 'https://files.example.com/qvm',
  registry: 'registry.example.com/qvm',
};

/** A dev VM with every guest-integration field, its OS disk blank (qvm would create it). */
const DEV = `vms:
  dev:
    accel: kvm
    disk: { path: disks/dev.qcow2, size: 8G }
    agent: true
    mounts:
      - { host: ./src, guest: /home/dev/src, writable: true }
      - { host: ~/docs, guest: /srv/docs }
    disks:
      - { path: disks/data.qcow2, size: 50G }
      - { path: other/dev.qcow2, serial: Extra_1 }
      - { path: disks/scratch.img, format: raw, size: 1G }
    display: vnc
    ready: { agent: true, timeout: 1m }
`;

// biome-ignore lint/suspicious/noExplicitAny: exported documents are read by path
type Doc = Record<string, any>;

function exported(text: string, target: ExportTarget, options: ExportOptions = OPTIONS): Doc[] {
  const manifest = manifestFrom(text);
  const { files } = exportManifest(manifest, target, manifest.vms, options);
  const docs = files.flatMap((f) => parseExported(f.name, f.text)) as Doc[];
  // Every document here must be one the engine's schema accepts, or the exact comparisons below prove little.
  expect(docs.flatMap(schemaProblems)).toEqual([]);
  return docs;
}

function nomadTask(text: string, options?: ExportOptions): Doc {
  return exported(text, 'nomad', options)[0]!.Job.TaskGroups[0].Tasks[0];
}

describe('Nomad', () => {
  it("attaches the data disks after the OS disk with their serials, and asks the driver for the agent's channel", () => {
    const task = nomadTask(DEV);
    expect(task.Config).toEqual({
      // With data disks every disk is a drive with if=none plus a -device, in qvm's order: the driver's image0
      // gets its device first, so the guest still names the OS disk vda.
      image_path: 'local/dev.qcow2',
      drive_interface: 'none',
      accelerator: 'kvm',
      graceful_shutdown: true,
      guest_agent: true,
      args: [
        '-smp',
        '1',
        '-m',
        '512',
        '-device',
        'virtio-blk-pci,drive=image0,bootindex=0',
        '-drive',
        'file=local/data.qcow2,format=qcow2,if=none,id=data0',
        '-device',
        'virtio-blk-pci,drive=data0,serial=data',
        '-drive',
        'file=local/disks-1-dev.qcow2,format=qcow2,if=none,id=data1',
        '-device',
        'virtio-blk-pci,drive=data1,serial=Extra_1',
        '-drive',
        'file=local/scratch.img,format=raw,if=none,id=data2',
        '-device',
        'virtio-blk-pci,drive=data2,serial=scratch',
        '-vnc',
        'unix:vnc.sock',
        '-netdev',
        'user,id=net0',
        '-device',
        'virtio-net-pci,netdev=net0',
      ],
    });
    // The second dev.qcow2 gets a name of its own, and is served under it: two files never share a URL.
    expect(task.Artifacts).toEqual([
      {
        GetterSource: 'https://files.example.com/qvm/dev/dev.qcow2',
        GetterMode: 'file',
        RelativeDest: 'local/dev.qcow2',
      },
      {
        GetterSource: 'https://files.example.com/qvm/dev/data.qcow2',
        GetterMode: 'file',
        RelativeDest: 'local/data.qcow2',
      },
      {
        GetterSource: 'https://files.example.com/qvm/dev/disks-1-dev.qcow2',
        GetterMode: 'file',
        RelativeDest: 'local/disks-1-dev.qcow2',
      },
      {
        GetterSource: 'https://files.example.com/qvm/dev/scratch.img',
        GetterMode: 'file',
        RelativeDest: 'local/scratch.img',
      },
    ]);
  });

  it('keeps a raw OS disk and the seed in that order with data disks, and exports no shared folder', () => {
    const task = nomadTask(
      [
        'vms:',
        '  dev:',
        '    accel: kvm',
        '    disk: { path: disks/dev.img, format: raw }',
        '    disks: [{ path: disks/data.qcow2, size: 2G }]',
        '    mounts: [{ host: ./src, guest: /home/dev/src }]',
        '    ssh: { user: dev }',
        '',
      ].join('\n'),
      { ...OPTIONS, sshKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPx7 me@laptop'] },
    );
    expect(task.Config.image_path).toBe('local/qvm-no-image.img');
    expect(task.Config.drive_interface).toBe('none');
    expect(task.Config.args.slice(4, 16)).toEqual([
      '-drive',
      'file=local/dev.img,format=raw,if=none,id=disk0',
      '-device',
      'virtio-blk-pci,drive=disk0,bootindex=0',
      '-drive',
      'file=local/data.qcow2,format=qcow2,if=none,id=data0',
      '-device',
      'virtio-blk-pci,drive=data0,serial=data',
      '-drive',
      'if=none,format=raw,readonly=on,file.driver=vvfat,file.dir=local/cidata,file.label=cidata,id=seed0',
      '-device',
      'virtio-blk-pci,drive=seed0',
    ]);
    // The driver mounts no folder, so the seed mounts none either (the warning says what to add by hand).
    expect(task.Config.args.join(' ')).not.toContain('9p');
    const userData = task.Templates.find((t: Doc) => t.DestPath === 'local/cidata/user-data');
    expect(userData.EmbeddedTmpl).not.toContain('mount');
  });

  it('serves VNC on an address and port of the client, and reserves the port', () => {
    const job = exported(
      'vms:\n  dev:\n    accel: kvm\n    display: { vnc: { port: 5905, address: 0.0.0.0 } }\n',
      'nomad',
    )[0]!;
    const group = job.Job.TaskGroups[0];
    expect(group.Networks).toEqual([{ ReservedPorts: [{ Label: 'vnc', Value: 5905 }] }]);
    expect(group.Tasks[0].Config.args.slice(4, 6)).toEqual(['-vnc', '0.0.0.0:5']);
    expect(group.Tasks[0].Config.guest_agent).toBeUndefined();
  });
});
