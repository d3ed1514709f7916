/**
 * Generators for the property tests (fast-check): manifests that are valid by construction, the observed
 * world they are planned against, and targeted mutations that each break exactly one rule.
 *
 * Valid by construction means every rule of schemas/qvm.schema.json and src/manifest/checks/*.ts holds:
 * every field in range, `initrd`/`append` only with `kernel`, `snapshot` and `state: saved` only with a qcow2
 * disk on a VM qvm starts (not `monitor:`), `ready` only through one of the VM's own tcp forwards, host ports
 * unique across the manifest, one disk path and one monitor socket per VM, durations at most 24h, memory at
 * most 16T and disks at most 1P, `args` without an option qvm manages. The property tests assert that every
 * generated manifest validates, so a rule this file gets wrong fails those tests instead of hollowing them.
 *
 * Free text goes wherever the schema allows it (paths with commas, spaces, quotes and non-ASCII; any one-line
 * `append` and `args`), because that is what must never leak into a monitor command or a QEMU option.
 */
import fc from 'fast-check';
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, stringify } from 'yaml';
import { imagePath } from '../../src/images/cache.js';
import { imageDigest } from '../../src/images/source.js';
import type { ImageSpec, Manifest, VmSpec } from '../../src/manifest/types.js';
import { SAVED_STATE_TAG } from '../../src/model/names.js';
import type { DiskState, ImageState, ObservedVm, RunningVm } from '../../src/observe/types.js';
import { launchSpec } from '../../src/plan/launch.js';
import { buildQemuArgs, QEMU_SYSTEM } from '../../src/qemu/argv.js';
import type { ObservedForward } from '../../src/qemu/parse/usernet.js';
import { vmPaths } from '../../src/runtime/paths.js';
import type { LaunchRecord } from '../../src/runtime/records.js';
import { NS } from '../helpers/builders.js';

/** How many cases each property runs: 1,000 in `npm test`, 10,000 in `npm run test:soak` (QVM_FUZZ_RUNS). */
export const RUNS = Number.parseInt(process.env.QVM_FUZZ_RUNS ?? '1000', 10);
/** A property's deadline, by how many runs it makes (10,000 take more than a minute on a loaded machine). */
export const PROPERTY_TIMEOUT_MS = Math.max(60_000, RUNS * 40);

/** What the planner's host can hold (observation builder: 64 GiB of RAM and swap). */
const HOST_MEMORY_MIB = 64 * 1024;

export type RawVm = Record<string, unknown>;
export type RawManifest = { images?: Record<string, RawVm>; vms: Record<string, RawVm> };

// ---------------------------------------------------------------------------------------------------------
// Values

/** Text on one line: no control characters (the schema's `line` and `path`). */
const oneLine = (s: string) => ![...s].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f);

/** What a user may put in a path or a kernel command line that a careless implementation would pass on. */
const hostileText = fc.oneof(
  fc.string({ maxLength: 12 }).filter(oneLine),
  fc.constantFrom(
    'quit',
    'x;quit',
    '"; quit; "',
    "' || rm -rf / #",
    'a b',
    ',if=none,file=/etc/shadow',
    ',,',
    '$(reboot)',
    '`id`',
    'été',
    '\u{1F600}',
    '',
  ),
);

/** Memory within the schema and the 16T limit; rarely more than the planner's host has (a plan problem). */
const memory = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 8192 }) },
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 8192 }).map((n) => `${n}M`) },
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 32 }).map((n) => `${n}G`) },
  { weight: 2, arbitrary: fc.integer({ min: 1024, max: 8 * 2 ** 20 }).map((n) => `${n}K`) },
  { weight: 1, arbitrary: fc.constantFrom('16T', `${16 * 1024}G`, `${16 * 2 ** 20}M`, '1T') },
);

/** A size for a disk qvm creates: up to 1P (1024T). */
const diskSize = fc.oneof(
  fc.integer({ min: 1, max: 4096 }).map((n) => `${n}M`),
  fc.integer({ min: 1, max: 512 }).map((n) => `${n}G`),
  fc.integer({ min: 1, max: 1024 }).map((n) => `${n}T`),
  fc.integer({ min: 64, max: 2 ** 20 }).map((n) => `${n}K`),
);

/** A duration of at most 24h, in every form the schema takes. */
const duration = fc.oneof(
  fc.integer({ min: 0, max: 86_400 }),
  fc.double({ min: 0, max: 86_400, noNaN: true, noDefaultInfinity: true }),
  fc.integer({ min: 0, max: 86_400_000 }).map((n) => `${n}ms`),
  fc.integer({ min: 0, max: 86_400 }).map((n) => `${n}s`),
  fc.integer({ min: 0, max: 1440 }).map((n) => `${n}m`),
  fc.integer({ min: 0, max: 24 }).map((n) => `${n}h`),
  fc
    .tuple(fc.integer({ min: 0, max: 86_399 }), fc.integer({ min: 0, max: 999 }))
    .map(([s, f]) => `${s}.${f}s`),
);

const snapshotTag = fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/).filter((t) => t !== SAVED_STATE_TAG);
const nic = fc.oneof(
  fc.constantFrom('e1000', 'virtio-net-pci', 'rtl8139'),
  fc.stringMatching(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/),
);
const hostAddress = fc.constantFrom(undefined, '127.0.0.1', '127.0.0.2', '0.0.0.0', '10.1.2.3');
const guestAddress = fc.constantFrom(undefined, '10.0.2.15', '10.0.2.16');
const port = fc.integer({ min: 1, max: 65535 });

/** Extra qemu arguments that qvm does not manage, hostile free text included (never a managed option). */
const extraArgs = fc.oneof(
  fc.constantFrom(
    ['-vga', 'std'],
    ['-device', 'virtio-rng-pci'],
    ['-rtc', 'base=utc'],
    ['-no-hpet'],
    ['-global', 'e1000.romfile='],
    ['-drive', 'file=extra.qcow2,format=qcow2,if=virtio'],
    ['-drive', 'file=seed.img,format=raw,readonly=on,if=virtio'],
  ),
  fc.array(
    hostileText.filter((s) => !s.startsWith('-')),
    { maxLength: 2 },
  ),
);

/** Hostile text for a file name: no '/', so a path built with it stays in its VM's folder. */
const fileJunk = hostileText.filter((t) => !t.includes('/'));

/** Digests in either case (the schema takes both). */
const hex = (length: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${length}}$`));
const anyCaseHex = (length: number) =>
  fc.tuple(hex(length), fc.boolean()).map(([h, upper]) => (upper ? h.toUpperCase() : h));

/** The tail of an image URL: anything but whitespace, quotes and commas included. */
const urlTail = fc.stringMatching(/^[!-~]{1,24}$/);

/**
 * User data and network config qvm accepts: #cloud-config YAML mappings (hostile strings inside, which YAML
 * quotes), or a script. Free text, several lines: the schema puts no line rule on them.
 */
const cloudConfig = fc
  .record({
    runcmd: fc.array(fc.tuple(fc.constant('echo'), fc.string({ maxLength: 12 })), { maxLength: 2 }),
    note: hostileText,
  })
  .map((body) => `#cloud-config\n${stringify(body)}`);
const userScript = hostileText.map((t) => `#!/bin/sh\necho ${JSON.stringify(t)}\n`);
const networkConfig = fc.constantFrom(
  'version: 2\nethernets:\n  eth0:\n    dhcp4: true\n',
  'network:\n  version: 2\n  ethernets: {}\n',
);

/** A guest path for a share: what the schema allows (no spaces or quotes: it goes into the guest's fstab). */
const guestMountPath = fc.stringMatching(/^\/[A-Za-z0-9._/@+-]{0,20}$/);

// ---------------------------------------------------------------------------------------------------------
// One VM, before the manifest-wide rules (ports, disk paths, sockets) are applied

interface ForwardShape {
  form: 'rule' | 'mapping';
  proto: 'tcp' | 'udp' | undefined;
  address: string | undefined;
  guestAddress: string | undefined;
  guest: number;
}

interface VmShape {
  memory: string | number | undefined;
  cpus: number | undefined;
  disk: 'none' | 'string' | 'qcow2' | 'raw';
  diskSize: string | undefined;
  backing: boolean;
  backingFormat: 'qcow2' | 'raw' | undefined;
  pathJunk: string;
  cdrom: string | undefined;
  kernel: boolean;
  initrd: boolean;
  append: string | undefined;
  nic: string | undefined;
  forwards: ForwardShape[];
  snapshot: string | undefined;
  state: 'running' | 'stopped' | 'saved' | undefined;
  stopTimeout: string | number | undefined;
  accel: 'auto' | 'kvm' | 'tcg' | undefined;
  adopted: boolean;
  args: string[][];
  restart: 'always' | 'on-failure' | 'never' | undefined;
  ready:
    | { kind: 'tcp' | 'http' | 'ssh' | 'agent'; path?: string; status?: number; timeout?: string | number }
    | undefined;
  /** The guest side (none of it on an adopted VM, which qvm neither starts nor equips). */
  image: 'none' | 'catalog' | 'path' | 'sha256' | 'sha512' | 'file-url';
  imageUrl: string;
  imageDigest: { sha256: string; sha512: string };
  cloudInit:
    | {
        userData: 'cloud-config' | 'script' | undefined;
        text: string;
        script: string;
        network: string | undefined;
      }
    | undefined;
  ssh: { user: string; port: boolean } | undefined;
  agent: boolean | undefined;
  mounts: { guest: string; writable: boolean | undefined }[];
  fileJunk: string;
  disks: { size: string | undefined; format: 'qcow2' | 'raw' | undefined; serial: boolean }[];
  display: 'none' | 'vnc' | 'tcp';
  displayAddress: string | undefined;
}

const opt = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });

const forwardShape: fc.Arbitrary<ForwardShape> = fc.record({
  form: fc.constantFrom('rule', 'mapping'),
  proto: fc.constantFrom(undefined, 'tcp', 'udp'),
  address: hostAddress,
  guestAddress,
  guest: port,
});

const vmShape: fc.Arbitrary<VmShape> = fc.record({
  memory: opt(memory),
  cpus: opt(fc.integer({ min: 1, max: 255 })),
  disk: fc.constantFrom('none', 'string', 'qcow2', 'qcow2', 'raw'),
  diskSize: opt(diskSize),
  backing: fc.boolean(),
  backingFormat: fc.constantFrom(undefined, 'qcow2', 'raw'),
  pathJunk: hostileText,
  cdrom: opt(hostileText.map((t) => `iso/${t}.iso`)),
  kernel: fc.boolean(),
  initrd: fc.boolean(),
  append: opt(hostileText),
  nic: opt(nic),
  forwards: fc.array(forwardShape, { maxLength: 4 }),
  snapshot: opt(snapshotTag),
  state: fc.constantFrom(undefined, 'running', 'running', 'stopped', 'saved'),
  stopTimeout: opt(duration),
  accel: fc.constantFrom(undefined, 'auto', 'kvm', 'tcg'),
  // About one VM in ten is adopted (started outside qvm, reached through `monitor:`).
  adopted: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
  args: fc.array(extraArgs, { maxLength: 2 }),
  restart: fc.constantFrom(undefined, 'always', 'on-failure', 'never'),
  ready: opt(
    fc.record({
      kind: fc.constantFrom('tcp', 'http', 'tcp', 'http', 'ssh', 'agent'),
      path: opt(fc.stringMatching(/^\/[!-~]{0,20}$/)),
      status: opt(fc.integer({ min: 100, max: 599 })),
      timeout: opt(duration),
    }),
  ),
  image: fc.constantFrom('none', 'none', 'none', 'catalog', 'path', 'sha256', 'sha512', 'file-url'),
  imageUrl: urlTail,
  imageDigest: fc.record({ sha256: anyCaseHex(64), sha512: anyCaseHex(128) }),
  cloudInit: opt(
    fc.record({
      userData: fc.constantFrom(undefined, 'cloud-config', 'cloud-config', 'script'),
      text: cloudConfig,
      script: userScript,
      network: opt(networkConfig),
    }),
  ),
  ssh: opt(fc.record({ user: fc.stringMatching(/^[a-z_][a-z0-9_-]{0,31}$/), port: fc.boolean() })),
  agent: fc.constantFrom(undefined, true, false),
  mounts: fc.uniqueArray(
    fc.record({ guest: guestMountPath, writable: fc.constantFrom(undefined, true, false) }),
    {
      maxLength: 2,
      selector: (m) => m.guest,
    },
  ),
  fileJunk,
  disks: fc.array(
    fc.record({
      size: opt(diskSize),
      format: fc.constantFrom(undefined, 'qcow2', 'raw'),
      serial: fc.boolean(),
    }),
    { maxLength: 2 },
  ),
  display: fc.constantFrom('none', 'none', 'vnc', 'tcp'),
  displayAddress: hostAddress,
}) as fc.Arbitrary<VmShape>;

/** The host ports each VM is given, distinct across the manifest: four forwards, SSH, VNC. */
const PORTS_PER_VM = 6;

/** The image catalogue entry a VM with `image: catalog` names (`images:` at the top of the manifest). */
const CATALOG_IMAGE = 'debian-12';

/**
 * One VM from its shape and the manifest-wide resources it is given: its host ports (distinct across the
 * manifest; the last is at least 5900, for VNC).
 */
function buildVm(name: string, shape: VmShape, ports: number[]): RawVm {
  const vm: RawVm = {};
  const adopted = shape.adopted;
  if (shape.memory !== undefined) vm.memory = shape.memory;
  if (shape.cpus !== undefined) vm.cpus = shape.cpus;
  // One disk per VM: the VM's own folder is part of the path, whatever junk follows.
  const diskPath = `disks/${name}/${shape.pathJunk}d.img`;
  const qcow2 = shape.disk === 'string' || shape.disk === 'qcow2';
  if (shape.disk === 'string') vm.disk = diskPath;
  if (shape.disk === 'qcow2' || shape.disk === 'raw') {
    const disk: Record<string, unknown> = { path: diskPath };
    if (shape.diskSize !== undefined) disk.size = shape.diskSize;
    if (shape.disk === 'raw') disk.format = 'raw';
    else if (shape.backing) {
      disk.backing = `images/base ${shape.pathJunk}.img`;
      if (shape.backingFormat) disk.backingFormat = shape.backingFormat;
    }
    vm.disk = disk;
  }
  if (shape.cdrom !== undefined) vm.cdrom = shape.cdrom;
  if (shape.kernel) {
    vm.kernel = `guest/${shape.pathJunk}vmlinuz`;
    if (shape.initrd) vm.initrd = `guest/initrd,${shape.pathJunk}.gz`;
    if (shape.append !== undefined) vm.append = shape.append;
  }
  if (shape.nic !== undefined) vm.nic = shape.nic;
  const forwards = shape.forwards.map((f, i) => {
    const host = ports[i]!;
    if (f.form === 'rule')
      return `${f.proto ?? ''}:${f.address ?? ''}:${host}-${f.guestAddress ?? ''}:${f.guest}`;
    return {
      ...(f.proto ? { proto: f.proto } : {}),
      host,
      guest: f.guest,
      ...(f.address ? { address: f.address } : {}),
      ...(f.guestAddress ? { guestAddress: f.guestAddress } : {}),
    };
  });
  if (forwards.length > 0 || shape.forwards.length > 0) vm.forwards = forwards;
  const canSnapshot = qcow2 && !adopted;
  if (shape.snapshot !== undefined && canSnapshot) vm.snapshot = shape.snapshot;
  if (shape.state !== undefined && (shape.state !== 'saved' || canSnapshot)) vm.state = shape.state;
  if (shape.stopTimeout !== undefined) vm.stopTimeout = shape.stopTimeout;
  if (shape.accel !== undefined) vm.accel = shape.accel;
  if (adopted) vm.monitor = `/run/adopted/${name}.sock`;
  const args = shape.args.flat();
  if (args.length > 0) vm.args = args;
  if (shape.restart !== undefined) vm.restart = shape.restart;
  if (!adopted) addGuest(vm, name, shape, ports);
  const tcp = shape.forwards.findIndex((f) => f.proto !== 'udp');
  if (shape.ready && tcp >= 0) {
    const readyPort = ports[tcp]!;
    const r = shape.ready;
    vm.ready = {
      ...(r.kind === 'tcp' || (r.kind === 'ssh' && !vm.ssh) || (r.kind === 'agent' && vm.agent !== true)
        ? { tcp: readyPort }
        : r.kind === 'ssh'
          ? { ssh: true }
          : r.kind === 'agent'
            ? { agent: true }
            : {
                http: {
                  port: readyPort,
                  ...(r.path !== undefined ? { path: r.path } : {}),
                  ...(r.status !== undefined ? { status: r.status } : {}),
                },
              }),
      ...(r.timeout !== undefined ? { timeout: r.timeout } : {}),
    };
  } else if (
    shape.ready &&
    ((shape.ready.kind === 'ssh' && vm.ssh) || (shape.ready.kind === 'agent' && vm.agent === true))
  ) {
    // ssh and agent probes need no forward of the VM.
    vm.ready = {
      [shape.ready.kind]: true,
      ...(shape.ready.timeout !== undefined ? { timeout: shape.ready.timeout } : {}),
    };
  }
  return vm;
}

/** Whether VM saves snapshots into its disks (`snapshot:` or `state: saved`). */
const saves = (vm: RawVm) => vm.snapshot !== undefined || vm.state === 'saved';

/**
 * The guest side of a VM qvm starts (`adopted` VMs get none of it): an image when the disk can be its overlay,
 * cloud-init, SSH, the agent, shares, data disks and a display, each within the rules of checks/guest.ts and
 * checks/devices.ts.
 */
function addGuest(vm: RawVm, name: string, shape: VmShape, ports: number[]): void {
  // The disk is made as a qcow2 overlay of the image: a qcow2 disk of the VM's own, with no backing file.
  if (shape.image !== 'none' && (shape.disk === 'string' || shape.disk === 'qcow2')) {
    if (typeof vm.disk === 'object') {
      delete (vm.disk as RawVm).backing;
      delete (vm.disk as RawVm).backingFormat;
    }
    const url = `https://example.org/${shape.imageUrl}`;
    vm.image =
      shape.image === 'catalog'
        ? CATALOG_IMAGE
        : shape.image === 'path'
          ? `images/${shape.fileJunk}base.qcow2`
          : shape.image === 'sha256'
            ? { url, sha256: shape.imageDigest.sha256 }
            : shape.image === 'sha512'
              ? { url, sha512: shape.imageDigest.sha512 }
              : // Percent-encoded: a file URL must decode to a path (`%` alone does not).
                { url: `file:///srv/images/${encodeURI(shape.imageUrl)}` };
  }
  if (shape.ssh) vm.ssh = { user: shape.ssh.user, ...(shape.ssh.port ? { port: ports[4]! } : {}) };
  if (shape.cloudInit) {
    const ci = shape.cloudInit;
    // A script cannot carry the user and keys qvm adds for `ssh:`.
    const userData =
      ci.userData === 'script' && !shape.ssh ? ci.script : ci.userData !== undefined ? ci.text : undefined;
    vm.cloudInit = {
      ...(userData !== undefined ? { userData } : {}),
      ...(ci.network !== undefined ? { networkConfig: ci.network } : {}),
    };
  }
  const saving = saves(vm);
  // QEMU cannot save a VM while a share is mounted: with snapshots, shares need the agent to unmount them.
  const agent = shape.agent === true || (saving && shape.mounts.length > 0) ? true : shape.agent;
  if (agent !== undefined) vm.agent = agent;
  if (shape.mounts.length > 0) {
    vm.mounts = shape.mounts.map((m, i) => ({
      host: `mounts/${name}/${shape.fileJunk}${i}`,
      guest: m.guest,
      ...(m.writable !== undefined ? { writable: m.writable } : {}),
    }));
  }
  if (shape.disks.length > 0) {
    // Each in the VM's folder under its own index, so paths and default serials never repeat.
    vm.disks = shape.disks.map((d, i) => ({
      path: `disks/${name}/data${i}-${shape.fileJunk}.qcow2`,
      ...(d.size !== undefined ? { size: d.size } : {}),
      // QEMU saves snapshots into every writable disk: a raw one cannot hold them.
      ...(d.format !== undefined && !(saving && d.format === 'raw') ? { format: d.format } : {}),
      ...(d.serial ? { serial: `s${i}-${name.slice(0, 12)}` } : {}),
    }));
  }
  if (shape.display === 'vnc') vm.display = 'vnc';
  if (shape.display === 'tcp')
    vm.display = {
      vnc: { port: ports[5]!, ...(shape.displayAddress ? { address: shape.displayAddress } : {}) },
    };
}

/** A manifest of 1 to 4 VMs, valid by construction. */
export const validManifest: fc.Arbitrary<RawManifest> = fc
  .uniqueArray(fc.stringMatching(/^[a-z][a-z0-9-]{0,39}$/), { minLength: 1, maxLength: 4 })
  .chain((names) =>
    fc.tuple(
      fc.constant(names),
      fc.array(vmShape, { minLength: names.length, maxLength: names.length }),
      // Every host port of the manifest distinct (forwards, SSH, VNC): none can collide, whatever the addresses.
      fc.uniqueArray(port, {
        minLength: PORTS_PER_VM * names.length,
        maxLength: PORTS_PER_VM * names.length,
      }),
      anyCaseHex(64),
    ),
  )
  .map(([names, shapes, ports, digest]) => {
    const vms = Object.fromEntries(
      names.map((name, i) => {
        const own = ports.slice(PORTS_PER_VM * i, PORTS_PER_VM * (i + 1));
        own[PORTS_PER_VM - 1] = vncPort(own[PORTS_PER_VM - 1]!, ports);
        return [name, buildVm(name, shapes[i]!, own)];
      }),
    );
    const catalog = Object.values(vms).some((vm) => vm.image === CATALOG_IMAGE);
    return {
      ...(catalog
        ? {
            images: { [CATALOG_IMAGE]: { url: 'https://cloud.example.org/debian-12.qcow2', sha256: digest } },
          }
        : {}),
      vms,
    };
  });

/** A VNC port (5900 and up) for PORT, distinct from every port of the manifest. */
function vncPort(port: number, taken: number[]): number {
  if (port >= 5900) return port;
  let candidate = 5900 + (port % 1000);
  while (taken.includes(candidate)) candidate++;
  taken.push(candidate);
  return candidate;
}

// ---------------------------------------------------------------------------------------------------------
// The observed world for a validated manifest

/** What the world looks like for one VM, and whether the planner must refuse to act on it. */
export type Situation =
  | 'absent'
  | 'crashed'
  | 'as-specified'
  | 'drifted'
  | 'paused'
  | 'changed'
  | 'stuck'
  | 'powered-off'
  | 'io-error-room'
  | 'stray-tag'
  | 'hibernated'
  | 'wants-hibernation'
  // The planner must refuse these (a problem for the VM, no change):
  | 'unknown'
  | 'elsewhere'
  | 'port-taken'
  | 'io-error-full'
  | 'tag-without-record';

export const REFUSED: ReadonlySet<Situation> = new Set([
  'unknown',
  'elsewhere',
  'port-taken',
  'io-error-full',
  'tag-without-record',
]);

const COMMON: Situation[] = ['absent', 'crashed', 'as-specified', 'drifted', 'paused', 'changed'];
const RARER: Situation[] = ['stuck', 'powered-off', 'io-error-room', 'stray-tag', 'hibernated'];
const REFUSING: Situation[] = [...REFUSED];

/** A situation, most often an ordinary one; the ones the planner must refuse about 1 in 25. */
export const situation: fc.Arbitrary<Situation> = fc.oneof(
  { weight: 18, arbitrary: fc.constantFrom(...COMMON) },
  { weight: 6, arbitrary: fc.constantFrom(...RARER) },
  { weight: 1, arbitrary: fc.constantFrom(...REFUSING) },
);

export interface World {
  observed: ObservedVm[];
  /** The situation each VM of the manifest was put in (after fitting it to what the VM can be). */
  situations: Map<string, Situation>;
  portConflicts: { vm: string; index: number; holder: string }[];
}

const MIB = 2 ** 20;

/**
 * The disk a VM that has existed has: its declared size (or 64M), holding `snapshots`; with `image:`, the
 * overlay of that image (its backing file).
 */
function existingDisk(spec: VmSpec, snapshots: string[], extra: Partial<DiskState> = {}): DiskState {
  return {
    path: spec.disk!.path,
    exists: true,
    format: spec.disk!.format,
    virtualSizeBytes: spec.disk!.sizeBytes ?? 64 * MIB,
    snapshots,
    identity: { dev: 1, ino: 2 },
    ...(spec.image ? { backingFile: imageFile(spec.image) } : {}),
    ...extra,
  };
}

/** Where an image is on the host: a local file where it is, a download in qvm's cache. */
function imageFile(image: ImageSpec): string {
  return image.kind === 'path' ? image.path : imagePath(imageDigest(image));
}

/** What qvm knows of the image of a VM whose disk is still to be made: readable, cached or not (by name). */
function imageState(spec: VmSpec): ImageState | undefined {
  if (!spec.image) return undefined;
  if (spec.image.kind === 'path') return { kind: 'path', format: 'qcow2' };
  return spec.name.length % 2 === 0
    ? { kind: 'url', cached: { path: imageFile(spec.image), format: 'qcow2', sizeBytes: 2 * MIB } }
    : { kind: 'url', remoteSizeBytes: 2 * MIB };
}

/** The data disks of a VM: there (holding the snapshots its OS disk holds), or to be made when sized. */
function dataDisks(spec: VmSpec, snapshots: string[], fresh: boolean): { dataDisks?: DiskState[] } {
  if (spec.dataDisks.length === 0) return {};
  return {
    dataDisks: spec.dataDisks.map((d, i) =>
      fresh && d.sizeBytes !== undefined
        ? { path: d.path, format: d.format, exists: false }
        : {
            path: d.path,
            exists: true,
            format: d.format,
            virtualSizeBytes: d.sizeBytes ?? 64 * MIB,
            snapshots: d.format === 'qcow2' ? snapshots : [],
            identity: { dev: 1, ino: 10 + i },
          },
    ),
  };
}

/** The snapshots a fresh disk of a warm VM, or a VM that boots from a snapshot, holds. */
function bootSnapshots(spec: VmSpec): string[] {
  return spec.snapshot !== undefined ? [spec.snapshot] : [];
}

/** A VM running exactly as qvm starts SPEC (resolved accel, its disk's format), with SPEC's forwards. */
export function runningAs(spec: VmSpec, kvm: boolean, extra: Partial<RunningVm> = {}): RunningVm {
  const accel = spec.accel === 'auto' ? (kvm ? 'kvm' : 'tcg') : spec.accel;
  const { name, loadvm: _loadvm, ...recorded } = launchSpec(spec, accel, spec.forwards, spec.disk);
  const args = buildQemuArgs({ name, ...recorded }, vmPaths(NS, name));
  const launch: LaunchRecord = {
    version: 2,
    vm: name,
    manifest: spec.source,
    argv: [QEMU_SYSTEM, ...args],
    launch: recorded,
    stopTimeoutMs: spec.stopTimeoutMs,
    startedAt: '2026-11-26T00:00:00.000Z',
    liveForwards: [],
  };
  const forwards: ObservedForward[] = spec.forwards.map(({ index: _i, ...f }) => ({
    ...f,
    netdev: 'net0',
    guestAddress: f.guestAddress || '10.0.2.15',
  }));
  return {
    name,
    adopted: false,
    state: 'running',
    pid: 4242,
    startedAtMs: 0,
    runstate: 'running',
    argv: [QEMU_SYSTEM, ...args],
    launch,
    forwards,
    snapshots: bootSnapshots(spec),
    ...(spec.disk ? { disk: existingDisk(spec, bootSnapshots(spec)) } : {}),
    ...dataDisks(spec, bootSnapshots(spec), false),
    ...extra,
  };
}

const FOREIGN_FORWARD: ObservedForward = {
  netdev: 'net0',
  proto: 'tcp',
  hostAddress: '127.0.0.1',
  hostPort: 1,
  guestAddress: '10.0.2.15',
  guestPort: 22,
};

/**
 * Fits a situation to what the VM can be (an adopted VM has no pidfile, a crash needs nothing, hibernation
 * needs a qcow2 disk...) and builds the observation of it.
 */
function observe(spec: VmSpec, wanted: Situation, kvm: boolean): { vm: ObservedVm; as: Situation } {
  const name = spec.name;
  if (spec.monitor) return observeAdopted(spec, wanted);
  const qcow2 = spec.disk?.format === 'qcow2';
  let as = wanted;
  if ((as === 'hibernated' || as === 'stray-tag' || as === 'tag-without-record') && !qcow2) as = 'absent';
  // Paused on a full disk, or a tag without a record, is refused only when the manifest wants the VM running:
  // stopping or saving it is what the manifest asks for.
  if ((as === 'io-error-room' || as === 'io-error-full') && (!spec.disk || spec.state !== 'running'))
    as = 'paused';
  if (as === 'tag-without-record' && spec.state !== 'running') as = 'absent';
  if (as === 'port-taken' && !spec.forwards.length) as = 'absent';
  if (as === 'port-taken' && spec.state !== 'running') as = 'absent';
  // A start cannot begin from the snapshot of a new disk unless it is a warm VM (cold boot, then save).
  const warm = spec.snapshot !== undefined && spec.ready !== undefined;
  const fresh =
    spec.disk === undefined
      ? undefined
      : (spec.disk.sizeBytes !== undefined || spec.disk.backing || spec.image) &&
          (spec.snapshot === undefined || warm)
        ? ({ path: spec.disk.path, format: spec.disk.format, exists: false } satisfies DiskState)
        : existingDisk(spec, bootSnapshots(spec));
  switch (as) {
    case 'absent':
    case 'port-taken': {
      const made = fresh?.exists === false;
      return {
        vm: {
          name,
          adopted: false,
          state: 'stopped',
          ...(fresh ? { disk: fresh } : {}),
          ...dataDisks(spec, fresh?.snapshots ?? [], made),
          ...(made && spec.image ? { image: imageState(spec)! } : {}),
        },
        as,
      };
    }
    case 'crashed':
      return {
        vm: {
          name,
          adopted: false,
          state: 'stopped',
          stale: 'process 4242 has exited; its pidfile is stale',
          ...(spec.disk ? { disk: existingDisk(spec, bootSnapshots(spec)) } : {}),
          ...dataDisks(spec, bootSnapshots(spec), false),
        },
        as,
      };
    case 'elsewhere':
      return {
        vm: { name, adopted: false, state: 'stopped', elsewhere: { pid: 77, root: '/tmp/other-root' } },
        as,
      };
    case 'unknown':
      return { vm: { name, adopted: false, state: 'unknown', pid: 4242, error: 'frozen' }, as };
    case 'as-specified':
      return { vm: runningAs(spec, kvm), as };
    case 'drifted': {
      const running = runningAs(spec, kvm);
      return { vm: { ...running, forwards: [...running.forwards.slice(1), FOREIGN_FORWARD] }, as };
    }
    case 'paused':
      return { vm: runningAs(spec, kvm, { runstate: 'paused' }), as };
    case 'changed': {
      // Started from another manifest: more memory than the manifest asks for now.
      const before = runningAs({ ...spec, memoryMiB: spec.memoryMiB + 1 }, kvm);
      return { vm: { ...before, forwards: runningAs(spec, kvm).forwards }, as };
    }
    case 'stuck':
      return { vm: runningAs(spec, kvm, { runstate: 'guest-panicked' }), as };
    case 'powered-off':
      return { vm: runningAs(spec, kvm, { runstate: 'shutdown' }), as };
    case 'io-error-room':
    case 'io-error-full': {
      const full = as === 'io-error-full';
      const running = runningAs(spec, kvm, {
        runstate: 'io-error',
        ioError: { device: 'disk0', file: spec.disk!.path, status: 'nospace' },
      });
      // Still full: no byte free and the image can still grow (nothing of it allocated yet). Room again: a
      // terabyte free.
      return {
        vm: {
          ...running,
          disk: { ...running.disk!, freeBytes: full ? 0 : 2 ** 40, allocatedBytes: full ? 0 : MIB },
        },
        as,
      };
    }
    case 'stray-tag': {
      const tags = [...bootSnapshots(spec), SAVED_STATE_TAG];
      return {
        vm: runningAs(spec, kvm, {
          snapshots: tags,
          disk: existingDisk(spec, tags),
          ...dataDisks(spec, tags, false),
        }),
        as,
      };
    }
    case 'hibernated':
    case 'tag-without-record': {
      const tags = [...bootSnapshots(spec), SAVED_STATE_TAG];
      const running = runningAs(spec, kvm);
      return {
        vm: {
          name,
          adopted: false,
          state: 'stopped',
          disk: existingDisk(spec, tags),
          ...dataDisks(spec, tags, false),
          ...(as === 'hibernated'
            ? {
                savedState: {
                  record: {
                    version: 1,
                    vm: name,
                    tag: SAVED_STATE_TAG,
                    savedAt: '2026-11-26T00:00:00.000Z',
                    disk: { path: spec.disk!.path, dev: 1, ino: 2 },
                    launch: running.launch!.launch,
                  },
                },
              }
            : {}),
        },
        as,
      };
    }
    case 'wants-hibernation':
      return { vm: runningAs(spec, kvm), as };
  }
}

function observeAdopted(spec: VmSpec, wanted: Situation): { vm: ObservedVm; as: Situation } {
  const name = spec.name;
  if (wanted === 'unknown')
    return { vm: { name, adopted: true, state: 'unknown', error: 'frozen' }, as: wanted };
  const forwards: ObservedForward[] = spec.forwards.map(({ index: _i, ...f }) => ({
    ...f,
    netdev: 'user.0',
    guestAddress: f.guestAddress || '10.0.2.15',
  }));
  const drifted = wanted === 'drifted' || wanted === 'changed';
  return {
    vm: {
      name,
      adopted: true,
      state: 'running',
      runstate: wanted === 'paused' ? 'paused' : 'running',
      forwards: drifted ? [...forwards.slice(1), { ...FOREIGN_FORWARD, netdev: 'user.0' }] : forwards,
      snapshots: [],
    },
    as: wanted === 'paused' || drifted ? wanted : 'as-specified',
  };
}

/** VMs of the namespace that the manifest no longer lists, still running (stopped with --prune). */
export function orphans(manifest: Manifest, count: number): RunningVm[] {
  const taken = new Set(manifest.vms.map((v) => v.name));
  const out: RunningVm[] = [];
  for (let i = 0; out.length < count; i++) {
    const name = `gone-${i}`;
    if (taken.has(name)) continue;
    out.push({
      name,
      adopted: false,
      state: 'running',
      pid: 5000 + i,
      runstate: 'running',
      argv: [QEMU_SYSTEM, '-name', name],
      forwards: [],
      snapshots: [],
    });
  }
  return out;
}

/** The observation of every VM of the manifest, each in the situation asked for (fitted to the VM). */
export function world(manifest: Manifest, wanted: Situation[], kvm: boolean): World {
  const situations = new Map<string, Situation>();
  const portConflicts: World['portConflicts'] = [];
  const observed = manifest.vms.map((spec, i) => {
    let ask = wanted[i % wanted.length]!;
    // A VM the manifest wants saved must be running to be saved: most often it is.
    if (spec.state === 'saved' && (ask === 'as-specified' || ask === 'drifted')) ask = 'wants-hibernation';
    const { vm, as } = observe(spec, ask, kvm);
    situations.set(spec.name, as);
    if (as === 'port-taken')
      portConflicts.push({ vm: spec.name, index: spec.forwards[0]!.index, holder: 'pid 77 (nc -l)' });
    return vm;
  });
  return { observed, situations, portConflicts };
}

/** Whether SPEC asks for more memory than the planner's host has (a plan problem at `memory`). */
export function tooBigForHost(spec: VmSpec): boolean {
  return spec.memoryMiB > HOST_MEMORY_MIB;
}

// ---------------------------------------------------------------------------------------------------------
// Targeted mutations: each breaks one rule and names the field its diagnostic must be located at

export interface Mutated {
  doc: RawManifest;
  /** The field the diagnostic must be at: ['vms', 'web', 'forwards', 0, 'host']. */
  field: (string | number)[];
  /** The diagnostic is located at the field's key rather than its value (unknown fields, bad names). */
  atKey?: boolean;
  /** Part of the message that says which rule was broken. */
  says: string;
  /** Where the diagnostic must point when not at `field` itself: a missing field is located at its parent. */
  locatedAt?: (string | number)[];
}

export interface Mutation {
  name: string;
  apply(doc: RawManifest, pick: number): Mutated;
}

const clone = (doc: RawManifest): RawManifest => structuredClone(doc);
const namesOf = (doc: RawManifest) => Object.keys(doc.vms);
const nth = <T>(list: T[], pick: number): T => list[pick % list.length]!;

/** A VM of DOC (by PICK) with whatever it needs set first, without breaking any other rule. */
function oneVm(doc: RawManifest, pick: number): { name: string; vm: RawVm } {
  const name = nth(namesOf(doc), pick);
  return { name, vm: doc.vms[name]! };
}

/** Makes VM a plain VM qvm starts, with a qcow2 disk of its own and none of the fields that need one. */
function startedWithQcow2(name: string, vm: RawVm): void {
  delete vm.monitor;
  vm.disk = { path: `disks/${name}/own.qcow2`, size: '1G' };
}

/** Two VMs, the second after the first in the document (a collision is reported at the second). */
function twoVms(doc: RawManifest, pick: number): { first: string; second: string } | undefined {
  const names = namesOf(doc);
  if (names.length < 2) return undefined;
  const i = pick % (names.length - 1);
  return { first: names[i]!, second: names[i + 1]! };
}

/** Adds a second VM (named so it does not clash) when DOC has one VM only. */
function withTwoVms(doc: RawManifest, pick: number): { first: string; second: string } {
  const pair = twoVms(doc, pick);
  if (pair) return pair;
  const [first] = namesOf(doc);
  const second = first === 'zz-added' ? 'zz-other' : 'zz-added';
  doc.vms[second] = {};
  return { first: first!, second };
}

/** A port no forward of DOC uses. */
function unusedPort(doc: RawManifest): number {
  const text = JSON.stringify(doc);
  for (let p = 40_000; ; p++) if (!text.includes(String(p))) return p;
}

/** Makes VM one qvm starts itself (adopted VMs are generated without anything that forbids this). */
function started(vm: RawVm): void {
  delete vm.monitor;
}

/** Makes VM an adopted one: reached through `monitor:`, with nothing an adopted VM cannot have. */
function adopted(name: string, vm: RawVm): void {
  for (const field of ['snapshot', 'image', 'cloudInit', 'ssh', 'agent', 'mounts', 'disks', 'display'])
    delete vm[field];
  if (vm.state === 'saved') delete vm.state;
  const ready = vm.ready as RawVm | undefined;
  if (ready?.ssh !== undefined || ready?.agent !== undefined) delete vm.ready;
  vm.monitor = `/run/adopted/${name}.sock`;
}

/** Makes VM's devices fit snapshots: the agent for its shares, qcow2 data disks. */
function fitForSaves(vm: RawVm): void {
  if (vm.mounts) vm.agent = true;
  for (const disk of (vm.disks as RawVm[] | undefined) ?? []) delete disk.format;
}

/** The mutations of the guest side: images, cloud-init, SSH, the agent, shares, data disks, the display. */
const GUEST_MUTATIONS: Mutation[] = [
  {
    name: 'an http image without a digest',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      startedWithQcow2(name, vm);
      vm.image = { url: 'https://example.org/base.qcow2' };
      return { doc, field: ['vms', name, 'image'], says: 'needs sha256 or sha512' };
    },
  },
  {
    name: 'a file URL on another host',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      startedWithQcow2(name, vm);
      vm.image = { url: nth(['file://host/base.qcow2', 'file:///images/%zz.qcow2'], pick) };
      return { doc, field: ['vms', name, 'image', 'url'], says: 'is not the URL of a local file' };
    },
  },
  {
    name: 'a digest that is not hex',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      startedWithQcow2(name, vm);
      vm.image = { url: 'https://example.org/base.qcow2', sha256: 'z'.repeat(64) };
      return { doc, field: ['vms', name, 'image', 'sha256'], says: 'must be 64 hex digits' };
    },
  },
  {
    name: 'an image without a disk',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      started(vm);
      delete vm.disk;
      delete vm.snapshot;
      if (vm.state === 'saved') delete vm.state;
      vm.image = 'images/base.qcow2';
      return { doc, field: ['vms', name, 'image'], says: 'needs `disk`' };
    },
  },
  {
    name: 'an image over a backing file',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      startedWithQcow2(name, vm);
      (vm.disk as RawVm).backing = 'images/other.qcow2';
      vm.image = 'images/base.qcow2';
      return { doc, field: ['vms', name, 'disk', 'backing'], says: 'cannot be used with `image`' };
    },
  },
  {
    name: 'an image name that images: does not have',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      startedWithQcow2(name, vm);
      vm.image = 'ubuntu-24';
      return { doc, field: ['vms', name, 'image'], says: 'names no image of `images:`' };
    },
  },
  ...(['ssh', 'cloudInit', 'agent'] as const).map(
    (field): Mutation => ({
      name: `${field} on an adopted VM`,
      apply(d, pick) {
        const doc = clone(d);
        const { name, vm } = oneVm(doc, pick);
        adopted(name, vm);
        vm[field] = { ssh: { user: 'dev' }, cloudInit: { userData: '#cloud-config\n{}\n' }, agent: true }[
          field
        ];
        return { doc, field: ['vms', name, field], says: 'cannot be used with `monitor`' };
      },
    }),
  ),
  {
    name: 'ready over ssh without ssh',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      delete vm.ssh;
      vm.ready = { ssh: true };
      return { doc, field: ['vms', name, 'ready', 'ssh'], says: 'needs `ssh:`' };
    },
  },
  {
    name: 'ready through the agent without it',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      delete vm.agent;
      if (saves(vm)) delete vm.mounts;
      vm.ready = { agent: true };
      return { doc, field: ['vms', name, 'ready', 'agent'], says: 'needs `agent: true`' };
    },
  },
  {
    name: 'user data that is neither cloud-config nor a script',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      started(vm);
      vm.cloudInit = { userData: nth(['hello', 'cloud-config:\n  a: 1\n', ''], pick) };
      return { doc, field: ['vms', name, 'cloudInit', 'userData'], says: 'must start with #cloud-config' };
    },
  },
  {
    name: 'user data that is not YAML',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      started(vm);
      vm.cloudInit = { userData: '#cloud-config\nruncmd: [\n' };
      return { doc, field: ['vms', name, 'cloudInit', 'userData'], says: 'is not valid YAML' };
    },
  },
  {
    name: 'a script as user data beside ssh',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      started(vm);
      vm.ssh = { user: 'dev' };
      vm.cloudInit = { userData: '#!/bin/sh\ntrue\n' };
      return { doc, field: ['vms', name, 'cloudInit', 'userData'], says: 'must be #cloud-config for `ssh:`' };
    },
  },
  {
    name: 'network config that is not a mapping',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      started(vm);
      vm.cloudInit = { networkConfig: nth(['- eth0\n', 'version 2\n'], pick) };
      return { doc, field: ['vms', name, 'cloudInit', 'networkConfig'], says: 'must be a YAML mapping' };
    },
  },
  {
    name: 'shares with snapshots and no agent',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      startedWithQcow2(name, vm);
      vm.snapshot = 'warm';
      delete vm.agent;
      delete vm.disks;
      if ((vm.ready as RawVm | undefined)?.agent !== undefined) delete vm.ready;
      vm.mounts = [{ host: 'src', guest: '/src' }];
      return { doc, field: ['vms', name, 'snapshot'], says: 'with `mounts` needs `agent: true`' };
    },
  },
  {
    name: 'two shares at one guest path',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      started(vm);
      vm.agent = true;
      vm.mounts = [
        { host: 'a', guest: '/x' },
        { host: 'b', guest: '/x', writable: true },
      ];
      return { doc, field: ['vms', name, 'mounts', 1, 'guest'], says: 'is also where mounts[0] is mounted' };
    },
  },
  {
    name: 'a share at a relative guest path',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      started(vm);
      vm.agent = true;
      vm.mounts = [{ host: 'src', guest: nth(['src', '/a b', '/x;reboot'], pick) }];
      return { doc, field: ['vms', name, 'mounts', 0, 'guest'], says: 'must be an absolute guest path' };
    },
  },
  {
    name: 'two data disks with one serial',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      started(vm);
      vm.disks = [
        { path: `disks/${name}/serial-a.qcow2`, serial: 'same' },
        { path: `disks/${name}/serial-b.qcow2`, serial: 'same' },
      ];
      return { doc, field: ['vms', name, 'disks', 1], says: 'has the serial "same" of disks[0]' };
    },
  },
  {
    name: 'a raw data disk with snapshots',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      startedWithQcow2(name, vm);
      vm.snapshot = 'warm';
      if (vm.mounts) vm.agent = true;
      vm.disks = [{ path: `disks/${name}/data.img`, format: 'raw' }];
      return { doc, field: ['vms', name, 'disks', 0, 'format'], says: 'must be qcow2 with `snapshot`' };
    },
  },
  {
    name: "an SSH port that is a forward's port",
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      started(vm);
      const port = unusedPort(doc);
      if (String((vm.cloudInit as RawVm | undefined)?.userData ?? '').startsWith('#!')) delete vm.cloudInit;
      vm.forwards = [...((vm.forwards as unknown[]) ?? []), `tcp::${port}-:80`];
      vm.ssh = { user: 'dev', port };
      return { doc, field: ['vms', name, 'ssh', 'port'], says: 'claims the same host port as' };
    },
  },
  {
    name: 'one VNC port in two VMs',
    apply(d, pick) {
      const doc = clone(d);
      const { first, second } = withTwoVms(doc, pick);
      const port = unusedPort(doc);
      started(doc.vms[first]!);
      started(doc.vms[second]!);
      doc.vms[first]!.display = { vnc: { port } };
      doc.vms[second]!.display = { vnc: { port, address: '0.0.0.0' } };
      return {
        doc,
        field: ['vms', second, 'display', 'vnc', 'port'],
        says: 'claims the same host port as',
      };
    },
  },
  {
    name: 'a VNC port below 5900',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      started(vm);
      vm.display = { vnc: { port: nth([5899, 22, 1], pick) } };
      return {
        doc,
        field: ['vms', name, 'display', 'vnc', 'port'],
        says: 'must be an integer from 5900 to 65535',
      };
    },
  },
  {
    name: 'an SSH user that is not a user name',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      started(vm);
      if (String((vm.cloudInit as RawVm | undefined)?.userData ?? '').startsWith('#!')) delete vm.cloudInit;
      vm.ssh = { user: nth(['Root', 'dev;reboot', '-x', 'a'.repeat(33)], pick) };
      return { doc, field: ['vms', name, 'ssh', 'user'], says: 'must be a user name' };
    },
  },
];

export const MUTATIONS: Mutation[] = [
  {
    name: 'initrd without kernel',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      delete vm.kernel;
      delete vm.append;
      vm.initrd = 'guest/initrd.gz';
      return { doc, field: ['vms', name, 'initrd'], says: 'needs `kernel`' };
    },
  },
  {
    name: 'append without kernel',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      delete vm.kernel;
      delete vm.initrd;
      vm.append = 'console=ttyS0';
      return { doc, field: ['vms', name, 'append'], says: 'needs `kernel`' };
    },
  },
  {
    name: 'snapshot without a disk',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      delete vm.disk;
      delete vm.image;
      fitForSaves(vm);
      delete vm.monitor;
      if (vm.state === 'saved') delete vm.state;
      vm.snapshot = 'ready';
      return { doc, field: ['vms', name, 'snapshot'], says: 'needs a qcow2 `disk`' };
    },
  },
  {
    name: 'state: saved without a disk',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      delete vm.disk;
      delete vm.image;
      fitForSaves(vm);
      delete vm.monitor;
      delete vm.snapshot;
      vm.state = 'saved';
      return { doc, field: ['vms', name, 'state'], says: 'needs a qcow2 `disk`' };
    },
  },
  {
    name: 'snapshot on a raw disk',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      delete vm.monitor;
      delete vm.image;
      fitForSaves(vm);
      if (vm.state === 'saved') delete vm.state;
      vm.disk = { path: `disks/${name}/raw.img`, format: 'raw' };
      vm.snapshot = 'ready';
      return { doc, field: ['vms', name, 'snapshot'], says: 'needs a qcow2 disk' };
    },
  },
  {
    name: 'state: saved on a raw disk',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      delete vm.monitor;
      delete vm.image;
      fitForSaves(vm);
      delete vm.snapshot;
      vm.disk = { path: `disks/${name}/raw.img`, format: 'raw' };
      vm.state = 'saved';
      return { doc, field: ['vms', name, 'state'], says: 'needs a qcow2 disk' };
    },
  },
  {
    name: 'an overlay of a raw disk',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      delete vm.snapshot;
      delete vm.image;
      if (vm.state === 'saved') delete vm.state;
      vm.disk = { path: `disks/${name}/raw.img`, format: 'raw', backing: 'base.img' };
      return { doc, field: ['vms', name, 'disk', 'backing'], says: 'needs format qcow2' };
    },
  },
  {
    name: 'snapshot on an adopted VM',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      startedWithQcow2(name, vm);
      adopted(name, vm);
      vm.snapshot = 'ready';
      return { doc, field: ['vms', name, 'snapshot'], says: 'cannot be used with `monitor`' };
    },
  },
  {
    name: 'state: saved on an adopted VM',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      startedWithQcow2(name, vm);
      adopted(name, vm);
      vm.state = 'saved';
      return { doc, field: ['vms', name, 'state'], says: 'cannot be used with `monitor`' };
    },
  },
  {
    name: 'ready through a port that is not a tcp forward of the VM',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      const port = unusedPort(doc);
      vm.ready = pick % 2 ? { tcp: port } : { http: { port } };
      return {
        doc,
        field: ['vms', name, 'ready', ...(pick % 2 ? ['tcp'] : ['http', 'port'])],
        says: "must be the host port of one of this VM's tcp forwards",
      };
    },
  },
  {
    name: 'ready with both tcp and http',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      const port = unusedPort(doc);
      vm.forwards = [...((vm.forwards as unknown[]) ?? []), { host: port, guest: 80 }];
      vm.ready = { tcp: port, http: { port } };
      return { doc, field: ['vms', name, 'ready'], says: 'needs exactly one of tcp, http, ssh or agent' };
    },
  },
  {
    name: 'ready through a udp forward',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      const port = unusedPort(doc);
      vm.forwards = [...((vm.forwards as unknown[]) ?? []), { proto: 'udp', host: port, guest: 53 }];
      vm.ready = { tcp: port };
      return {
        doc,
        field: ['vms', name, 'ready', 'tcp'],
        says: "must be the host port of one of this VM's tcp forwards",
      };
    },
  },
  {
    name: 'one host port in two VMs',
    apply(d, pick) {
      const doc = clone(d);
      const { first, second } = withTwoVms(doc, pick);
      const port = unusedPort(doc);
      doc.vms[first]!.forwards = [...((doc.vms[first]!.forwards as unknown[]) ?? []), `tcp::${port}-:22`];
      const theirs = (doc.vms[second]!.forwards as unknown[]) ?? [];
      doc.vms[second]!.forwards = [...theirs, { host: port, guest: 80, address: '0.0.0.0' }];
      return {
        doc,
        field: ['vms', second, 'forwards', theirs.length],
        says: 'claims the same host port as',
      };
    },
  },
  {
    name: 'one host port twice in one VM',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      const port = unusedPort(doc);
      const theirs = (vm.forwards as unknown[]) ?? [];
      vm.forwards = [...theirs, { host: port, guest: 80 }, `tcp:127.0.0.1:${port}-:81`];
      return {
        doc,
        field: ['vms', name, 'forwards', theirs.length + 1],
        says: 'claims the same host port as',
      };
    },
  },
  {
    name: 'one disk in two VMs',
    apply(d, pick) {
      const doc = clone(d);
      const { first, second } = withTwoVms(doc, pick);
      const a = doc.vms[first]!;
      const b = doc.vms[second]!;
      delete a.monitor;
      delete b.monitor;
      a.disk = 'disks/shared.qcow2';
      b.disk = { path: 'disks/../disks/shared.qcow2', size: '1G' };
      return { doc, field: ['vms', second, 'disk'], says: 'two VMs cannot share a disk' };
    },
  },
  {
    name: 'one monitor in two VMs',
    apply(d, pick) {
      const doc = clone(d);
      const { first, second } = withTwoVms(doc, pick);
      for (const name of [first, second]) {
        const vm = doc.vms[name]!;
        adopted(name, vm);
        vm.monitor = '/run/adopted/shared.sock';
      }
      return { doc, field: ['vms', second, 'monitor'], says: 'is also the monitor of VM' };
    },
  },
  {
    name: 'a stop timeout past 24h',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      vm.stopTimeout = nth(['25h', '1000h', 86_401, '86400001ms', '1441m'], pick);
      return { doc, field: ['vms', name, 'stopTimeout'], says: 'must be at most 24h' };
    },
  },
  {
    name: 'a ready timeout past 24h',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      const port = unusedPort(doc);
      vm.forwards = [...((vm.forwards as unknown[]) ?? []), { host: port, guest: 80 }];
      vm.ready = { tcp: port, timeout: nth(['25h', 90_000, '24.5h'], pick) };
      return { doc, field: ['vms', name, 'ready', 'timeout'], says: 'must be at most 24h' };
    },
  },
  {
    name: 'memory past 16T',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      vm.memory = nth(['17T', '16385G', 16 * 2 ** 20 + 1, '99T'], pick);
      return { doc, field: ['vms', name, 'memory'], says: 'must be at most 16T' };
    },
  },
  {
    name: 'a disk size past 1P',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      delete vm.monitor;
      vm.disk = { path: `disks/${name}/huge.qcow2`, size: nth(['1025T', '2048T', '1048577G'], pick) };
      return { doc, field: ['vms', name, 'disk', 'size'], says: 'must be at most 1024T' };
    },
  },
  {
    name: 'cpus out of range',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      vm.cpus = nth([0, 256, -1, 1.5, '2'], pick);
      return { doc, field: ['vms', name, 'cpus'], says: 'must be an integer from 1 to 255' };
    },
  },
  {
    name: 'a host port out of range',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      const theirs = (vm.forwards as unknown[]) ?? [];
      vm.forwards = [...theirs, { host: nth([0, 65536, 100_000], pick), guest: 80 }];
      return {
        doc,
        field: ['vms', name, 'forwards', theirs.length, 'host'],
        says: 'must be an integer from 1 to 65535',
      };
    },
  },
  {
    name: 'a forward rule whose port does not parse',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      const theirs = (vm.forwards as unknown[]) ?? [];
      vm.forwards = [...theirs, nth(['tcp::99999-:80', 'udp::0-:53', 'tcp::80-:70000'], pick)];
      return { doc, field: ['vms', name, 'forwards', theirs.length], says: 'is not a port from 1 to 65535' };
    },
  },
  {
    name: 'a forward address that is not IPv4',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      const theirs = (vm.forwards as unknown[]) ?? [];
      vm.forwards = [
        ...theirs,
        { host: unusedPort(doc), guest: 80, address: nth(['::1', 'localhost', '256.1.1.1'], pick) },
      ];
      return {
        doc,
        field: ['vms', name, 'forwards', theirs.length, 'address'],
        says: 'must be an IPv4 address',
      };
    },
  },
  {
    name: 'an option qvm manages in args',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      const theirs = (vm.args as string[]) ?? [];
      vm.args = [...theirs, nth(['-daemonize', '-monitor', '--qmp', '-loadvm', '-S', '-pidfile'], pick)];
      return { doc, field: ['vms', name, 'args', theirs.length], says: 'is managed by qvm' };
    },
  },
  {
    name: 'a writable raw drive in args with snapshots',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      startedWithQcow2(name, vm);
      vm.snapshot = 'ready';
      fitForSaves(vm);
      if (vm.state === 'saved') delete vm.state;
      vm.args = ['-drive', 'if=pflash,file=vars.fd,format=raw'];
      return { doc, field: ['vms', name, 'args', 1], says: 'is a writable raw drive' };
    },
  },
  {
    name: 'a snapshot tag with a space',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      startedWithQcow2(name, vm);
      vm.snapshot = nth(['a b', 'x;quit', '', 'a'.repeat(65)], pick);
      return { doc, field: ['vms', name, 'snapshot'], says: 'must be a snapshot tag' };
    },
  },
  {
    name: 'a control character in append',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      vm.kernel = 'guest/vmlinuz';
      vm.append = nth(['console=ttyS0\nquit', 'a\rb', '\u001b[2J', 'x\u007f'], pick);
      return { doc, field: ['vms', name, 'append'], says: 'must be text on one line' };
    },
  },
  {
    name: 'a control character in a path',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      vm.cdrom = nth(['iso/a\nb.iso', 'iso/\u0000.iso', ''], pick);
      return { doc, field: ['vms', name, 'cdrom'], says: 'must be a non-empty path on one line' };
    },
  },
  {
    name: 'an unknown field',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      const field = nth(['colour', 'memroy', 'Memory', 'cpu'], pick);
      vm[field] = 'blue';
      return { doc, field: ['vms', name, field], atKey: true, says: 'is not a known field' };
    },
  },
  {
    name: 'a VM name that is not a name',
    apply(d, pick) {
      const doc = clone(d);
      const bad = nth(['Web', '0', 'a_b', '-x', 'a'.repeat(41), 'x y'], pick);
      doc.vms[bad] = {};
      return { doc, field: ['vms', bad], atKey: true, says: 'must be lowercase letters, digits' };
    },
  },
  {
    name: 'a memory size that is not a size',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      vm.memory = nth(['lots', '0M', '512MB', 0, -5, '1.5G'], pick);
      return { doc, field: ['vms', name, 'memory'], says: 'must be a size such as 512M or 2G' };
    },
  },
  {
    name: 'a duration that is not a duration',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      vm.stopTimeout = nth(['5 minutes', '-1s', '1d', -3], pick);
      return { doc, field: ['vms', name, 'stopTimeout'], says: 'must be a duration' };
    },
  },
  {
    name: 'an HTTP status out of range',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      const port = unusedPort(doc);
      vm.forwards = [...((vm.forwards as unknown[]) ?? []), { host: port, guest: 80 }];
      vm.ready = { http: { port, status: nth([99, 600, 1000], pick) } };
      return { doc, field: ['vms', name, 'ready', 'http', 'status'], says: 'must be an HTTP status' };
    },
  },
  {
    name: 'a value outside an enum',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      const [field, value] = nth(
        [
          ['restart', 'sometimes'],
          ['state', 'paused'],
          ['accel', 'hvf'],
        ],
        pick,
      ) as [string, string];
      vm[field] = value;
      return { doc, field: ['vms', name, field], says: 'must be one of' };
    },
  },
  {
    name: 'a disk mapping without a path',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      vm.disk = { size: '1G' };
      return {
        doc,
        field: ['vms', name, 'disk', 'path'],
        locatedAt: ['vms', name, 'disk'],
        says: 'is required',
      };
    },
  },
  {
    name: 'a NIC model that is not a name',
    apply(d, pick) {
      const doc = clone(d);
      const { name, vm } = oneVm(doc, pick);
      vm.nic = nth(['e 1000', 'virtio,netdev=x', '-e1000'], pick);
      return { doc, field: ['vms', name, 'nic'], says: 'must be a NIC model name' };
    },
  },
  ...GUEST_MUTATIONS,
];

// ---------------------------------------------------------------------------------------------------------
// Where a field is in YAML text, found with the yaml library's own positions (not qvm's locate)

/** The 1-based line of the field at FIELD in TEXT: of its value, or with `atKey` of its mapping key. */
export function lineOf(text: string, field: (string | number)[], atKey = false): number | undefined {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter });
  let node: unknown = doc.contents;
  let keyNode: unknown;
  for (const part of field) {
    if (isMap(node)) {
      const pair = node.items.find(
        (p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(part),
      );
      if (!pair) return undefined;
      keyNode = pair.key;
      node = pair.value ?? pair.key;
    } else if (isSeq(node) && typeof part === 'number') {
      node = node.items[part];
      keyNode = node;
    } else {
      return undefined;
    }
  }
  const target = (atKey ? keyNode : node) as { range?: [number, number, number] } | undefined;
  return target?.range ? lineCounter.linePos(target.range[0]).line : undefined;
}

/** A field path the way qvm prints it (`vms.web.forwards[0].host`, `vms["0"]`), written out independently. */
export function printedPath(field: (string | number)[]): string {
  return field
    .map((part, i) =>
      typeof part === 'number'
        ? `[${part}]`
        : /^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(part)
          ? `${i ? '.' : ''}${part}`
          : `[${JSON.stringify(part)}]`,
    )
    .join('');
}
