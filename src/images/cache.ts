/**
 * The image cache: distro images downloaded once, kept by content. An image is stored under the digest of its
 * content, so two manifests naming the same image share one copy, a cached image is never downloaded again,
 * and a file with the wrong content can never take an image's name.
 *
 *   <cache>/images/sha256/<hex>        the image, read-only (hard-linked under sha512/<hex> too)
 *   <cache>/images/sha256/<hex>.json   what it is: URL, both digests, size, format, which disks use it
 *   <cache>/images/partial/<alg>-<hex> an interrupted download, resumed from where it stopped
 *
 * The cache root is $QVM_CACHE_DIR, else $XDG_CACHE_HOME/qvm, else ~/.cache/qvm (~ from the password database).
 */
import {
  chmodSync,
  existsSync,
  linkSync,
  readdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { cacheRoot, ensurePrivateDir } from '../runtime/paths.js';

export type DigestAlgorithm = 'sha256' | 'sha512';

/** The digest an image is pinned by, as the manifest gives it. */
export interface Digest {
  algorithm: DigestAlgorithm;
  hex: string;
}

/** What the cache knows about an image it holds. */
export interface CachedImage {
  /** The image file (read-only). */
  path: string;
  url: string;
  sha256: string;
  sha512: string;
  sizeBytes: number;
  /** qcow2 or raw, read from the file's first bytes once, when it was verified. */
  format: string;
  fetchedAt: string;
  /** Disks created as overlays of it, by the manifests that made them. */
  users: { disk: string; manifest: string }[];
}

/** Where an image with this digest is (or would be) in the cache. */
export function imagePath(digest: Digest, root = cacheRoot()): string {
  return path.join(root, 'images', digest.algorithm, digest.hex);
}

/** Where an interrupted download of this digest is kept. */
export function partialPath(digest: Digest, root = cacheRoot()): string {
  return path.join(root, 'images', 'partial', `${digest.algorithm}-${digest.hex}`);
}

/** The cached image with this digest, or undefined when the cache does not hold it. */
export function lookupImage(digest: Digest, root = cacheRoot()): CachedImage | undefined {
  const file = imagePath(digest, root);
  if (!existsSync(file)) return undefined;
  try {
    const meta = JSON.parse(
      readFileSync(`${imagePath({ algorithm: 'sha256', hex: sha256Of(digest, root) }, root)}.json`, 'utf8'),
    );
    return { ...meta, path: imagePath({ algorithm: 'sha256', hex: meta.sha256 }, root) } as CachedImage;
  } catch {
    return undefined;
  }
}

/** The sha256 name of an image known by another digest (the sha512 name is a hard link to the same file). */
function sha256Of(digest: Digest, root: string): string {
  if (digest.algorithm === 'sha256') return digest.hex;
  const meta = path.join(root, 'images', 'sha512', `${digest.hex}.ref`);
  return readFileSync(meta, 'utf8').trim();
}

/**
 * Puts a verified download into the cache under both digests, read-only, with its metadata. The file is
 * renamed into place last, so an interrupted store never leaves an image name without its content.
 */
export function storeImage(
  verified: string,
  meta: Omit<CachedImage, 'path' | 'users'>,
  root = cacheRoot(),
): CachedImage {
  const byDigest = imagePath({ algorithm: 'sha256', hex: meta.sha256 }, root);
  const by512 = imagePath({ algorithm: 'sha512', hex: meta.sha512 }, root);
  ensurePrivateDir(path.dirname(byDigest));
  ensurePrivateDir(path.dirname(by512));
  const image: CachedImage = { ...meta, path: byDigest, users: readUsers(byDigest) };
  writeFileSync(`${byDigest}.json`, `${JSON.stringify({ ...image, path: undefined }, null, 2)}\n`, {
    mode: 0o600,
  });
  writeFileSync(`${by512}.ref`, `${meta.sha256}\n`, { mode: 0o600 });
  // Read-only: nothing of qvm's (or QEMU through an overlay) ever writes an image.
  chmodSync(verified, 0o400);
  renameSync(verified, byDigest);
  if (!existsSync(by512)) linkSync(byDigest, by512);
  return image;
}

function readUsers(imageFile: string): CachedImage['users'] {
  try {
    return (JSON.parse(readFileSync(`${imageFile}.json`, 'utf8')) as CachedImage).users ?? [];
  } catch {
    return [];
  }
}

/** Records that a disk of a manifest was created as an overlay of a cached image. */
export function recordImageUser(image: CachedImage, disk: string, manifest: string): void {
  const users = readUsers(image.path).filter((u) => u.disk !== disk);
  const meta = { ...image, users: [...users, { disk, manifest }], path: undefined };
  writeFileSync(`${image.path}.json`, `${JSON.stringify(meta, null, 2)}\n`, { mode: 0o600 });
}

/** Every image the cache holds. */
export function listImages(root = cacheRoot()): CachedImage[] {
  const dir = path.join(root, 'images', 'sha256');
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((name) => /^[0-9a-f]{64}$/.test(name))
    .flatMap((hex) => {
      const image = lookupImage({ algorithm: 'sha256', hex }, root);
      return image ? [image] : [];
    });
}
