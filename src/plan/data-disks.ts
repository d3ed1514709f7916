/**
 * The data disks of a VM (`disks:`): created when missing, grown when the manifest's size grows (while the VM
 * is stopped), never shrunk, never overwritten, and always opened in the format qvm first knew them by.
 */
import { formatSize } from '../model/units.js';
import type { DiskState } from '../observe/types.js';
import type { VmPlanning } from './context.js';
import { display } from './describe.js';
import type { StartSteps } from './types.js';

type DataDiskSteps = Pick<StartSteps, 'createDataDisks' | 'growDataDisks'>;

/** The steps the data disks need before a start, or undefined (with problems) when one cannot be used. */
export function dataDiskSteps(ctx: VmPlanning, observed: DiskState[] | undefined): DataDiskSteps | undefined {
  const { spec, manifest } = ctx;
  const create: NonNullable<StartSteps['createDataDisks']> = [];
  const grow: NonNullable<StartSteps['growDataDisks']> = [];
  let ok = true;
  spec.dataDisks.forEach((wanted, i) => {
    const disk = observed?.[i];
    const shown = display(manifest.dir, wanted.path);
    const fail = (message: string, ...field: (string | number)[]) => {
      ctx.problem(message, 'disks', wanted.index, ...field);
      ok = false;
    };
    if (!disk?.exists) {
      if (wanted.sizeBytes === undefined) {
        fail(`${shown} does not exist; set its size so qvm can create it`);
        return;
      }
      create.push({ path: wanted.path, sizeBytes: wanted.sizeBytes, format: wanted.format });
      return;
    }
    if (disk.error) {
      fail(`cannot use ${shown}: ${disk.error}`);
      return;
    }
    if (disk.known && disk.known.format !== wanted.format) {
      fail(
        `${shown} was ${disk.known.created ? 'created' : 'first opened'} by qvm as a ${disk.known.format} image, and the manifest now says ${wanted.format}; qvm never reopens a disk as another format`,
        'format',
      );
      return;
    }
    const growth = dataDiskGrowth(wanted.sizeBytes, disk);
    if (growth === 'shrink') {
      fail(
        `is ${formatSize(wanted.sizeBytes!)} but ${shown} is already ${formatSize(disk.virtualSizeBytes!)}; qvm never shrinks a disk (it would cut off data)`,
        'size',
      );
      return;
    }
    if (growth) grow.push({ path: wanted.path, format: wanted.format, ...growth });
  });
  if (!ok) return undefined;
  return {
    ...(create.length ? { createDataDisks: create } : {}),
    ...(grow.length ? { growDataDisks: grow } : {}),
  };
}

function dataDiskGrowth(
  wantBytes: number | undefined,
  disk: DiskState,
): { fromBytes: number; toBytes: number } | 'shrink' | undefined {
  if (wantBytes === undefined || disk.virtualSizeBytes === undefined) return undefined;
  if (wantBytes < disk.virtualSizeBytes) return 'shrink';
  return wantBytes > disk.virtualSizeBytes
    ? { fromBytes: disk.virtualSizeBytes, toBytes: wantBytes }
    : undefined;
}

/** Data disks of a running VM whose manifest size grew: a restart grows them. */
export function runningDataDiskGrowth(ctx: VmPlanning, observed: DiskState[] | undefined) {
  return ctx.spec.dataDisks.flatMap((wanted, i) => {
    const disk = observed?.[i];
    const growth = disk?.exists ? dataDiskGrowth(wanted.sizeBytes, disk) : undefined;
    return growth && growth !== 'shrink' ? [{ path: wanted.path, ...growth }] : [];
  });
}
