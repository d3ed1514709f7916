/**
 * A plan is data: what would change, per VM, and why. The planner produces it without side effects, the
 * renderers draw it, the executor carries it out. Every change says whether it happens live (the VM keeps
 * running) or through its process (start, stop, restart).
 */
import type { ReadySpec } from '../manifest/types.js';
import type { HostForward } from '../model/forward.js';
import type { DiskCreation } from '../qemu/img.js';

/** A field of the manifest whose value differs from the running VM's, in user terms: `memory 512M -> 1G`. */
export interface FieldChange {
  field: string;
  from: string;
  to: string;
}

/** Where a start boots from when not cold: a snapshot named in the manifest, or a hibernated state. */
export interface BootFrom {
  tag: string;
  kind: 'snapshot' | 'saved-state';
}

export type StartReason =
  | 'new' // never started in this namespace, or stopped cleanly
  | 'exited' // the process is gone and left a pidfile or socket behind (crash, SIGKILL)
  | 'guest-powered-off' // the guest powered off; its QEMU (kept by -no-shutdown) is quit first
  | 'resume'; // a hibernated VM (state: saved) is wanted running again

/** What happens after a (re)start: wait for the readiness probe, then maybe save the warm snapshot. */
export interface AfterStart {
  /** Wait for this probe after starting (manifest `ready:`). */
  ready?: ReadySpec;
  /** Once ready, `savevm` this tag: the first cold boot of a VM with `snapshot:` and `ready:`. */
  saveSnapshot?: string;
  /** Delete this snapshot from the disk before starting (`apply --refresh-snapshot`). */
  dropSnapshot?: string;
  /** Grow the disk to the manifest's size before starting (qemu-img resize; never shrinks). */
  resizeDisk?: { path: string; fromBytes: number; toBytes: number };
}

export interface StartChange extends AfterStart {
  action: 'start';
  vm: string;
  reason: StartReason;
  /** Details for the reason, e.g. what stale file was found. */
  detail?: string;
  createDisk?: DiskCreation;
  bootFrom?: BootFrom;
  /** The pid of a process to quit first (guest powered off, QEMU kept alive by -no-shutdown). */
  replacesPid?: number;
  /** The full qemu-system argv (without the program name). */
  args: string[];
  /** The disk's format, for the launch. */
  diskFormat?: string;
  /** The VM's QMP socket once started (and of the process it replaces). */
  socket: string;
}

export interface RestartChange extends AfterStart {
  action: 'restart';
  vm: string;
  pid: number;
  /** What differs, in manifest terms; empty when only the command line is known to differ. */
  fields: FieldChange[];
  /** A state the VM is stuck in (restore-vm, internal-error, guest-panicked) instead of, or as well as, fields. */
  stuckIn?: string;
  /** Restarting to recreate the warm snapshot (`apply --refresh-snapshot`). */
  refreshSnapshot?: boolean;
  /**
   * The forward changes that could be made live if this restart is held back (`watch --live-only`); a
   * restart applies them through the new command line anyway.
   */
  liveForwards?: UpdateChange;
  argsBefore: string[];
  argsAfter: string[];
  stopTimeoutMs: number;
  createDisk?: DiskCreation;
  bootFrom?: BootFrom;
  diskFormat?: string;
  socket: string;
}

export interface RemovedForward extends HostForward {
  /** Not put there by qvm: added by hand through the monitor. */
  drift: boolean;
}

/** Changes made to the running VM without stopping it. */
export interface UpdateChange {
  action: 'update';
  vm: string;
  adopted: boolean;
  /** The monitor to use: qvm's QMP socket, or the adopted VM's own socket. */
  socket: string;
  /** The netdev the forwards live on (net0 for VMs qvm starts). */
  netdev: string;
  add: HostForward[];
  remove: RemovedForward[];
  /** The VM was paused (someone ran `stop`): continue it. */
  resume: boolean;
}

export type StopReason = 'state-stopped' | 'not-in-manifest' | 'destroy';

export interface StopChange {
  action: 'stop';
  vm: string;
  reason: StopReason;
  adopted: boolean;
  /** Pid, for VMs qvm started; adopted VMs are only ever quit through their monitor. */
  pid?: number;
  socket: string;
  stopTimeoutMs: number;
  /** The guest already powered off (runstate shutdown): quit without waiting. */
  alreadyPoweredOff: boolean;
}

/** state: saved: savevm to qvm's own tag, then quit. The next start resumes there. */
export interface SaveChange {
  action: 'save';
  vm: string;
  pid: number;
  socket: string;
  tag: string;
}

export type VmChange = StartChange | RestartChange | UpdateChange | StopChange | SaveChange;

/** Something that keeps a VM from being planned; the VM is left alone, the others go ahead. */
export interface PlanProblem {
  vm: string;
  message: string;
  /** Manifest location, when the problem is about a field. */
  location?: { file: string; line?: number; column?: number; path?: string };
}

/** Worth knowing, changes nothing: fields ignored on adopted VMs, VMs left running outside the manifest. */
export interface PlanNote {
  vm: string;
  message: string;
}

export interface Plan {
  /** The manifest's folder: paths are shown relative to it. */
  baseDir: string;
  changes: VmChange[];
  problems: PlanProblem[];
  notes: PlanNote[];
  /** VMs that already match the manifest. */
  unchanged: string[];
}

/** The snapshot tag qvm owns for hibernation (state: saved). */
export const SAVED_STATE_TAG = 'qvm-saved-state';
