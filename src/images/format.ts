/**
 * What kind of image a file is, read once from its first bytes when qvm takes it as an image (a verified
 * download, or a local image file), and checked for what would let a guest reach host files: a qcow2 image
 * that names a backing file or an external data file of its own is refused. From then on the format is data
 * qvm passes with -F; it is never guessed again, and never decides how a writable disk is opened.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { ImageError, isQvmError } from '../errors.js';
import { imageInfo } from '../qemu/img.js';

const MAGIC: [string, Buffer][] = [
  ['qcow2', Buffer.from([0x51, 0x46, 0x49, 0xfb])],
  ['xz', Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])],
  ['gzip', Buffer.from([0x1f, 0x8b])],
  ['zstd', Buffer.from([0x28, 0xb5, 0x2f, 0xfd])],
  ['bzip2', Buffer.from('BZh')],
  ['vmdk', Buffer.from('KDMV')],
  ['vhdx', Buffer.from('vhdxfile')],
];

/** The format a file's first bytes say: qcow2, raw, or a kind qvm does not take (compressed, vmdk...). */
export function sniffFormat(file: string): string {
  const head = Buffer.alloc(8);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  for (const [name, magic] of MAGIC) if (head.subarray(0, magic.length).equals(magic)) return name;
  return 'raw';
}

/**
 * The format of a file taken as an image, after checking it is one qvm can use safely as a read-only base:
 * qcow2 or raw, and a qcow2 with no backing file or data file of its own. Throws ImageError naming `what`.
 */
export async function checkImageFile(file: string, what: string): Promise<string> {
  const format = sniffFormat(file);
  if (format !== 'qcow2' && format !== 'raw') {
    throw new ImageError(
      `${what} is a ${format} file, not a disk image: qvm takes qcow2 and raw images (decompress it first, or use the distro's .qcow2 or .raw image)`,
    );
  }
  if (format === 'raw') return format;
  let info: Awaited<ReturnType<typeof imageInfo>>;
  try {
    info = await imageInfo(file, 'qcow2');
  } catch (error) {
    if (!isQvmError(error)) throw error;
    throw new ImageError(`${what} looks like qcow2 but qemu-img cannot read it: ${error.message}`);
  }
  if (info.backingFile || info.dataFile) {
    throw new ImageError(
      `${what} is a qcow2 image that names ${info.backingFile ? `a backing file (${info.backingFile})` : `a data file (${info.dataFile})`} of its own: a VM on it could read that host file. qvm takes only self-contained images`,
    );
  }
  return format;
}
