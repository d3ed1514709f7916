/**
 * Preparing a fresh process: the disk (created, grown, right format for snapshots), where it boots from
 * (a snapshot, a hibernated state, cold) and what happens once it runs (readiness, the warm snapshot).
 * Every reason a start cannot happen is a located problem, and then there is no start.
 */
import { SAVED_STATE_TAG } from '../model/names.js';
import { formatSize } from '../model/units.js';
import type { DiskState } from '../observe/types.js';
import type { DiskCreation } from '../qemu/img.js';
import type { VmPlanning } from './context.js';
import { display } from './describe.js';
import type { BootFrom, StartSteps } from './types.js';

/** A start's steps, and the disk's format for the launch. */
export interface PreparedStart extends StartSteps {
  diskFormat?: string;
}

/**
 * A manifest size above the disk's is a growth (done while stopped); below it is refused, since shrinking
 * loses whatever lies past the new end. Null when refused (a problem was reported), undefined when no growth.
 */
export function diskGrowth(ctx: VmPlanning, disk: DiskState | undefined): StartSteps['resizeDisk'] | null {
  const { spec, manifest } = ctx;
  const want = spec.disk?.sizeBytes;
  if (!spec.disk || want === undefined || !disk?.exists || disk.virtualSizeBytes === undefined)
    return undefined;
  if (want < disk.virtualSizeBytes) {
    ctx.problem(
      `is ${formatSize(want)} but ${display(manifest.dir, spec.disk.path)} is already ${formatSize(disk.virtualSizeBytes)}; qvm never shrinks a disk (it would cut off data). Set size to ${formatSize(disk.virtualSizeBytes)} or more`,
      'disk',
      'size',
    );
    return null;
  }
  return want > disk.virtualSizeBytes
    ? { path: spec.disk.path, fromBytes: disk.virtualSizeBytes, toBytes: want }
    : undefined;
}

/** Everything a fresh process needs, or undefined (with problems reported) when it cannot start. */
export function prepareStart(ctx: VmPlanning, disk: DiskState | undefined): PreparedStart | undefined {
  if (!portsFree(ctx)) return undefined;
  const diskSteps = prepareDisk(ctx, disk);
  if (!diskSteps) return undefined;
  const boot = bootSource(ctx, disk?.snapshots ?? []);
  if (!boot) return undefined;
  const { spec } = ctx;
  return {
    ...diskSteps,
    ...boot,
    ...(spec.disk ? { diskFormat: disk?.format ?? 'qcow2' } : {}),
    ...(spec.ready ? { ready: spec.ready } : {}),
  };
}

/** A start needs every host port of its forwards free: each taken one is a problem at its forward. */
function portsFree(ctx: VmPlanning): boolean {
  const conflicts = ctx.observation.portConflicts.filter((c) => c.vm === ctx.spec.name);
  for (const conflict of conflicts) {
    const f = ctx.spec.forwards.find((x) => x.index === conflict.index)!;
    ctx.problem(
      `host port ${f.proto} ${f.hostAddress}:${f.hostPort} is in use by ${conflict.holder}`,
      'forwards',
      conflict.index,
    );
  }
  return conflicts.length === 0;
}

/** The disk steps: create a missing disk, grow a small one; refuse what cannot work. */
function prepareDisk(ctx: VmPlanning, disk: DiskState | undefined): StartSteps | undefined {
  const { spec, manifest } = ctx;
  if (!spec.disk || !disk) return {};
  const shown = display(manifest.dir, spec.disk.path);
  let createDisk: DiskCreation | undefined;
  if (!disk.exists) {
    if (spec.disk.sizeBytes === undefined && !spec.disk.backing) {
      ctx.problem(`${shown} does not exist; set disk.size (or disk.backing) so qvm can create it`, 'disk');
      return undefined;
    }
    createDisk = {
      path: spec.disk.path,
      ...(spec.disk.sizeBytes !== undefined ? { sizeBytes: spec.disk.sizeBytes } : {}),
      ...(spec.disk.backing ? { backing: spec.disk.backing } : {}),
    };
  }
  if (disk.error) {
    ctx.problem(`cannot read ${shown}: ${disk.error}`, 'disk');
    return undefined;
  }
  if (disk.exists && disk.format !== 'qcow2' && (spec.snapshot !== undefined || spec.state === 'saved')) {
    ctx.problem(
      `${shown} is a ${disk.format} image, and snapshots (snapshot:, state: saved) need every writable disk to be qcow2. Convert it: qemu-img convert -O qcow2 ${shown} ${shown.replace(/\.[^./]*$/, '')}.qcow2, then point disk at the new file`,
      'disk',
    );
    return undefined;
  }
  const resizeDisk = diskGrowth(ctx, disk);
  if (resizeDisk === null) return undefined;
  return { ...(createDisk ? { createDisk } : {}), ...(resizeDisk ? { resizeDisk } : {}) };
}

/**
 * Where the start boots from: the hibernated state when there is one, the manifest's snapshot when the disk
 * has it, else cold (and, for a warm VM, save the snapshot once ready).
 */
function bootSource(ctx: VmPlanning, snapshots: string[]): StartSteps | undefined {
  const { spec, manifest } = ctx;
  const warm = spec.snapshot !== undefined && spec.ready !== undefined;
  if (warm && ctx.options.refreshSnapshots) {
    // Drop the warm snapshot (and any hibernated state, which would resume the old image), cold boot, save anew.
    return {
      ...(snapshots.includes(spec.snapshot!) && spec.disk
        ? { dropSnapshot: { disk: spec.disk.path, tag: spec.snapshot! } }
        : {}),
      saveSnapshot: spec.snapshot!,
    };
  }
  if (snapshots.includes(SAVED_STATE_TAG)) {
    const bootFrom: BootFrom = { tag: SAVED_STATE_TAG, kind: 'saved-state' };
    return { bootFrom };
  }
  if (spec.snapshot === undefined) return {};
  if (snapshots.includes(spec.snapshot)) return { bootFrom: { tag: spec.snapshot, kind: 'snapshot' } };
  // First boot of a warm VM: boot cold, and save the snapshot once the VM is ready.
  if (warm) return { saveSnapshot: spec.snapshot };
  ctx.problem(
    `snapshot "${spec.snapshot}" does not exist on ${display(manifest.dir, spec.disk!.path)}${snapshots.length ? ` (it has: ${snapshots.join(', ')})` : ''}`,
    'snapshot',
  );
  return undefined;
}
