/**
 * A plan is data: what would change, per VM, and why. The planner produces it without side effects, the
 * renderers draw it, the executor carries it out from the plan alone. Every change says whether it happens
 * live (the VM keeps running) or through its process (start, stop, restart).
 *
 * Fields marked "display only" explain a change to people; the executor must not decide anything from them.
 */
import type { Digest } from '../images/cache.js';
import type { ReadySpec } from '../manifest/types.js';
import type { SshAccess } from '../model/access.js';
import type { HostForward } from '../model/forward.js';
import type { LaunchSpec } from '../qemu/argv.js';
import type { DiskCreation } from '../qemu/img.js';
import type { RecordedLaunch } from '../runtime/records.js';

/** A field of the manifest whose value differs from the running VM's, in user terms: `memory 512M -> 1G`. */
export interface FieldChange {
  field: string;
  from: string;
  to: string;
  /** How to say it when "field from -> to" would not (a changed seed has no value worth showing). */
  text?: string;
}

/** A forward as the plan carries it: whether other machines can reach it is data, not a renderer's guess. */
export interface PlannedForward extends HostForward {
  /** Bound to an address other machines can reach (not loopback). */
  exposed: boolean;
}

/** Where a start boots from when not cold: a snapshot named in the manifest, or a hibernated state. */
export interface BootFrom {
  tag: string;
  kind: 'snapshot' | 'saved-state';
}

/** Everything needed to start a VM's QEMU and to remember how it was started. */
export interface Launch {
  /** What the argv is built from; the launch record keeps it. */
  spec: LaunchSpec;
  /** The full qemu-system argv, without the program name. */
  args: string[];
  /** Kept in the launch record: how long a later stop waits, even once the manifest no longer lists the VM. */
  stopTimeoutMs: number;
  /** The manifest file that declares the VM. */
  source: string;
}

/** Why a VM is being started. Display only: `recovery` is what the executor and watch act on. */
export type StartReason =
  | 'new' // never started in this namespace, or stopped cleanly
  | 'exited' // the process is gone and left a pidfile or socket behind (crash, SIGKILL)
  | 'guest-powered-off' // the guest powered off; its QEMU (kept by -no-shutdown) is quit first
  | 'resume'; // a hibernated VM (state: saved) is wanted running again

/** An image to download into the cache before the disk is made from it. */
export interface ImageFetch {
  url: string;
  digest: Digest;
  /** For people: the catalogue name or the URL's last part. */
  label: string;
  /** The size the server announced, when it did (display only). */
  sizeBytes?: number;
}

/** How the guest's clock is set after a resume: through its agent (exact), else over SSH with sudo. */
export type ClockSync = { agent: string } | { ssh: SshAccess };

/** The steps around starting a process, in the order apply takes them. */
export interface StartSteps {
  /** Before the start: download the VM's image into the cache (the disk is then made from it). */
  fetchImage?: ImageFetch;
  /** Before the start: create the disk (an overlay of the fetched image when `fetchImage` is set). */
  createDisk?: DiskCreation;
  /** Display only: the manifest's name for the image the disk is made from (not the cache's file name). */
  imageLabel?: string;
  /** Before the start: grow the disk to the manifest's size (qemu-img resize; never shrinks). */
  resizeDisk?: { path: string; fromBytes: number; toBytes: number };
  /** Before the start: create the missing data disks (`disks:`). */
  createDataDisks?: (DiskCreation & { format: string })[];
  /** Before the start: grow data disks to their manifest size. */
  growDataDisks?: { path: string; format: string; fromBytes: number; toBytes: number }[];
  /**
   * Before the start: delete these snapshots from the disk (`apply --refresh-snapshot`, a discarded or stray
   * hibernation snapshot).
   */
  dropSnapshots?: { disk: string; tag: string }[];
  /** Before the start: remove the VM's hibernation record (it is stale, or its state is being discarded). */
  forgetSavedState?: boolean;
  /** The start boots from this snapshot or hibernated state (the launch's -loadvm). */
  bootFrom?: BootFrom;
  /** After the start: wait for this probe (manifest `ready:`). */
  ready?: ReadySpec;
  /** Once ready: `savevm` this tag (the first cold boot of a VM with `snapshot:` and `ready:`). */
  saveSnapshot?: string;
  /** Display only: the warm snapshot exists but was taken with another configuration, so it is made anew. */
  staleSnapshot?: { tag: string; why: string };
  /** Display only: where `qvm ssh` reaches the VM (its loopback forward to port 22). */
  sshAt?: { host: string; port: number };
  /** After a resume: set the guest's clock (which stood still while the snapshot waited). */
  syncClock?: ClockSync;
  /**
   * The agent socket of a VM with 9p shares: after a resume it mounts them again, and around `saveSnapshot`
   * it unmounts them (QEMU refuses to save while one is mounted).
   */
  shareAgent?: string;
}

/** Changes that must be finished before this one starts (a VM leaving the manifest frees a disk or port). */
export interface Ordered {
  after?: string[];
}

export interface StartChange extends StartSteps, Ordered {
  action: 'start';
  vm: string;
  /** Display only. */
  reason: StartReason;
  /** Display only: details for the reason, e.g. what stale file was found. */
  detail?: string;
  /** The VM went down by itself (its QEMU died, or the guest powered off): watch's back-off counts it. */
  recovery: boolean;
  /** The pid of a process to quit first (guest powered off, QEMU kept alive by -no-shutdown). */
  replacesPid?: number;
  launch: Launch;
  /** The forwards on the new command line. */
  forwards: PlannedForward[];
  /** The VM's QMP socket once started (and of the process it replaces). */
  socket: string;
}

export interface RestartChange extends StartSteps, Ordered {
  action: 'restart';
  vm: string;
  pid: number;
  /** Display only: what differs, in manifest terms; empty when only the command line is known to differ. */
  fields: FieldChange[];
  /** Display only: a state the VM is stuck in (restore-vm, internal-error, guest-panicked). */
  stuckIn?: string;
  /** Quit without pressing the power button first: the guest cannot answer it (a stuck runstate). */
  skipPowerOff: boolean;
  /** Display only: restarting to recreate the warm snapshot (`apply --refresh-snapshot`). */
  refreshSnapshot?: boolean;
  /**
   * The forward changes that could be made live if this restart is held back (`watch --live-only`); a
   * restart applies them through the new command line anyway.
   */
  liveForwards?: UpdateChange;
  /** Display only: the command line the VM runs with now. */
  argsBefore: string[];
  launch: Launch;
  forwards: PlannedForward[];
  stopTimeoutMs: number;
  socket: string;
}

export interface RemovedForward extends PlannedForward {
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
  add: PlannedForward[];
  remove: RemovedForward[];
  /** The VM was paused (someone ran `stop`), or paused on a full disk that has room again: continue it. */
  resume: boolean;
  /** Display only: why it is resumed, when not simply paused by hand. */
  resumeReason?: string;
  /** Delete qvm's hibernation snapshot: on a running VM it is left over, and must never be loaded. */
  dropStraySnapshot?: string;
  /** Remove the VM's hibernation record: a running VM has no saved state to resume. */
  forgetSavedState?: boolean;
}

/** Display only: why a VM is stopped. */
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
  /** Before stopping: delete qvm's hibernation snapshot, left over on this running VM's disk. */
  dropStraySnapshot?: string;
  /** Remove the VM's hibernation record: a stale one, on a VM that is not hibernated. */
  forgetSavedState?: boolean;
}

/**
 * state: saved: savevm to qvm's own tag, then quit, then record (durably) that the VM was hibernated. Only that
 * record lets a later start resume there.
 */
export interface SaveChange {
  action: 'save';
  vm: string;
  pid: number;
  socket: string;
  tag: string;
  /** The disk the state is saved into. */
  disk: string;
  /** How the VM runs now, for the record: resuming needs the same configuration. */
  launch?: RecordedLaunch;
  /** The agent socket that unmounts the VM's 9p shares before the save. */
  shareAgent?: string;
}

export type VmChange = StartChange | RestartChange | UpdateChange | StopChange | SaveChange;

/** Where in a manifest a problem is. */
export interface PlanLocation {
  file: string;
  line?: number;
  column?: number;
  path?: string;
}

/** Something that keeps a VM from being planned; the VM is left alone, the others go ahead. */
export interface PlanProblem {
  vm: string;
  message: string;
  /** Manifest location, when the problem is about a field. */
  location?: PlanLocation;
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
