/**
 * Preparing a fresh process: the host can run it, the disk (created, grown, opened in its recorded format),
 * where it boots from (a hibernated state, a snapshot, cold) and what happens once it runs (readiness, the
 * warm snapshot). Every reason a start cannot happen is a located problem, and then there is no start.
 */

import { statSync } from 'node:fs';
import { type DisplaySpec, forwardField } from '../manifest/types.js';
import { formatMemory, formatSize } from '../model/units.js';
import type { DiskState, ImageState, ObservedVm } from '../observe/types.js';
import { QEMU_SYSTEM } from '../qemu/argv.js';
import type { DiskCreation } from '../qemu/img.js';
import type { VmPlanning } from './context.js';
import { dataDiskSteps } from './data-disks.js';
import { display } from './describe.js';
import { fieldChanges } from './fields.js';
import { clockSync, guestSteps } from './guest.js';
import { hibernationSteps } from './hibernation.js';
import { checkDiskImage, diskFromImage } from './image.js';
import { launchSpec } from './launch.js';
import type { StartSteps } from './types.js';

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
export function prepareStart(ctx: VmPlanning, observed: ObservedVm): PreparedStart | undefined {
  if (!hostCanRun(ctx) || !portsFree(ctx) || !mountSourcesExist(ctx)) return undefined;
  const disk = observed.disk;
  const diskSteps = prepareDisk(ctx, disk, observed.image);
  if (!diskSteps) return undefined;
  const dataSteps = dataDiskSteps(ctx, observed.dataDisks);
  if (!dataSteps) return undefined;
  const boot = bootSource(ctx, observed, disk);
  if (!boot) return undefined;
  const { spec } = ctx;
  return {
    ...diskSteps,
    ...dataSteps,
    ...boot,
    ...guestSteps(ctx),
    ...(spec.disk ? { diskFormat: spec.disk.format } : {}),
    ...(spec.ready ? { ready: spec.ready } : {}),
    ...(spec.ssh?.access ? { sshAt: { host: spec.ssh.access.host, port: spec.ssh.access.port } } : {}),
  };
}

/** QEMU must be installed, and the host must have the memory the VM asks for (QEMU allocates it up front). */
function hostCanRun(ctx: VmPlanning): boolean {
  const { host } = ctx.observation;
  if (!host.qemuInstalled) {
    ctx.problem(
      `${QEMU_SYSTEM} is not installed, so no VM can start; install it with: sudo apt-get install -y --no-install-recommends qemu-system-x86`,
    );
    return false;
  }
  if (ctx.spec.memoryMiB * 2 ** 20 > host.memoryBytes) {
    ctx.problem(
      `is ${formatMemory(ctx.spec.memoryMiB)}, more than this host has (${formatSize(Math.floor(host.memoryBytes / 2 ** 20) * 2 ** 20)} of RAM and swap): QEMU could not allocate it`,
      'memory',
    );
    return false;
  }
  return true;
}

/** QEMU fails to start on a missing share folder: each is a problem at its mount, before anything starts. */
function mountSourcesExist(ctx: VmPlanning): boolean {
  let ok = true;
  for (const m of ctx.spec.mounts) {
    let why: string | undefined;
    try {
      if (!statSync(m.host).isDirectory()) why = 'is not a folder';
    } catch (error) {
      why = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : (error as Error).message;
    }
    if (why) {
      ctx.problem(
        `${display(ctx.manifest.dir, m.host)} ${why}; create it or fix the path`,
        'mounts',
        m.index,
        'host',
      );
      ok = false;
    }
  }
  return ok;
}

/** A start needs every host port of its forwards free: each taken one is a problem at its forward. */
function portsFree(ctx: VmPlanning): boolean {
  const conflicts = ctx.observation.portConflicts.filter((c) => c.vm === ctx.spec.name);
  for (const conflict of conflicts) {
    if (conflict.index === 'vnc') {
      const vnc = ctx.spec.display as Extract<DisplaySpec, { kind: 'vnc-tcp' }>;
      ctx.problem(
        `host port tcp ${vnc.address}:${vnc.port} (VNC) is in use by ${conflict.holder}`,
        'display',
        'vnc',
        'port',
      );
      continue;
    }
    const f = ctx.spec.forwards.find((x) => x.index === conflict.index)!;
    ctx.problem(
      `host port ${f.proto} ${f.hostAddress}:${f.hostPort} is in use by ${conflict.holder}`,
      ...forwardField(f),
    );
  }
  return conflicts.length === 0;
}

/** The disk steps: create a missing disk, grow a small one; refuse what cannot work or is not safe. */
function prepareDisk(
  ctx: VmPlanning,
  disk: DiskState | undefined,
  image: ImageState | undefined,
): StartSteps | undefined {
  const { spec, manifest } = ctx;
  if (!spec.disk || !disk) return {};
  const shown = display(manifest.dir, spec.disk.path);
  if (!disk.exists && spec.image) return diskFromImage(ctx, image);
  if (!disk.exists) {
    if (spec.disk.sizeBytes === undefined && !spec.disk.backing) {
      ctx.problem(`${shown} does not exist; set disk.size (or disk.backing) so qvm can create it`, 'disk');
      return undefined;
    }
    const createDisk: DiskCreation = {
      path: spec.disk.path,
      ...(spec.disk.sizeBytes !== undefined ? { sizeBytes: spec.disk.sizeBytes } : {}),
      ...(spec.disk.backing
        ? { backing: spec.disk.backing, backingFormat: spec.disk.backingFormat ?? 'qcow2' }
        : {}),
    };
    return { createDisk };
  }
  if (disk.error) {
    // An overlay whose image the cache no longer holds cannot be opened; the pinned digest gets it back.
    const hint =
      spec.image?.kind === 'url' && /backing/i.test(disk.error)
        ? '; its image is not in the cache any more: `qvm pull` fetches it again (the digest pins it)'
        : '';
    ctx.problem(`cannot use ${shown}: ${disk.error}${hint}`, 'disk');
    return undefined;
  }
  if (disk.known && disk.known.format !== spec.disk.format) {
    ctx.problem(
      `${shown} was ${disk.known.created ? 'created' : 'first opened'} by qvm as a ${disk.known.format} image, and the manifest now says ${spec.disk.format}; qvm never reopens a disk as another format (a guest can write any header into a raw disk). Convert it with qemu-img convert into a new file instead`,
      'disk',
    );
    return undefined;
  }
  const fromImage = spec.image ? checkDiskImage(ctx, disk, image) : {};
  if (!fromImage) return undefined;
  const resizeDisk = diskGrowth(ctx, disk);
  if (resizeDisk === null) return undefined;
  return { ...fromImage, ...(resizeDisk ? { resizeDisk } : {}) };
}

/** How the configuration differs from the one a snapshot was saved with, in plan words; undefined when it does not. */
function staleness(
  ctx: VmPlanning,
  observed: ObservedVm,
  disk: DiskState | undefined,
  tag: string,
): string | undefined {
  const record = observed.snapshotRecords?.[tag];
  if (!record) return undefined;
  const changes = fieldChanges(
    record.launch,
    launchSpec(ctx.spec, ctx.accel, ctx.spec.forwards, disk),
    ctx.manifest.dir,
  );
  return changes.length
    ? changes.map((f) => f.text ?? `${f.field} ${f.from} -> ${f.to}`).join(', ')
    : undefined;
}

/**
 * Where the start boots from: the hibernated state when qvm may resume it, the manifest's snapshot when the
 * disk has it, else cold (and, for a warm VM, save the snapshot once ready).
 */
function bootSource(
  ctx: VmPlanning,
  observed: ObservedVm,
  disk: DiskState | undefined,
): StartSteps | undefined {
  const { spec, manifest } = ctx;
  const snapshots = disk?.snapshots ?? [];
  const hibernation = spec.disk ? hibernationSteps(ctx, observed, disk) : {};
  if (!hibernation) return undefined;
  const warm = spec.snapshot !== undefined && spec.ready !== undefined;
  if (warm && ctx.options.refreshSnapshots) {
    // Drop the warm snapshot, cold boot, save anew. A saved state would resume the old image: it is dropped too.
    const { bootFrom: resume, ...rest } = hibernation;
    const drops = [
      ...(rest.dropSnapshots ?? []),
      ...(resume && spec.disk ? [{ disk: spec.disk.path, tag: resume.tag }] : []),
      ...(snapshots.includes(spec.snapshot!) && spec.disk
        ? [{ disk: spec.disk.path, tag: spec.snapshot! }]
        : []),
    ];
    return {
      ...rest,
      ...(resume ? { forgetSavedState: true } : {}),
      ...(drops.length ? { dropSnapshots: drops } : {}),
      saveSnapshot: spec.snapshot!,
    };
  }
  if (hibernation.bootFrom || spec.snapshot === undefined) return hibernation;
  if (snapshots.includes(spec.snapshot)) {
    const stale = staleness(ctx, observed, disk, spec.snapshot);
    if (!stale)
      return {
        ...hibernation,
        bootFrom: { tag: spec.snapshot, kind: 'snapshot' },
        // The guest's clock resumes at the time of the save: set it once the VM answers.
        ...clockSync(ctx),
      };
    // QEMU would load the snapshot into the new configuration and the guest would carry on with what it had
    // (an old seed, a different device set): never resume it. A warm one is made anew; any other is the user's.
    if (!warm) {
      ctx.problem(
        `snapshot "${spec.snapshot}" was saved by qvm while the VM ran with another configuration (${stale}); qvm does not load it into this one. Delete it (qvm snapshot delete ${spec.name} ${spec.snapshot} --force) or set the configuration back`,
        'snapshot',
      );
      return undefined;
    }
    return {
      ...hibernation,
      dropSnapshots: [...(hibernation.dropSnapshots ?? []), { disk: spec.disk!.path, tag: spec.snapshot }],
      staleSnapshot: { tag: spec.snapshot, why: stale },
      saveSnapshot: spec.snapshot,
    };
  }
  // First boot of a warm VM: boot cold, and save the snapshot once the VM is ready.
  if (warm) return { ...hibernation, saveSnapshot: spec.snapshot };
  ctx.problem(
    `snapshot "${spec.snapshot}" does not exist on ${display(manifest.dir, spec.disk!.path)}${snapshots.length ? ` (it has: ${snapshots.join(', ')})` : ''}`,
    'snapshot',
  );
  return undefined;
}
