/**
 * Observed state: what qvm found when it looked, one record per VM. Failures are data here: a VM whose
 * monitor does not answer is `unknown` with the error, and the others are observed as usual.
 */
import type { ObservedForward } from '../qemu/parse/usernet.js';
import type { LaunchRecord } from '../runtime/records.js';

export interface DiskState {
  path: string;
  exists: boolean;
  format?: string;
  virtualSizeBytes?: number;
  /** Snapshot tags in the image (read with qemu-img while stopped, through the monitor while running). */
  snapshots?: string[];
  /** Why the facts above are missing, when the file exists but could not be read. */
  error?: string;
}

interface Common {
  name: string;
  /** Started outside qvm and reached through `monitor:` in the manifest. */
  adopted: boolean;
  disk?: DiskState;
}

/** No process: never started, stopped, or its process died (then `stale` says what was left behind). */
export interface StoppedVm extends Common {
  state: 'stopped';
  /** A pidfile or socket left by a process that is gone (crash, SIGKILL), with what happened to it. */
  stale?: string;
}

export interface RunningVm extends Common {
  state: 'running';
  /** Unknown for adopted VMs reached only through their monitor. */
  pid?: number;
  startedAtMs?: number;
  /** QEMU's RunState: running, paused, shutdown (the guest powered off), restore-vm, internal-error, ... */
  runstate: string;
  /** The process's argv, from /proc (qvm-started VMs). */
  argv?: string[];
  /** How qvm started this very process (same argv), when it did and the record is readable. */
  launch?: LaunchRecord;
  /** Why the launch record could not be used (written by another qvm version, damaged). */
  launchUnreadable?: string;
  forwards: ObservedForward[];
  snapshots: string[];
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
}

/** A forward the manifest wants whose host port something else holds. */
export interface PortConflict {
  vm: string;
  /** Index in the VM's `forwards`. */
  index: number;
  holder: string;
}

export interface Observation {
  /** By VM name: every VM of the manifest. */
  vms: Map<string, ObservedVm>;
  /** Running VMs of this namespace that the manifest no longer lists. */
  orphans: ObservedVm[];
  host: HostFacts;
  /** Host ports the manifest's forwards need that are held by something other than this manifest's VMs. */
  portConflicts: PortConflict[];
}
