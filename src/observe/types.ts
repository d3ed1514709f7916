/**
 * Observed state: what qvm found when it looked, one record per VM. Failures are data here: a VM whose
 * monitor does not answer is `unknown` with the error, and the others are observed as usual.
 */
import type { ObservedForward } from '../qemu/parse/usernet.js';
import type { KnownDisk, LaunchRecord, SavedStateRecord, SnapshotRecord } from '../runtime/records.js';

/** What qvm knows of a VM's image before starting it. */
export type ImageState =
  | {
      kind: 'url';
      /** The cache's copy, when it holds one. */
      cached?: { path: string; format: string; sizeBytes: number };
      /** The size the server announces, when the image must be downloaded and the server says. */
      remoteSizeBytes?: number;
    }
  | { kind: 'path'; format?: string; error?: string };

export interface DiskState {
  path: string;
  /** The format qvm opens it as: the manifest's declared one (never read from the file). */
  format: string;
  exists: boolean;
  virtualSizeBytes?: number;
  /**
   * Snapshot tags in the image (read with qemu-img while stopped, from QEMU while running). Only these can be
   * loaded: with one writable qcow2 disk, every snapshot of it is loadable.
   */
  snapshots?: string[];
  /** Why the facts above are missing or cannot be trusted: not an image of its format, not a file, ... */
  error?: string;
  /** Device and inode of the file, when it exists: how a record tells it is the same file. */
  identity?: { dev: number; ino: number };
  /** qvm's record of this very file (same inode): whether it created it and the format it opened it as. */
  known?: KnownDisk;
  /** Free bytes on the filesystem the disk is on (to tell whether a full disk has room again). */
  freeBytes?: number;
  /** Bytes the file takes on that filesystem now (its blocks). */
  allocatedBytes?: number;
  /** The backing file a qcow2 overlay names (what an `image:` disk was made from). */
  backingFile?: string;
}

/** The hibernation record of a VM: the record, or why it cannot be used. */
export type SavedStateObservation = { record: SavedStateRecord } | { unreadable: string };

interface Common {
  name: string;
  /** Started outside qvm and reached through `monitor:` in the manifest. */
  adopted: boolean;
  disk?: DiskState;
  /** The VM's data disks (`disks:`), in manifest order. */
  dataDisks?: DiskState[];
  /** The VM's `image:`, when it has one and its disk is still to be made. */
  image?: ImageState;
  /** qvm's record that it hibernated this VM (state: saved), if there is one. */
  savedState?: SavedStateObservation;
  /** How the VM ran when qvm saved each of its snapshots, by tag. */
  snapshotRecords?: Record<string, SnapshotRecord>;
}

/** No process: never started, stopped, or its process died (then `stale` says what was left behind). */
export interface StoppedVm extends Common {
  state: 'stopped';
  /** A pidfile or socket left by a process that is gone (crash, SIGKILL), with what happened to it. */
  stale?: string;
  /**
   * A QEMU of this very VM (same namespace and name) runs under another runtime root: qvm was started with
   * another QVM_RUNTIME_DIR. It must not get a second QEMU.
   */
  elsewhere?: { pid: number; root: string };
}

export interface RunningVm extends Common {
  state: 'running';
  /** Unknown for adopted VMs reached only through their monitor. */
  pid?: number;
  startedAtMs?: number;
  /** QEMU's RunState: running, paused, shutdown (the guest powered off), restore-vm, io-error, ... */
  runstate: string;
  /** The process's argv, from /proc (qvm-started VMs). */
  argv?: string[];
  /** How qvm started this very process (same argv), when it did and the record is readable. */
  launch?: LaunchRecord;
  /** Why the launch record could not be used (written by another qvm version, damaged). */
  launchUnreadable?: string;
  forwards: ObservedForward[];
  snapshots: string[];
  /** A drive whose I/O error paused the VM (QEMU stops on ENOSPC): which, and what QEMU says. */
  ioError?: { device: string; file: string; status: string };
}

/** A process is there but its monitor did not answer (frozen, overloaded, or held by another client). */
export interface UnknownVm extends Common {
  state: 'unknown';
  pid?: number;
  error: string;
}

export type ObservedVm = StoppedVm | RunningVm | UnknownVm;

export interface HostFacts {
  /** KVM can run a guest here (probed: see qemu/accel.ts). `accel: auto` uses it when true. */
  kvmUsable: boolean;
  kvmReason: string;
  /** qemu-system-x86_64 is on PATH: without it nothing can start. */
  qemuInstalled: boolean;
  /** RAM plus swap, in bytes: the most memory QEMU can allocate for a guest here. */
  memoryBytes: number;
  /** The runtime root this qvm uses (VMs under another one are not its own). */
  runtimeRoot: string;
}

/** A forward the manifest wants whose host port something else holds. */
export interface PortConflict {
  vm: string;
  /** The forward's index in the VM's `forwards` (SSH_FORWARD_INDEX for its SSH forward), or its VNC server. */
  index: number | 'vnc';
  holder: string;
}

/** An adopted VM's monitor that is not a QEMU of its own: another VM's, or one qvm started. */
export interface MonitorClash {
  vm: string;
  message: string;
}

export interface Observation {
  /** By VM name: every VM of the manifest. */
  vms: Map<string, ObservedVm>;
  /** Running VMs of this namespace that the manifest no longer lists. */
  orphans: ObservedVm[];
  host: HostFacts;
  /** Host ports the manifest's forwards need that are held by something other than this manifest's VMs. */
  portConflicts: PortConflict[];
  /** Adopted VMs whose monitor reaches a QEMU that is not theirs to steer. */
  monitorClashes: MonitorClash[];
}
