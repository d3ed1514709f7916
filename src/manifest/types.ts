/**
 * The manifest in two forms: the raw document as the schema accepted it (what checkers read), and the VmSpec
 * that the defaults step makes of it (what everything after the manifest layer uses): every path absolute,
 * every size in bytes or MiB, every duration in milliseconds, every forward with an explicit host address.
 */
import type { SshAccess } from '../model/access.js';
import type { FieldPath } from '../model/field-path.js';
import type { HostForward } from '../model/forward.js';
import type { SourcePosition } from './load.js';

export type DesiredState = 'running' | 'stopped' | 'saved';
export type RestartPolicy = 'always' | 'on-failure' | 'never';
export type Accel = 'auto' | 'kvm' | 'tcg';

/** A forward written as a mapping: `{host: 8080, guest: 80}`. */
export interface RawForwardObject {
  proto?: 'tcp' | 'udp';
  host: number;
  guest: number;
  address?: string;
  guestAddress?: string;
}

/** An image to download, as the manifest gives it. */
export interface RawImageSource {
  url: string;
  sha256?: string;
  sha512?: string;
}

/** Text inline, or the file to read it from. */
export type RawTextOrFile = string | { file: string };

/** One VM as the schema accepted it (the checkers still look at every field they depend on). */
export interface RawVm {
  image?: string | RawImageSource;
  cloudInit?: { userData?: RawTextOrFile; networkConfig?: RawTextOrFile };
  ssh?: { user: string; port?: number };
  agent?: boolean;
  mounts?: { host: string; guest: string; writable?: boolean }[];
  disks?: { path: string; size?: string; format?: DiskFormat; serial?: string }[];
  display?: 'vnc' | { vnc: { port: number; address?: string } };
  memory?: string | number;
  cpus?: number;
  disk?:
    | string
    | { path: string; size?: string; format?: DiskFormat; backing?: string; backingFormat?: DiskFormat };
  cdrom?: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  nic?: string;
  forwards?: (string | RawForwardObject)[];
  snapshot?: string;
  state?: DesiredState;
  stopTimeout?: string | number;
  accel?: Accel;
  monitor?: string;
  args?: string[];
  restart?: RestartPolicy;
  ready?: {
    ssh?: true;
    agent?: true;
    tcp?: number;
    http?: { port: number; path?: string; status?: number };
    timeout?: string | number;
  };
}

/** How to tell a VM is ready: through one of its tcp forwards (host side), or by logging in over SSH. */
export type ReadySpec = (
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'http'; host: string; port: number; path: string; status: number }
  | {
      kind: 'ssh';
      /** Filled in when qvm prepares the VM's SSH access (guest/prepare.ts); never by the manifest. */
      access?: SshAccess;
    }
  | { kind: 'agent' }
) & { timeoutMs: number };

/** Where a VM's disk image comes from: a download pinned by digest, or a local image file. */
export type ImageSpec =
  | {
      kind: 'url';
      url: string;
      /** The digests the manifest pins (at least one for http and https). */
      sha256?: string;
      sha512?: string;
      /** The name in `images:`, when the VM named one. */
      name?: string;
    }
  | { kind: 'path'; path: string };

/** cloud-init data as the manifest gives it (files already read). */
export interface CloudInitSpec {
  userData?: string;
  networkConfig?: string;
}

export interface SshSpec {
  user: string;
  /** The host port on 127.0.0.1; undefined until qvm picks one for the VM (and then keeps it). */
  port?: number;
  /** How to log in; filled in when qvm prepares the VM's SSH access (guest/prepare.ts). */
  access?: SshAccess;
}

/** The VM's cloud-init seed, made by qvm (guest/prepare.ts) when the VM has `cloudInit:` or `ssh:`. */
export interface SeedSpec {
  /** The folder holding meta-data, user-data and network-config. */
  dir: string;
  /** A hash of the seed's content: a changed seed is a new instance. */
  instanceId: string;
}

/** The image formats qvm opens disks as: declared, never probed. */
export type DiskFormat = 'qcow2' | 'raw';

export interface DiskSpec {
  path: string;
  /** How the disk is opened (and created): the manifest's `format`, qcow2 unless it says raw. */
  format: DiskFormat;
  /** Virtual size in bytes for creating the disk; undefined means "take the backing image's size". */
  sizeBytes?: number;
  backing?: string;
  backingFormat?: DiskFormat;
}

/** A data disk (`disks:`), attached after the OS disk. */
export interface DataDiskSpec {
  path: string;
  format: DiskFormat;
  sizeBytes?: number;
  /** What the guest sees as the disk's serial (/dev/disk/by-id/virtio-SERIAL). */
  serial: string;
  /** Index in the VM's `disks` list, for locating plan errors. */
  index: number;
}

/** A host folder shared with the guest over virtio-9p. */
export interface MountSpec {
  /** The host folder, absolute. */
  host: string;
  /** Where the guest mounts it. */
  guest: string;
  writable: boolean;
  /** The 9p mount tag the guest mounts it by: qvm0, qvm1, ... in list order. */
  tag: string;
  index: number;
}

/** Where the VM's screen is served: VNC on a unix socket in the runtime folder, or on a TCP port. */
export type DisplaySpec = { kind: 'vnc-socket' } | { kind: 'vnc-tcp'; address: string; port: number };

/** A forward and where the manifest declared it, so plan errors about it can be located. */
export interface ForwardSpec extends HostForward {
  /** Index in the VM's `forwards` list; SSH_FORWARD_INDEX for the forward qvm adds for `ssh:`. */
  index: number;
}

/** The `index` of the forward qvm adds for `ssh:` (declared by `ssh.port`, not in `forwards`). */
export const SSH_FORWARD_INDEX = -1;

/** The host address of that forward: SSH is reachable from this machine only. */
export const SSH_FORWARD_ADDRESS = '127.0.0.1';

/** The field of a VM that declares a forward: its item of `forwards`, or `ssh.port` for the SSH forward. */
export function forwardField(forward: Pick<ForwardSpec, 'index'>): (string | number)[] {
  return forward.index === SSH_FORWARD_INDEX ? ['ssh', 'port'] : ['forwards', forward.index];
}

export interface VmSpec {
  name: string;
  memoryMiB: number;
  cpus: number;
  disk?: DiskSpec;
  image?: ImageSpec;
  cloudInit?: CloudInitSpec;
  ssh?: SshSpec;
  /** Made by qvm from cloudInit and ssh before planning; undefined in a manifest fresh from validation. */
  seed?: SeedSpec;
  /** A qemu-guest-agent channel. */
  agent: boolean;
  mounts: MountSpec[];
  dataDisks: DataDiskSpec[];
  display?: DisplaySpec;
  cdrom?: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  nic: string;
  forwards: ForwardSpec[];
  snapshot?: string;
  state: DesiredState;
  stopTimeoutMs: number;
  accel: Accel;
  /** Set for adopted VMs: a QEMU started by someone else, reached through this socket. */
  monitor?: string;
  args: string[];
  restart: RestartPolicy;
  ready?: ReadySpec;
  /** The manifest file that declares this VM (a folder of manifests has several). */
  source: string;
  /**
   * Adopted VMs only: restart-class fields the manifest sets, which qvm cannot apply to a VM it did not
   * start. The plan says so.
   */
  adoptedIgnores?: string[];
}

export interface Manifest {
  /** The file as the user named it, for messages. */
  file: string;
  /** Absolute folder that relative paths were resolved against. */
  dir: string;
  vms: VmSpec[];
  /** Where a field of the manifest is: for plan errors that point back at the file. */
  locate(path: FieldPath): SourcePosition | undefined;
}

/** What a field that the manifest leaves out means. */
export const DEFAULTS = {
  memoryMiB: 512,
  cpus: 1,
  /** Every current distro cloud kernel has virtio-net (Debian's cloud kernel has no e1000 driver). */
  nic: 'virtio-net-pci',
  state: 'running' as DesiredState,
  stopTimeoutMs: 30_000,
  accel: 'auto' as Accel,
  /** Where a forward with no host address binds: loopback, unlike QEMU's every-interface default. */
  forwardAddress: '127.0.0.1',
  restart: 'on-failure' as RestartPolicy,
  readyTimeoutMs: 60_000,
};
