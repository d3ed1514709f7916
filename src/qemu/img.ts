/**
 * qemu-img: reading disk facts and creating disks. Every call names the image's format with -f: qemu-img never
 * guesses it from the content, which a guest controls (a raw disk whose guest wrote a qcow2 header naming a
 * host file as its backing file would otherwise be read as that qcow2, and hand the guest the host file).
 *
 * Creating never overwrites: the image is written under a temporary name in the same folder and then
 * hard-linked to its final name, which fails if anything exists there, so a concurrent creator or an existing
 * file always wins and a half-written image never carries the final name.
 */
import { linkSync, mkdirSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { DiskExistsError, MissingToolError, QemuProcessError } from '../errors.js';
import { formatSize } from '../model/units.js';
import { crypto } from '../runtime/builtins.js';
import { isAlive } from '../runtime/process.js';

const QEMU_IMG = 'qemu-img';
const QEMU_IMG_TIMEOUT_MS = 60_000;

export interface ImageInfo {
  format: string;
  virtualSizeBytes: number;
  /** Snapshot tags stored in the image (qcow2 internal snapshots). */
  snapshots: string[];
  /** The backing file the image names (qcow2 overlays). */
  backingFile?: string;
  /** An external data file a qcow2 image names. */
  dataFile?: string;
}

async function run(args: string[], what: string): Promise<string> {
  // execa (~100 modules) is loaded by the first qemu-img call, not by every command that might make one.
  const { execa } = await import('execa');
  const result = await execa(QEMU_IMG, args, {
    reject: false,
    timeout: QEMU_IMG_TIMEOUT_MS,
    stdin: 'ignore',
  });
  if (result.failed) {
    if ((result.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
      throw new MissingToolError(
        `${QEMU_IMG} is not installed; install it with: sudo apt-get install -y --no-install-recommends qemu-utils`,
      );
    }
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
 * Facts about an image read as `format`; fails when the file is not an image of that format. `-U`
 * (force-share) lets this read an image a running QEMU holds locked; it only reads metadata.
 */
export async function imageInfo(file: string, format: string): Promise<ImageInfo> {
  const text = await run(['info', '-U', '-f', format, '--output=json', file], `reading ${file} as ${format}`);
  const info = JSON.parse(text) as {
    format: string;
    'virtual-size': number;
    snapshots?: { name: string }[];
    'backing-filename'?: string;
    'full-backing-filename'?: string;
    'format-specific'?: { data?: { 'data-file'?: string } };
  };
  return {
    format: info.format,
    virtualSizeBytes: info['virtual-size'],
    snapshots: (info.snapshots ?? []).map((s) => s.name),
    ...(info['full-backing-filename'] || info['backing-filename']
      ? { backingFile: info['full-backing-filename'] ?? info['backing-filename'] }
      : {}),
    ...(info['format-specific']?.data?.['data-file']
      ? { dataFile: info['format-specific'].data['data-file'] }
      : {}),
  };
}

export interface DiskCreation {
  path: string;
  /** qcow2 unless the manifest declares raw (a raw disk has no backing file). */
  format?: string;
  sizeBytes?: number;
  backing?: string;
  /** The backing image's format, as the manifest declares it (or as qvm read it once from a verified image). */
  backingFormat?: string;
  /** The image it is made from, for the record (which digest it was). */
  image?: { url?: string; sha256?: string; sha512?: string; path?: string };
}

/**
 * Creates a disk in its declared format (qcow2 unless raw; preallocation off), or a qcow2 overlay of
 * `backing`. Never replaces an existing file.
 */
export async function createDisk(disk: DiskCreation): Promise<void> {
  const dir = path.dirname(disk.path);
  mkdirSync(dir, { recursive: true });
  removeAbandonedTemporaries(dir);
  const temporary = path.join(
    dir,
    `.${path.basename(disk.path)}.qvm-${process.pid}-${crypto().randomBytes(4).toString('hex')}`,
  );
  const format = disk.backing ? 'qcow2' : (disk.format ?? 'qcow2');
  const args = ['create', '-q', '-f', format, '-o', 'preallocation=off'];
  if (disk.backing) {
    // Read the backing image as its declared format first: a mismatch is an error here, not a broken overlay.
    await imageInfo(disk.backing, disk.backingFormat ?? 'qcow2');
    args.push('-b', disk.backing, '-F', disk.backingFormat ?? 'qcow2');
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
  // `qemu-img snapshot` has no -f: the format goes in --image-opts (snapshots live only in qcow2 images).
  await run(
    [
      'snapshot',
      '--image-opts',
      '-q',
      '-d',
      tag,
      `driver=qcow2,file.driver=file,file.filename=${file.replace(/,/g, ',,')}`,
    ],
    `deleting snapshot ${tag} from ${file}`,
  );
}

/** Grows a disk. Without --shrink, qemu-img itself refuses to make an image smaller. */
export async function growDisk(file: string, format: string, sizeBytes: number): Promise<void> {
  await run(
    ['resize', '-q', '-f', format, file, String(sizeBytes)],
    `growing ${file} to ${formatSize(sizeBytes)}`,
  );
}
