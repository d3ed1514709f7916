/**
 * The side effects apply needs, behind one narrow interface: the executor is tested with a recording fake,
 * and the real implementation (here) is tested against real QEMU.
 */
import path from 'node:path';
import { RuntimeDirError, VmStateError } from '../errors.js';
import { setGuestTime, withAgent } from '../guest/agent.js';
import { syncGuestClock } from '../guest/clock.js';
import { agentExec } from '../guest/exec.js';
import { lookupImage, recordImageUser } from '../images/cache.js';
import { type DownloadProgress, fetchImage } from '../images/download.js';
import type { ReadySpec } from '../manifest/types.js';
import { formatHostfwd, formatHostfwdRemoval, type HostForward } from '../model/forward.js';
import type { BootFrom, ClockSync, ImageFetch, Launch } from '../plan/types.js';
import type { LaunchSpec } from '../qemu/argv.js';
import { QEMU_SYSTEM } from '../qemu/argv.js';
import { createDisk, type DiskCreation, deleteSnapshot, fileIdentity, growDisk } from '../qemu/img.js';
import { connectMonitor } from '../qemu/monitor.js';
import { waitReady } from '../ready/probe.js';
import { type Namespace, type VmPaths, vmPaths } from '../runtime/paths.js';
import { checkPidfile } from '../runtime/process.js';
import {
  type KnownDisk,
  type RecordedLaunch,
  readKnownDisks,
  readLaunchRecord,
  readSavedState,
  recordKnownDisk,
  recordSnapshot,
  removeRecord,
  writeLaunchRecord,
  writeSavedState,
} from '../runtime/records.js';
import { launchQemu, prepareRuntimeDirs, type StopOutcome, type StopTarget, stopVm } from './supervisor.js';

export interface Effects {
  /** Downloads an image into the cache (or finds it there); returns the cached file and its format. */
  fetchImage(
    fetch: ImageFetch,
    onProgress?: (p: DownloadProgress) => void,
  ): Promise<{ path: string; format: string }>;
  /** Creates a disk and records that qvm made it (a data disk is recorded as one: destroy keeps it). */
  createDisk(vm: string, disk: DiskCreation, format: string, role?: 'data'): Promise<void>;
  /**
   * Starts the VM's QEMU as `launch` says and records how it was started; returns its pid. Resuming a saved
   * state consumes the VM's hibernation record (it is given back if QEMU does not start).
   */
  launch(vm: string, launch: Launch, bootFrom: BootFrom | undefined): Promise<number>;
  stop(target: StopTarget): Promise<StopOutcome>;
  /** One HMP command through a monitor socket (qvm's QMP socket or an adopted VM's own). */
  hmp(socket: string, command: string, timeoutMs?: number): Promise<string>;
  /** Records forwards qvm added live, so later plans can tell them from drift. */
  rememberLiveForwards(vm: string, added: HostForward[], removed: HostForward[]): void;
  /** Waits for the readiness probe; throws NotReadyError at its timeout. */
  waitReady(
    vm: string,
    ready: ReadySpec,
    socket: string,
    onAttempt?: (detail: string) => void,
  ): Promise<{ elapsedMs: number; detail?: string }>;
  /** Deletes a snapshot from the disk of a stopped VM (qemu-img). */
  deleteSnapshotOffline(disk: string, tag: string): Promise<void>;
  /** Grows the disk of a stopped VM (qemu-img resize). */
  growDisk(disk: string, format: string, sizeBytes: number): Promise<void>;
  /** Records, durably, that the VM was hibernated into `tag` on `disk`: the only licence to resume it. */
  recordSavedState(vm: string, saved: { tag: string; disk: string; launch?: RecordedLaunch }): void;
  /** Removes the VM's hibernation record. */
  forgetSavedState(vm: string): void;
  /** Records how the VM ran when a snapshot was saved, so a later change of configuration marks it stale. */
  recordSnapshot(vm: string, tag: string, launch: LaunchSpec): void;
  /** Sets the guest's clock to the host's over SSH (after a resume); false when the guest would not. */
  /** Sets the guest's clock to the host's; false when the guest refused (no sudo, no answer). */
  syncClock(how: ClockSync): Promise<boolean>;
  /** Mounts or unmounts the guest's 9p shares through its agent (`mount -a -t 9p`, `umount -a -t 9p`). */
  guestShares(agentSocket: string, action: 'mount' | 'unmount'): Promise<void>;
}

/** One HMP command on a fresh connection (QEMU serves one client per socket: hold it only this long). */
export async function sendHmp(socket: string, command: string, timeoutMs = 10_000): Promise<string> {
  const monitor = await connectMonitor(socket, { timeoutMs });
  try {
    return await monitor.hmp(command, { timeoutMs });
  } finally {
    await monitor.close();
  }
}

/**
 * Records a disk the first time qvm creates or opens it, with its inode and format: from then on it is opened
 * as that format, and only a disk qvm created is ever deleted by `destroy --delete-disks`.
 */
function rememberDisk(
  paths: VmPaths,
  file: string,
  format: string,
  created: boolean,
  image?: KnownDisk['image'],
  role?: 'data',
): void {
  const identity = fileIdentity(file);
  if (!identity) return;
  const known = readKnownDisks(paths.disks).find((d) => d.path === file);
  if (known && known.dev === identity.dev && known.ino === identity.ino) return;
  recordKnownDisk(paths.disks, {
    path: file,
    ...identity,
    format,
    created,
    at: new Date().toISOString(),
    ...(image ? { image } : {}),
    ...(role ? { role } : {}),
  });
}

/** The effects against real QEMU processes, files and sockets of a namespace. */
export function realEffects(namespace: Namespace, options: { signal?: AbortSignal } = {}): Effects {
  const paths = (vm: string): VmPaths => vmPaths(namespace, vm);
  return {
    async fetchImage(fetch, onProgress) {
      const image = await fetchImage(
        { url: fetch.url, digest: fetch.digest },
        { ...(onProgress ? { onProgress } : {}), ...(options.signal ? { signal: options.signal } : {}) },
      );
      return { path: image.path, format: image.format };
    },
    async createDisk(vm, disk, format, role) {
      const p = paths(vm);
      prepareRuntimeDirs(namespace, p);
      await createDisk({ ...disk, format });
      rememberDisk(p, disk.path, format, true, disk.image, role);
      if (disk.image?.url && disk.backing) {
        const cached = lookupImage({ algorithm: 'sha256', hex: path.basename(disk.backing) });
        if (cached) recordImageUser(cached, disk.path, namespace.source);
      }
    },
    async launch(vm, launch, bootFrom) {
      const p = paths(vm);
      prepareRuntimeDirs(namespace, p);
      const { name: _name, loadvm: _loadvm, ...recorded } = launch.spec;
      // Every record is written before QEMU starts: a full disk fails the start, never a started VM's record.
      writeLaunchRecord(p.launch, {
        version: 2,
        vm,
        manifest: launch.source,
        argv: [QEMU_SYSTEM, ...launch.args],
        launch: recorded,
        stopTimeoutMs: launch.stopTimeoutMs,
        startedAt: new Date().toISOString(),
        ...(bootFrom ? { bootedFrom: bootFrom.tag } : {}),
        liveForwards: [],
      });
      if (launch.spec.disk) rememberDisk(p, launch.spec.disk.path, launch.spec.disk.format, false);
      // The record is the licence to resume: consumed before the start, so a VM that later crashes is never
      // resumed from this state again; given back when QEMU does not start (the disk was not touched).
      const saved = bootFrom?.kind === 'saved-state' ? readSavedState(p.savedState) : undefined;
      if (saved) removeRecord(p.savedState);
      try {
        return await launchQemu(launch.args, p);
      } catch (error) {
        removeRecord(p.launch);
        if (saved && !('unreadable' in saved)) writeSavedState(p.savedState, saved);
        throw error;
      }
    },
    stop(target) {
      if (target.adopted) return stopVm(target);
      const p = paths(target.vm);
      // A VM started with an agent channel is asked to power off through it first (no ACPI daemon needed).
      const record = readLaunchRecord(p.launch);
      const agent =
        record && !('unreadable' in record) && record.launch.agent ? { agentSocket: p.agent } : {};
      return stopVm({ ...target, ...agent }, p);
    },
    hmp: sendHmp,
    async waitReady(vm, ready, socket, onAttempt) {
      const pidfile = paths(vm).pidfile;
      return waitReady(ready, {
        agentSocket: paths(vm).agent,
        usernet: () => sendHmp(socket, 'info usernet', 5000),
        alive: () => checkPidfile(pidfile).kind === 'ours',
        ...(options.signal ? { signal: options.signal } : {}),
        ...(onAttempt ? { onAttempt: (result) => onAttempt(result.detail) } : {}),
      });
    },
    deleteSnapshotOffline(disk, tag) {
      return deleteSnapshot(disk, tag);
    },
    growDisk(disk, format, sizeBytes) {
      return growDisk(disk, format, sizeBytes);
    },
    recordSavedState(vm, saved) {
      const p = paths(vm);
      const identity = fileIdentity(saved.disk);
      if (!identity)
        throw new RuntimeDirError(`cannot record the saved state of ${vm}: ${saved.disk} is gone`);
      writeSavedState(p.savedState, {
        version: 1,
        vm,
        tag: saved.tag,
        savedAt: new Date().toISOString(),
        disk: { path: saved.disk, ...identity },
        ...(saved.launch ? { launch: saved.launch } : {}),
      });
    },
    forgetSavedState(vm) {
      removeRecord(paths(vm).savedState);
    },
    recordSnapshot(vm, tag, launch) {
      const { name: _name, loadvm: _loadvm, ...recorded } = launch;
      recordSnapshot(paths(vm).snapshots, { tag, savedAt: new Date().toISOString(), launch: recorded });
    },
    async syncClock(how) {
      if ('ssh' in how) return syncGuestClock(how.ssh);
      await setGuestTime(how.agent);
      return true;
    },
    async guestShares(agentSocket, action) {
      const argv = action === 'mount' ? ['mount', '-a', '-t', '9p'] : ['umount', '-a', '-t', '9p'];
      let stderr = '';
      const status = await withAgent(agentSocket, (agent) =>
        agentExec(agent, argv, {
          onStdout: () => {},
          onStderr: (chunk) => {
            stderr += chunk.toString('utf8');
          },
        }),
      );
      if (status !== 0)
        throw new VmStateError(
          `${argv.join(' ')} in the guest exited ${status}: ${stderr.trim() || 'no message'}`,
        );
    },
    rememberLiveForwards(vm, added, removed) {
      const p = paths(vm);
      const record = readLaunchRecord(p.launch);
      if (!record || 'unreadable' in record) return;
      const key = (f: HostForward) => formatHostfwd(f);
      const removedKeys = new Set(removed.map((f) => formatHostfwdRemoval(f)));
      const kept = record.liveForwards.filter((f) => !removedKeys.has(formatHostfwdRemoval(f)));
      const all = new Map([...kept, ...added].map((f) => [key(f), f]));
      writeLaunchRecord(p.launch, { ...record, liveForwards: [...all.values()] });
    },
  };
}
