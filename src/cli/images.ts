/**
 * `qvm pull [-f FILE]` fetches the manifest's images ahead of time; `qvm images` lists the cache; `qvm images
 * prune` removes the images no existing disk is made from.
 */
import { existsSync, rmSync } from 'node:fs';
import { downloadText } from '../apply/executor.js';
import { isQvmError } from '../errors.js';
import { type CachedImage, listImages } from '../images/cache.js';
import { type DownloadProgress, fetchImage } from '../images/download.js';
import { imageDigest, imageLabel } from '../images/source.js';
import { apiDocument } from '../model/api.js';
import { imageInfo } from '../qemu/img.js';
import { loadContext } from './context.js';
import { type Output, writeLine } from './output.js';

/** `qvm pull`: every image of the manifest in the cache; a failed one is named, the others still fetched. */
export async function pullCommand(flags: { file: string }, output: Output): Promise<number> {
  const { manifest } = await loadContext(flags.file);
  const seen = new Set<string>();
  let failed = 0;
  for (const spec of manifest.vms) {
    const image = spec.image;
    if (image?.kind !== 'url') continue;
    const digest = imageDigest(image);
    const key = `${digest.algorithm}:${digest.hex}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const label = imageLabel(image);
    let last = 0;
    const started = Date.now();
    try {
      const cached = await fetchImage(
        { url: image.url, digest },
        {
          onProgress: (p: DownloadProgress) => {
            if (Date.now() - last < 1000) return;
            last = Date.now();
            writeLine(output.err, `${label}: ${downloadText({ ...p, startedMs: started })}`);
          },
        },
      );
      writeLine(output.out, `${label}: ${cached.sha256.slice(0, 12)} ${mib(cached.sizeBytes)} in the cache`);
    } catch (error) {
      if (!isQvmError(error)) throw error;
      failed++;
      writeLine(output.err, `${output.color.red('error:')} ${label}: ${error.message}`);
    }
  }
  if (seen.size === 0) writeLine(output.out, `${manifest.file} names no image to download.`);
  return failed > 0 ? 1 : 0;
}

function mib(bytes: number): string {
  return `${Math.max(1, Math.round(bytes / 2 ** 20))}M`;
}

/** The disks recorded as made from an image that still exist and are still overlays of it. */
async function liveUsers(image: CachedImage): Promise<CachedImage['users']> {
  const users: CachedImage['users'] = [];
  for (const user of image.users) {
    if (!existsSync(user.disk)) continue;
    try {
      const info = await imageInfo(user.disk, 'qcow2');
      if (info.backingFile === image.path) users.push(user);
    } catch {
      // not a qcow2 any more, or its base cannot be opened: not a user of this image
    }
  }
  return users;
}

/** `qvm images [-o json]`: digest, size, URL and the disks made from each cached image. */
export async function imagesCommand(flags: { output?: 'human' | 'json' }, output: Output): Promise<number> {
  const images = await Promise.all(
    listImages().map(async (image) => ({ image, users: await liveUsers(image) })),
  );
  if (flags.output === 'json') {
    const items = images.map(({ image, users }) => ({
      sha256: image.sha256,
      sha512: image.sha512,
      sizeBytes: image.sizeBytes,
      format: image.format,
      url: image.url,
      path: image.path,
      fetchedAt: image.fetchedAt,
      usedBy: users,
    }));
    writeLine(output.out, JSON.stringify(apiDocument('ImageList', { items }), null, 2));
    return 0;
  }
  if (images.length === 0) {
    writeLine(output.out, 'The image cache is empty.');
    return 0;
  }
  const rows = images.map(({ image, users }) => [
    image.sha256.slice(0, 12),
    mib(image.sizeBytes),
    image.url,
    users.length ? users.map((u) => `${u.disk} (${u.manifest})`).join(', ') : '-',
  ]);
  const header = ['SHA256', 'SIZE', 'URL', 'USED BY'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [header, ...rows])
    writeLine(output.out, r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
  return 0;
}

/** `qvm images prune`: removes cached images that no existing disk is an overlay of. */
export async function pruneImagesCommand(output: Output): Promise<number> {
  let removed = 0;
  for (const image of listImages()) {
    if ((await liveUsers(image)).length > 0) continue;
    for (const file of [image.path, `${image.path}.json`]) rmSync(file, { force: true });
    const sha512 = image.path.replace(/sha256\/[0-9a-f]+$/, `sha512/${image.sha512}`);
    for (const file of [sha512, `${sha512}.ref`]) rmSync(file, { force: true });
    writeLine(output.out, `removed ${image.sha256.slice(0, 12)} ${mib(image.sizeBytes)} ${image.url}`);
    removed++;
  }
  writeLine(
    output.out,
    removed === 0 ? 'Nothing to remove: every cached image backs a disk.' : `${removed} removed.`,
  );
  return 0;
}
