/**
 * The planner: a pure function of the desired state (the manifest), the observed state and the options.
 * No I/O, no clock; VMs in manifest order, orphans after them by name.
 */
import path from 'node:path';
import type { ForwardSpec, Manifest, ReadySpec, VmSpec } from '../manifest/types.js';
import { type HostForward, sameForward } from '../model/forward.js';
import { formatMemory, formatSize } from '../model/units.js';
import type { Observation, ObservedVm, RunningVm } from '../observe/types.js';
import { buildQemuArgs, NETDEV_ID, restartRelevantArgs } from '../qemu/argv.js';
import type { DiskCreation } from '../qemu/img.js';
import { type Namespace, vmPaths } from '../runtime/paths.js';
import {
  type BootFrom,
  type FieldChange,
  type Plan,
  type PlanNote,
  type PlanProblem,
  SAVED_STATE_TAG,
  type StartReason,
  type VmChange,
} from './types.js';

export interface PlanOptions {
  namespace: Namespace;
  /** Stop running VMs of this namespace that the manifest no longer lists. */
  prune: boolean;
  /**
   * Honour each VM's `restart:` policy for VMs that went down by themselves (watch does; apply, an explicit
   * request to make the VMs match, does not).
   */
  restartPolicy?: boolean;
  /** Recreate the warm snapshot of VMs that have `snapshot:` and `ready:` (`apply --refresh-snapshot`). */
  refreshSnapshots?: boolean;
}

/** Runstates a VM cannot leave by itself; the only way forward is a fresh process. */
const STUCK_RUNSTATES = new Set(['restore-vm', 'internal-error', 'guest-panicked', 'io-error', 'colo']);

export function plan(manifest: Manifest, observation: Observation, options: PlanOptions): Plan {
  const result: Plan = { baseDir: manifest.dir, changes: [], problems: [], notes: [], unchanged: [] };
  for (const spec of manifest.vms) {
    const observed = observation.vms.get(spec.name);
    if (!observed) throw new Error(`bug: ${spec.name} was not observed`);
    const outcome = spec.monitor
      ? planAdopted(spec, observed, manifest, observation)
      : planManaged(spec, observed, manifest, observation, options);
    result.changes.push(...outcome.changes);
    result.problems.push(...outcome.problems);
    result.notes.push(...outcome.notes);
    if (outcome.changes.length === 0 && outcome.problems.length === 0) result.unchanged.push(spec.name);
  }
  for (const orphan of [...observation.orphans].sort((a, b) => a.name.localeCompare(b.name))) {
    if (!options.prune) {
      result.notes.push({
        vm: orphan.name,
        message: 'is running but not in the manifest; `apply --prune` stops it',
      });
      continue;
    }
    if (orphan.state === 'unknown') {
      result.problems.push({
        vm: orphan.name,
        message: `is not in the manifest, but its monitor does not answer: ${orphan.error}`,
      });
      continue;
    }
    if (orphan.state === 'running') {
      const paths = vmPaths(options.namespace, orphan.name);
      result.changes.push({
        action: 'stop',
        vm: orphan.name,
        reason: 'not-in-manifest',
        adopted: false,
        ...(orphan.pid !== undefined ? { pid: orphan.pid } : {}),
        socket: paths.qmp,
        stopTimeoutMs: orphan.launch?.spec.stopTimeoutMs ?? 30_000,
        alreadyPoweredOff: orphan.runstate === 'shutdown',
      });
    }
  }
  return result;
}

interface Outcome {
  changes: VmChange[];
  problems: PlanProblem[];
  notes: PlanNote[];
}

function locate(manifest: Manifest, vm: string, ...field: (string | number)[]): PlanProblem['location'] {
  const fieldPath = ['vms', vm, ...field];
  const at = manifest.locate(fieldPath);
  const file = manifest.vms.find((v) => v.name === vm)?.source ?? manifest.file;
  return { file, ...at, path: fieldPath.join('.') };
}

function planManaged(
  spec: VmSpec,
  observed: ObservedVm,
  manifest: Manifest,
  observation: Observation,
  options: PlanOptions,
): Outcome {
  const out: Outcome = { changes: [], problems: [], notes: [] };
  const paths = vmPaths(options.namespace, spec.name);
  const accel = spec.accel === 'auto' ? (observation.host.kvmUsable ? 'kvm' : 'tcg') : spec.accel;
  const problem = (message: string, ...field: (string | number)[]) =>
    out.problems.push({
      vm: spec.name,
      message,
      ...(field.length ? { location: locate(manifest, spec.name, ...field) } : {}),
    });

  if (observed.state === 'unknown') {
    problem(
      `does not answer on its monitor${observed.pid ? ` (pid ${observed.pid})` : ''}: ${observed.error}. Left alone: qvm never starts a second QEMU on the same disk`,
    );
    return out;
  }

  /** What a fresh process needs: a disk (maybe created) and where to boot from. Undefined when impossible. */
  /**
   * A manifest size above the disk's is a growth (done while stopped); below it is refused, since shrinking
   * loses whatever lies past the new end. Null when refused.
   */
  const diskGrowth = (): { path: string; fromBytes: number; toBytes: number } | undefined | null => {
    const disk = observed.disk;
    const want = spec.disk?.sizeBytes;
    if (!spec.disk || want === undefined || !disk?.exists || disk.virtualSizeBytes === undefined)
      return undefined;
    if (want < disk.virtualSizeBytes) {
      problem(
        `is ${formatSize(want)} but ${display(manifest, spec.disk.path)} is already ${formatSize(disk.virtualSizeBytes)}; qvm never shrinks a disk (it would cut off data). Set size to ${formatSize(disk.virtualSizeBytes)} or more`,
        'disk',
        'size',
      );
      return null;
    }
    return want > disk.virtualSizeBytes
      ? { path: spec.disk.path, fromBytes: disk.virtualSizeBytes, toBytes: want }
      : undefined;
  };
  const warm = spec.snapshot !== undefined && spec.ready !== undefined;
  const refresh = warm && options.refreshSnapshots === true;
  const prepareStart = ():
    | {
        createDisk?: DiskCreation;
        bootFrom?: BootFrom;
        diskFormat?: string;
        ready?: ReadySpec;
        saveSnapshot?: string;
        dropSnapshot?: string;
      }
    | undefined => {
    const conflicts = observation.portConflicts.filter((c) => c.vm === spec.name);
    for (const conflict of conflicts) {
      const f = spec.forwards.find((x) => x.index === conflict.index)!;
      problem(
        `host port ${f.proto} ${f.hostAddress}:${f.hostPort} is in use by ${conflict.holder}`,
        'forwards',
        conflict.index,
      );
    }
    if (conflicts.length > 0) return undefined;
    const disk = observed.disk;
    let createDisk: DiskCreation | undefined;
    if (spec.disk && disk && !disk.exists) {
      if (spec.disk.sizeBytes === undefined && !spec.disk.backing) {
        problem(
          `${display(manifest, spec.disk.path)} does not exist; set disk.size (or disk.backing) so qvm can create it`,
          'disk',
        );
        return undefined;
      }
      createDisk = { path: spec.disk.path, ...pick(spec.disk, 'sizeBytes', 'backing') };
    }
    if (spec.disk && disk?.error) {
      problem(`cannot read ${display(manifest, spec.disk.path)}: ${disk.error}`, 'disk');
      return undefined;
    }
    if (
      spec.disk &&
      disk?.exists &&
      disk.format !== 'qcow2' &&
      (spec.snapshot !== undefined || spec.state === 'saved')
    ) {
      const shown = display(manifest, spec.disk.path);
      problem(
        `${shown} is a ${disk.format} image, and snapshots (snapshot:, state: saved) need every writable disk to be qcow2. Convert it: qemu-img convert -O qcow2 ${shown} ${shown.replace(/\.[^./]*$/, '')}.qcow2, then point disk at the new file`,
        'disk',
      );
      return undefined;
    }
    const resizeDisk = diskGrowth();
    if (resizeDisk === null) return undefined;
    const snapshots = disk?.snapshots ?? [];
    let bootFrom: BootFrom | undefined;
    let saveSnapshot: string | undefined;
    let dropSnapshot: string | undefined;
    if (refresh) {
      // Drop the warm snapshot (and any hibernated state, which would resume the old image), cold boot, save anew.
      dropSnapshot = snapshots.includes(spec.snapshot!) ? spec.snapshot! : undefined;
      saveSnapshot = spec.snapshot!;
    } else if (snapshots.includes(SAVED_STATE_TAG)) {
      bootFrom = { tag: SAVED_STATE_TAG, kind: 'saved-state' };
    } else if (spec.snapshot !== undefined) {
      if (!snapshots.includes(spec.snapshot) && warm) {
        // First boot of a warm VM: boot cold, and save the snapshot once the VM is ready.
        saveSnapshot = spec.snapshot;
      } else if (!snapshots.includes(spec.snapshot)) {
        problem(
          `snapshot "${spec.snapshot}" does not exist on ${display(manifest, spec.disk!.path)}${snapshots.length ? ` (it has: ${snapshots.join(', ')})` : ''}`,
          'snapshot',
        );
        return undefined;
      } else {
        bootFrom = { tag: spec.snapshot, kind: 'snapshot' };
      }
    }
    return {
      ...(createDisk ? { createDisk } : {}),
      ...(resizeDisk ? { resizeDisk } : {}),
      ...(bootFrom ? { bootFrom } : {}),
      ...(spec.disk ? { diskFormat: disk?.format ?? 'qcow2' } : {}),
      ...(spec.ready ? { ready: spec.ready } : {}),
      ...(saveSnapshot ? { saveSnapshot } : {}),
      ...(dropSnapshot ? { dropSnapshot } : {}),
    };
  };
  const argsFor = (prepared: { bootFrom?: BootFrom; diskFormat?: string }, forwards: HostForward[]) =>
    buildQemuArgs(spec, paths, {
      accel,
      forwards,
      ...(prepared.bootFrom ? { loadvm: prepared.bootFrom.tag } : {}),
      ...(prepared.diskFormat ? { diskFormat: prepared.diskFormat } : {}),
    });

  /** A start of a fresh process, when prepareStart allows one. */
  const pushStart = (reason: StartReason, extra: { detail?: string; replacesPid?: number }) => {
    const prepared = prepareStart();
    if (!prepared) return;
    out.changes.push({
      action: 'start',
      vm: spec.name,
      reason: prepared.bootFrom?.kind === 'saved-state' ? 'resume' : reason,
      ...extra,
      ...prepared,
      args: argsFor(prepared, spec.forwards),
      socket: paths.qmp,
    });
  };

  if (observed.state === 'stopped') {
    if (spec.state !== 'running') return out;
    if (options.restartPolicy && observed.stale && spec.restart === 'never') {
      out.notes.push({ vm: spec.name, message: 'died (its QEMU exited); restart: never leaves it down' });
      return out;
    }
    pushStart(observed.stale ? 'exited' : 'new', observed.stale ? { detail: observed.stale } : {});
    return out;
  }

  // Running (a process answers on qvm's monitor socket).
  const running = observed;
  if (spec.state === 'stopped' || (spec.state === 'saved' && running.runstate === 'shutdown')) {
    out.changes.push(stopChange(spec, running, paths.qmp));
    return out;
  }
  if (spec.state === 'saved') {
    out.changes.push({
      action: 'save',
      vm: spec.name,
      pid: running.pid!,
      socket: paths.qmp,
      tag: SAVED_STATE_TAG,
    });
    return out;
  }
  if (running.runstate === 'shutdown') {
    if (options.restartPolicy && spec.restart !== 'always') {
      out.notes.push({
        vm: spec.name,
        message: `was powered off by its guest; restart: ${spec.restart} leaves it down (\`qvm apply\` starts it)`,
      });
      return out;
    }
    pushStart('guest-powered-off', { replacesPid: running.pid! });
    return out;
  }

  const runningArgs = (running.argv ?? []).slice(1);
  const wanted = argsFor({ ...(spec.disk ? { diskFormat: running.disk?.format ?? 'qcow2' } : {}) }, []);
  const argsDiffer = !sameArgs(restartRelevantArgs(runningArgs), restartRelevantArgs(wanted));
  const stuck = STUCK_RUNSTATES.has(running.runstate) ? running.runstate : undefined;
  const growth = diskGrowth();
  if (growth === null) return out;
  if (argsDiffer || stuck || refresh || growth) {
    const prepared = prepareStart();
    if (!prepared) return out;
    const live = forwardUpdate(
      spec,
      running,
      paths.qmp,
      NETDEV_ID,
      withoutConflicts(spec, observation, () => {}),
    );
    out.changes.push({
      action: 'restart',
      vm: spec.name,
      pid: running.pid!,
      fields: [
        ...(running.launch
          ? fieldChanges(running.launch.spec, running.launch.accel ?? '?', spec, accel, manifest)
          : []),
        ...(growth
          ? [{ field: 'disk size', from: formatSize(growth.fromBytes), to: formatSize(growth.toBytes) }]
          : []),
      ],
      ...(stuck ? { stuckIn: stuck } : {}),
      ...(refresh ? { refreshSnapshot: true } : {}),
      argsBefore: runningArgs,
      argsAfter: argsFor(prepared, spec.forwards),
      stopTimeoutMs: spec.stopTimeoutMs,
      ...prepared,
      socket: paths.qmp,
      ...(live?.action === 'update' ? { liveForwards: live } : {}),
    });
    return out;
  }

  const update = forwardUpdate(
    spec,
    running,
    paths.qmp,
    NETDEV_ID,
    withoutConflicts(spec, observation, problem),
  );
  if (update) out.changes.push(update);
  return out;
}

/**
 * The VM's forwards minus those whose host port something else holds: each of those is a located problem,
 * and the others are still applied.
 */
function withoutConflicts(
  spec: VmSpec,
  observation: Observation,
  problem: (message: string, ...field: (string | number)[]) => void,
): ForwardSpec[] {
  const taken = new Map(
    observation.portConflicts.filter((c) => c.vm === spec.name).map((c) => [c.index, c.holder]),
  );
  return spec.forwards.filter((f) => {
    const holder = taken.get(f.index);
    if (holder === undefined) return true;
    problem(
      `host port ${f.proto} ${f.hostAddress}:${f.hostPort} is in use by ${holder}`,
      'forwards',
      f.index,
    );
    return false;
  });
}

function planAdopted(
  spec: VmSpec,
  observed: ObservedVm,
  manifest: Manifest,
  observation: Observation,
): Outcome {
  const out: Outcome = { changes: [], problems: [], notes: [] };
  const socket = spec.monitor!;
  const ignored = spec.adoptedIgnores ?? [];
  if (ignored.length > 0) {
    out.notes.push({
      vm: spec.name,
      message: `${ignored.join(', ')} not applied: this VM was started outside qvm, which cannot restart it`,
    });
  }
  if (observed.state === 'unknown') {
    out.problems.push({ vm: spec.name, message: `does not answer on ${socket}: ${observed.error}` });
    return out;
  }
  if (observed.state === 'stopped') {
    if (spec.state === 'running') {
      out.problems.push({
        vm: spec.name,
        message: `is not running (no QEMU answers on ${socket}); qvm does not start a VM it did not start`,
        location: locate(manifest, spec.name, 'monitor'),
      });
    }
    return out;
  }
  if (spec.state === 'stopped') {
    out.changes.push(stopChange(spec, observed, socket));
    return out;
  }
  const netdev = observed.forwards[0]?.netdev ?? '';
  const problem = (message: string, ...field: (string | number)[]) =>
    out.problems.push({
      vm: spec.name,
      message,
      ...(field.length ? { location: locate(manifest, spec.name, ...field) } : {}),
    });
  const update = forwardUpdate(spec, observed, socket, netdev, withoutConflicts(spec, observation, problem));
  if (update) out.changes.push(update);
  return out;
}

function stopChange(spec: VmSpec, running: RunningVm, socket: string): VmChange {
  return {
    action: 'stop',
    vm: spec.name,
    reason: 'state-stopped',
    adopted: running.adopted,
    ...(running.pid !== undefined ? { pid: running.pid } : {}),
    socket,
    stopTimeoutMs: spec.stopTimeoutMs,
    alreadyPoweredOff: running.runstate === 'shutdown',
  };
}

function forwardUpdate(
  spec: VmSpec,
  running: RunningVm,
  socket: string,
  netdev: string,
  wanted: ForwardSpec[],
): VmChange | undefined {
  const known = [...(running.launch?.spec.forwards ?? []), ...(running.launch?.liveForwards ?? [])];
  const add = wanted
    .filter((want) => !running.forwards.some((have) => sameForward(have, want)))
    .map(({ index: _index, ...forward }) => forward);
  const remove = running.forwards
    // A forward whose port conflicts is still the manifest's: do not remove one that exists.
    .filter((have) => !spec.forwards.some((want) => sameForward(have, want)))
    .map(({ netdev: _netdev, ...forward }) => ({
      ...forward,
      drift: !running.adopted && !known.some((k) => sameForward(k, forward)),
    }));
  const resume = running.runstate === 'paused';
  if (add.length === 0 && remove.length === 0 && !resume) return undefined;
  return { action: 'update', vm: spec.name, adopted: running.adopted, socket, netdev, add, remove, resume };
}

/** Restart-class fields that differ between the spec a process was started with and the manifest. */
export function fieldChanges(
  before: VmSpec,
  beforeAccel: string,
  after: VmSpec,
  afterAccel: string,
  manifest: Manifest,
): FieldChange[] {
  const show = (p: string | undefined) => (p === undefined ? '(none)' : display(manifest, p));
  const changes: FieldChange[] = [];
  const add = (field: string, from: string, to: string) => {
    if (from !== to) changes.push({ field, from, to });
  };
  add('memory', formatMemory(before.memoryMiB), formatMemory(after.memoryMiB));
  add('cpus', String(before.cpus), String(after.cpus));
  add('disk', show(before.disk?.path), show(after.disk?.path));
  add('cdrom', show(before.cdrom), show(after.cdrom));
  add('kernel', show(before.kernel), show(after.kernel));
  add('initrd', show(before.initrd), show(after.initrd));
  add('append', JSON.stringify(before.append ?? ''), JSON.stringify(after.append ?? ''));
  add('nic', before.nic, after.nic);
  const accel = (spec: VmSpec, resolved: string) =>
    spec.accel === 'auto' ? `auto (${resolved})` : spec.accel;
  add('accel', accel(before, beforeAccel), accel(after, afterAccel));
  add('args', JSON.stringify(before.args), JSON.stringify(after.args));
  return changes;
}

/** A path as the user wrote it: relative to the manifest's folder when inside it. */
export function display(manifest: { dir: string }, file: string): string {
  const relative = path.relative(manifest.dir, file);
  return relative.startsWith('..') || path.isAbsolute(relative) ? file : relative;
}

function sameArgs(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function pick<T extends object, K extends keyof T>(object: T, ...keys: K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const key of keys) if (object[key] !== undefined) out[key] = object[key];
  return out;
}
