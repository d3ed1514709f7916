/**
 * The manifest in two forms: the raw document as the schema accepted it (what checkers read), and the VmSpec
 * that the defaults step makes of it (what everything after the manifest layer uses): every path absolute,
 * every size in bytes or MiB, every duration in milliseconds, every forward with an explicit host address.
 */
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

/** One VM as the schema accepted it (the checkers still look at every field they depend on). */
export interface RawVm {
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
    tcp?: number;
    http?: { port: number; path?: string; status?: number };
    timeout?: string | number;
  };
}

/** How to tell a VM is ready, through one of its tcp forwards (host side). */
export type ReadySpec = (
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'http'; host: string; port: number; path: string; status: number }
) & { timeoutMs: number };

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

/** A forward and where the manifest declared it, so plan errors about it can be located. */
export interface ForwardSpec extends HostForward {
  /** Index in the VM's `forwards` list. */
  index: number;
}

export interface VmSpec {
  name: string;
  memoryMiB: number;
  cpus: number;
  disk?: DiskSpec;
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
  nic: 'e1000',
  state: 'running' as DesiredState,
  stopTimeoutMs: 30_000,
  accel: 'auto' as Accel,
  /** Where a forward with no host address binds: loopback, unlike QEMU's every-interface default. */
  forwardAddress: '127.0.0.1',
  restart: 'on-failure' as RestartPolicy,
  readyTimeoutMs: 60_000,
};
