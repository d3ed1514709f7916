/**
 * The side effects apply needs, behind one narrow interface: the executor is tested with a recording fake,
 * and the real implementation (here) is tested against real QEMU.
 */
import type { ReadySpec } from '../manifest/types.js';
import { formatHostfwd, formatHostfwdRemoval, type HostForward } from '../model/forward.js';
import type { Launch } from '../plan/types.js';
import { QEMU_SYSTEM } from '../qemu/argv.js';
import { createDisk, type DiskCreation, deleteSnapshot, fileIdentity, growDisk } from '../qemu/img.js';
import { connectMonitor } from '../qemu/monitor.js';
import { waitReady } from '../ready/probe.js';
import { type Namespace, type VmPaths, vmPaths } from '../runtime/paths.js';
import { checkPidfile } from '../runtime/process.js';
import { readLaunchRecord, recordCreatedDisk, writeLaunchRecord } from '../runtime/records.js';
import { launchQemu, prepareRuntimeDirs, type StopOutcome, type StopTarget, stopVm } from './supervisor.js';

export interface Effects {
  createDisk(vm: string, disk: DiskCreation): Promise<void>;
  /** Starts the VM's QEMU as `launch` says and records how it was started; returns its pid. */
  launch(vm: string, launch: Launch, bootedFrom: string | undefined): Promise<number>;
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
  ): Promise<{ elapsedMs: number }>;
  /** Deletes a snapshot from the disk of a stopped VM (qemu-img). */
  deleteSnapshotOffline(disk: string, tag: string): Promise<void>;
  /** Grows the disk of a stopped VM (qemu-img resize). */
  growDisk(disk: string, sizeBytes: number): Promise<void>;
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

/** The effects against real QEMU processes, files and sockets of a namespace. */
export function realEffects(namespace: Namespace, options: { signal?: AbortSignal } = {}): Effects {
  const paths = (vm: string): VmPaths => vmPaths(namespace, vm);
  return {
    async createDisk(vm, disk) {
      const p = paths(vm);
      prepareRuntimeDirs(namespace, p);
      await createDisk(disk);
      const identity = fileIdentity(disk.path);
      if (identity)
        recordCreatedDisk(p.createdDisks, {
          path: disk.path,
          ...identity,
          createdAt: new Date().toISOString(),
        });
    },
    async launch(vm, launch, bootedFrom) {
      const p = paths(vm);
      prepareRuntimeDirs(namespace, p);
      const pid = await launchQemu(launch.args, p);
      const { name: _name, loadvm: _loadvm, ...recorded } = launch.spec;
      writeLaunchRecord(p.launch, {
        version: 2,
        vm,
        manifest: launch.source,
        argv: [QEMU_SYSTEM, ...launch.args],
        launch: recorded,
        stopTimeoutMs: launch.stopTimeoutMs,
        startedAt: new Date().toISOString(),
        ...(bootedFrom ? { bootedFrom } : {}),
        liveForwards: [],
      });
      return pid;
    },
    stop(target) {
      return stopVm(target, target.adopted ? undefined : paths(target.vm));
    },
    hmp: sendHmp,
    async waitReady(vm, ready, socket, onAttempt) {
      const pidfile = paths(vm).pidfile;
      return waitReady(ready, {
        usernet: () => sendHmp(socket, 'info usernet', 5000),
        alive: () => checkPidfile(pidfile).kind === 'ours',
        ...(options.signal ? { signal: options.signal } : {}),
        ...(onAttempt ? { onAttempt: (result) => onAttempt(result.detail) } : {}),
      });
    },
    deleteSnapshotOffline(disk, tag) {
      return deleteSnapshot(disk, tag);
    },
    growDisk(disk, sizeBytes) {
      return growDisk(disk, sizeBytes);
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
