/**
 * qemu-img: reading disk facts and creating disks. Creating never overwrites: the image is written under a
 * temporary name in the same folder and then hard-linked to its final name, which fails if anything exists
 * there, so a concurrent creator or an existing file always wins and a half-written image never carries the
 * final name.
 */
import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { DiskExistsError, QemuProcessError } from '../errors.js';
import { formatSize } from '../model/units.js';
import { isAlive } from '../runtime/process.js';

const QEMU_IMG = 'qemu-img';
const QEMU_IMG_TIMEOUT_MS = 60_000;

export interface ImageInfo {
  format: string;
  virtualSizeBytes: number;
  /** Snapshot tags stored in the image (qcow2 internal snapshots). */
  snapshots: string[];
  backingFile?: string;
}

async function run(args: string[], what: string): Promise<string> {
  const result = await execa(QEMU_IMG, args, {
    reject: false,
    timeout: QEMU_IMG_TIMEOUT_MS,
    stdin: 'ignore',
  });
  if (result.failed) {
    const stderr = String(result.stderr).trim();
    const message = result.timedOut
      ? `qemu-img did not finish ${what} within ${QEMU_IMG_TIMEOUT_MS / 1000}s`
      : stderr.replace(/^qemu-img: /gm, '') ||
        (result.cause as Error | undefined)?.message ||
        `exit code ${result.exitCode}`;
    throw new QemuProcessError(`${what}: ${message}`, [QEMU_IMG, ...args], stderr);
  }
  return String(result.stdout);
}

/**
 * Facts about an image. `-U` (force-share) lets this read an image a running QEMU holds locked; it only reads
 * metadata.
 */
export async function imageInfo(file: string): Promise<ImageInfo> {
  const text = await run(['info', '-U', '--output=json', file], `reading ${file}`);
  const info = JSON.parse(text) as {
    format: string;
    'virtual-size': number;
    snapshots?: { name: string }[];
    'backing-filename'?: string;
    'full-backing-filename'?: string;
  };
  return {
    format: info.format,
    virtualSizeBytes: info['virtual-size'],
    snapshots: (info.snapshots ?? []).map((s) => s.name),
    ...(info['full-backing-filename'] ? { backingFile: info['full-backing-filename'] } : {}),
  };
}

export interface DiskCreation {
  path: string;
  sizeBytes?: number;
  backing?: string;
}

/** Creates a qcow2 disk (preallocation off), or an overlay of `backing`. Never replaces an existing file. */
export async function createDisk(disk: DiskCreation): Promise<void> {
  const dir = path.dirname(disk.path);
  mkdirSync(dir, { recursive: true });
  removeAbandonedTemporaries(dir);
  const temporary = path.join(
    dir,
    `.${path.basename(disk.path)}.qvm-${process.pid}-${randomBytes(4).toString('hex')}`,
  );
  const args = ['create', '-q', '-f', 'qcow2', '-o', 'preallocation=off'];
  if (disk.backing) {
    const backing = await imageInfo(disk.backing);
    args.push('-b', disk.backing, '-F', backing.format);
  }
  args.push(temporary);
  if (disk.sizeBytes !== undefined) args.push(String(disk.sizeBytes));
  const what = `creating ${disk.path}${disk.sizeBytes ? ` (${formatSize(disk.sizeBytes)})` : ''}`;
  try {
    await run(args, what);
    try {
      linkSync(temporary, disk.path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new DiskExistsError(
          `${what}: a file appeared there meanwhile; it was left untouched`,
          args,
          '',
        );
      }
      throw new QemuProcessError(`${what}: ${(error as Error).message}`, args, '', { cause: error });
    }
  } finally {
    try {
      unlinkSync(temporary);
    } catch {
      // never created, or already gone
    }
  }
}

/**
 * A qvm killed while qemu-img was writing leaves `.NAME.qvm-PID-RANDOM` behind (never the final name). Those
 * whose creator is gone are removed; they were never a disk anyone used.
 */
function removeAbandonedTemporaries(dir: string): void {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return;
  }
  for (const entry of entries) {
    const m = /^\..+\.qvm-(\d+)-[0-9a-f]{8}$/.exec(entry);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || isAlive(pid)) continue;
    try {
      unlinkSync(path.join(dir, entry));
    } catch {
      // someone else cleaned it
    }
  }
}

/** Identity of a file, so a disk qvm created is recognised later and a different file at that path is not. */
export function fileIdentity(file: string): { dev: number; ino: number } | undefined {
  try {
    const stat = statSync(file);
    return { dev: stat.dev, ino: stat.ino };
  } catch {
    return undefined;
  }
}

/** Deletes an internal snapshot from the image of a stopped VM. */
export async function deleteSnapshot(file: string, tag: string): Promise<void> {
  await run(['snapshot', '-d', tag, file], `deleting snapshot ${tag} from ${file}`);
}

/** Grows a disk. Without --shrink, qemu-img itself refuses to make an image smaller. */
export async function growDisk(file: string, sizeBytes: number): Promise<void> {
  await run(['resize', '-q', file, String(sizeBytes)], `growing ${file} to ${formatSize(sizeBytes)}`);
}
