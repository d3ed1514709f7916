/**
 * The disk of a VM with `image:`: made as a qcow2 overlay of the image (downloaded first when the cache does
 * not hold it), and, once it exists, always the overlay of that same image. An image changed in the manifest
 * is a problem that says what to do: qvm never re-points an existing overlay (its blocks only make sense on
 * top of the image they were written over).
 */
import { imagePath } from '../images/cache.js';
import { imageDigest, imageLabel } from '../images/source.js';
import type { DiskState, ImageState } from '../observe/types.js';
import type { DiskCreation } from '../qemu/img.js';
import type { VmPlanning } from './context.js';
import { display } from './describe.js';
import type { StartSteps } from './types.js';

/** The steps that make a missing disk from the VM's image; undefined (with a problem) when they cannot. */
export function diskFromImage(ctx: VmPlanning, image: ImageState | undefined): StartSteps | undefined {
  const { spec } = ctx;
  const wanted = spec.image!;
  const base: DiskCreation = {
    path: spec.disk!.path,
    ...(spec.disk!.sizeBytes !== undefined ? { sizeBytes: spec.disk!.sizeBytes } : {}),
  };
  if (wanted.kind === 'path') {
    if (image?.kind !== 'path' || image.error || !image.format) {
      ctx.problem(
        image?.kind === 'path' && image.error ? image.error : `cannot read ${wanted.path}`,
        'image',
      );
      return undefined;
    }
    return {
      createDisk: {
        ...base,
        backing: wanted.path,
        backingFormat: image.format,
        image: { path: wanted.path },
      },
    };
  }
  const record = { url: wanted.url, ...pick(wanted) };
  if (image?.kind === 'url' && image.cached) {
    return {
      createDisk: { ...base, backing: image.cached.path, backingFormat: image.cached.format, image: record },
      imageLabel: imageLabel(wanted),
    };
  }
  return {
    fetchImage: {
      url: wanted.url,
      digest: imageDigest(wanted),
      label: imageLabel(wanted),
      ...(image?.kind === 'url' && image.remoteSizeBytes !== undefined
        ? { sizeBytes: image.remoteSizeBytes }
        : {}),
    },
    createDisk: { ...base, image: record },
  };
}

/**
 * An existing disk of a VM with `image:` must be the overlay of that image: unchanged, it needs nothing (or
 * the image fetched again, when the cache lost it); changed, it is a problem. Undefined with a problem.
 */
export function checkDiskImage(
  ctx: VmPlanning,
  disk: DiskState,
  image: ImageState | undefined,
): StartSteps | undefined {
  const { spec, manifest } = ctx;
  const wanted = spec.image!;
  const shown = display(manifest.dir, spec.disk!.path);
  const made = disk.known?.image;
  const same =
    wanted.kind === 'path'
      ? (made?.path ?? disk.backingFile) === wanted.path
      : made
        ? (made.sha256 !== undefined && made.sha256 === wanted.sha256) ||
          (made.sha512 !== undefined && made.sha512 === wanted.sha512)
        : disk.backingFile !== undefined &&
          (disk.backingFile === imagePath(imageDigest(wanted)) ||
            (image?.kind === 'url' && disk.backingFile === image.cached?.path));
  if (!same) {
    const from = made?.url ?? made?.path ?? disk.backingFile;
    ctx.problem(
      `${shown} was made from ${from ? `another image (${from})` : 'no image (it has no backing file)'}, and the manifest now names ${imageLabel(wanted)}; qvm never re-points an existing disk to another image. Set image back, or delete the disk to start over from the new image (qvm destroy ${spec.name} --delete-disks deletes it if qvm created it)`,
      'image',
    );
    return undefined;
  }
  return {};
}

function pick(image: { sha256?: string; sha512?: string }) {
  return {
    ...(image.sha256 !== undefined ? { sha256: image.sha256 } : {}),
    ...(image.sha512 !== undefined ? { sha512: image.sha512 } : {}),
  };
}
