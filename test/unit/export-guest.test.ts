/**
 * The guest-integration fields exported, document for document: `agent:`, `mounts:`, `disks:` (data disks),
 * `display:` and `ready: {agent}`, each as the engine expresses it (the warnings are export-warnings.test.ts's).
 */
import { describe, expect, it } from 'vitest';
import { exportManifest } from '../../src/export/export.js';
import { dataVolumeNames } from '../../src/export/kubevirt.js';
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

describe('KubeVirt', () => {
  it('makes each data disk a DataVolume with its serial, each mount a virtiofs filesystem, and pings the agent', () => {
    const [vm] = exported(DEV, 'kubevirt');
    expect(vm!.spec.dataVolumeTemplates).toEqual([
      {
        metadata: { name: 'dev-disk' },
        spec: { source: { blank: {} }, storage: { resources: { requests: { storage: '8Gi' } } } },
      },
      {
        metadata: { name: 'dev-data-data' },
        spec: { source: { blank: {} }, storage: { resources: { requests: { storage: '50Gi' } } } },
      },
      {
        // The same URL as the Nomad artifact of this file.
        metadata: { name: 'dev-data-extra-1' },
        spec: {
          source: { http: { url: 'https://files.example.com/qvm/dev/disks-1-dev.qcow2' } },
          storage: {},
        },
      },
      {
        metadata: { name: 'dev-data-scratch' },
        spec: { source: { blank: {} }, storage: { resources: { requests: { storage: '1Gi' } } } },
      },
    ]);
    const spec = vm!.spec.template.spec;
    expect(spec.domain.devices).toEqual({
      disks: [
        { name: 'disk', disk: { bus: 'virtio' } },
        { name: 'data-data', disk: { bus: 'virtio' }, serial: 'data' },
        { name: 'data-extra-1', disk: { bus: 'virtio' }, serial: 'Extra_1' },
        { name: 'data-scratch', disk: { bus: 'virtio' }, serial: 'scratch' },
      ],
      filesystems: [
        { name: 'qvm0', virtiofs: {} },
        { name: 'qvm1', virtiofs: {} },
      ],
      interfaces: [{ name: 'default', model: 'virtio', masquerade: {} }],
      autoattachGraphicsDevice: true,
    });
    expect(spec.volumes).toEqual([
      { name: 'disk', dataVolume: { name: 'dev-disk' } },
      { name: 'data-data', dataVolume: { name: 'dev-data-data' } },
      { name: 'data-extra-1', dataVolume: { name: 'dev-data-extra-1' } },
      { name: 'data-scratch', dataVolume: { name: 'dev-data-scratch' } },
      { name: 'qvm0', persistentVolumeClaim: { claimName: 'dev-qvm0', readOnly: false } },
      { name: 'qvm1', persistentVolumeClaim: { claimName: 'dev-qvm1', readOnly: true } },
    ]);
    expect(spec.readinessProbe).toEqual({
      guestAgentPing: {},
      periodSeconds: 10,
      timeoutSeconds: 2,
      failureThreshold: 6,
    });
  });

  it("mounts the shares in the guest from the seed, as virtiofs by their tags, at qvm's guest paths", () => {
    const [vm] = exported(
      [
        'vms:',
        '  dev:',
        '    accel: kvm',
        '    ssh: { user: dev }',
        '    mounts:',
        '      - { host: ./src, guest: /home/dev/src, writable: true }',
        '      - { host: ./docs, guest: /srv/docs }',
        '',
      ].join('\n'),
      'kubevirt',
      { sshKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPx7 me@laptop'] },
    );
    const cloudinit = vm!.spec.template.spec.volumes.find((v: Doc) => v.name === 'cloudinit');
    // The ssh user's mount point under their home is theirs, as qvm's own seed makes it.
    expect(cloudinit.cloudInitNoCloud.userData).toBe(
      [
        '#cloud-config',
        'users:',
        '  - default',
        '  - name: dev',
        '    shell: /bin/bash',
        '    sudo: ALL=(ALL) NOPASSWD:ALL',
        '    lock_passwd: true',
        '    ssh_authorized_keys:',
        '      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPx7 me@laptop',
        'runcmd:',
        '  - - sh',
        '    - -c',
        // Quoted: "chown dev: ..." has a colon and a space, which plain YAML would read as a mapping.
        `    - "sed -i '/^qvm[0-9]* .* virtiofs /d' /etc/fstab; echo 'qvm0 /home/dev/src virtiofs nofail,rw 0 0' >> /etc/fstab; mkdir -p /home/dev/src; chown dev: /home/dev/src; echo 'qvm1 /srv/docs virtiofs nofail,ro 0 0' >> /etc/fstab; mkdir -p /srv/docs; mount -a -t virtiofs"`,
        '',
      ].join('\n'),
    );
  });

  it('leaves the VNC device on for a VM with display, and as KubeVirt has it for one without', () => {
    const devices = (text: string) => exported(text, 'kubevirt')[0]!.spec.template.spec.domain.devices;
    expect(devices('vms:\n  dev:\n    display: { vnc: { port: 5901 } }\n').autoattachGraphicsDevice).toBe(
      true,
    );
    expect(devices('vms:\n  dev:\n    memory: 1G\n')).not.toHaveProperty('autoattachGraphicsDevice');
  });

  it('names data volumes after the serials, so reordering disks renames none', () => {
    const disks = (serials: string[]) =>
      serials.map((serial, index) => ({ path: `d${index}.qcow2`, format: 'qcow2' as const, serial, index }));
    expect(dataVolumeNames(disks(['data', 'logs']))).toEqual(['data-data', 'data-logs']);
    expect(dataVolumeNames(disks(['logs', 'data']))).toEqual(['data-logs', 'data-data']);
    // DNS labels are lower case: serials that differ only in case, or have no letter or digit, get the index.
    expect(dataVolumeNames(disks(['Data', 'data', '..', 'Db_2.x']))).toEqual([
      'data-data',
      'data-data-1',
      'data-2',
      'data-db-2-x',
    ]);
  });
});
