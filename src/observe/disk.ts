/**
 * Observing a VM's disk without ever letting its content decide how it is read: the format is the one the
 * manifest declares, a stopped disk is read with `qemu-img info -f FORMAT`, a running one through QEMU's
 * query-block. What qvm recorded about the file (created it, opened it as a format) is matched by inode.
 */
import { type Stats, statfsSync, statSync } from 'node:fs';
import { isQvmError } from '../errors.js';
import { lookupImage } from '../images/cache.js';
import { remoteSize } from '../images/download.js';
import { checkImageFile } from '../images/format.js';
import { imageDigest } from '../images/source.js';
import type { ImageSpec } from '../manifest/types.js';
import { imageInfo } from '../qemu/img.js';
import type { BlockDevice } from '../qemu/qmp.js';
import type { VmPaths } from '../runtime/paths.js';
import { type KnownDisk, readKnownDisks, readSavedState } from '../runtime/records.js';
import type { DiskState, ImageState, SavedStateObservation } from './types.js';

/** What kind of file a disk path names, in words, when it is not one a disk can be. */
function notADiskFile(stat: Stats): string | undefined {
  if (stat.isFile() || stat.isBlockDevice()) return undefined;
  if (stat.isDirectory()) return 'a folder';
  if (stat.isCharacterDevice()) return 'a character device';
  if (stat.isFIFO()) return 'a named pipe';
  if (stat.isSocket()) return 'a socket';
  return 'not a regular file';
}

function freeBytes(file: string): number | undefined {
  try {
    const fs = statfsSync(file);
    return fs.bavail * fs.bsize;
  } catch {
    return undefined;
  }
}

/** The disk's facts: from QEMU (`block`) while a VM runs, else from qemu-img, read as `format`. */
export async function observeDisk(
  file: string,
  format: string,
  paths: VmPaths | undefined,
  block?: BlockDevice,
): Promise<DiskState> {
  let stat: Stats;
  try {
    stat = statSync(file);
  } catch {
    return { path: file, format, exists: false };
  }
  const identity = { dev: stat.dev, ino: stat.ino };
  const base = { path: file, format, exists: true, identity, allocatedBytes: stat.blocks * 512 };
  const known = paths ? readKnownDisks(paths.disks).find((d) => sameFile(d, file, identity)) : undefined;
  const withKnown = { ...base, ...(known ? { known } : {}), ...optional('freeBytes', freeBytes(file)) };
  const kind = notADiskFile(stat);
  if (kind) return { ...withKnown, error: `${file} is ${kind}, not a disk image` };
  if (block?.inserted) {
    return {
      ...withKnown,
      ...optional('virtualSizeBytes', block.inserted.virtualSizeBytes),
      snapshots: block.inserted.snapshots,
      ...optional('backingFile', block.inserted.backingFile),
    };
  }
  try {
    const info = await imageInfo(file, format);
    return {
      ...withKnown,
      virtualSizeBytes: info.virtualSizeBytes,
      snapshots: info.snapshots,
      ...optional('backingFile', info.backingFile),
    };
  } catch (error) {
    if (!isQvmError(error)) throw error;
    const why = error.message.replace(/^reading .*? as \w+: /, '');
    const hint =
      format === 'qcow2' ? '; if it is a raw image, declare it: disk: { path: ..., format: raw }' : '';
    return { ...withKnown, error: `it is not a ${format} image (qemu-img: ${why})${hint}` };
  }
}

function sameFile(d: KnownDisk, file: string, identity: { dev: number; ino: number }): boolean {
  return d.path === file && d.dev === identity.dev && d.ino === identity.ino;
}

/** The hibernation record of a VM, if qvm wrote one. */
export function observeSavedState(paths: VmPaths): SavedStateObservation | undefined {
  const read = readSavedState(paths.savedState);
  if (read === undefined) return undefined;
  return 'unreadable' in read ? read : { record: read };
}

function optional<K extends string, V>(key: K, value: V | undefined): { [k in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [k in K]?: V };
}

/** What qvm knows of a VM's image: the cache's copy of a download (or its announced size), or a local file's format. */
export async function observeImage(image: ImageSpec, needed: boolean): Promise<ImageState> {
  if (image.kind === 'path') {
    if (!needed) return { kind: 'path' };
    try {
      return { kind: 'path', format: await checkImageFile(image.path, image.path) };
    } catch (error) {
      if (!isQvmError(error)) throw error;
      return { kind: 'path', error: error.message };
    }
  }
  const cached = lookupImage(imageDigest(image));
  if (cached)
    return { kind: 'url', cached: { path: cached.path, format: cached.format, sizeBytes: cached.sizeBytes } };
  const size = needed ? await remoteSize(image.url) : undefined;
  return { kind: 'url', ...optional('remoteSizeBytes', size) };
}
