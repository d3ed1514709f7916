/** An `image:` of the manifest in the cache's terms. */
import type { ImageSpec } from '../manifest/types.js';
import type { Digest } from './cache.js';

/** The digest the cache knows a downloaded image by: sha512 when the manifest gives it, else sha256. */
export function imageDigest(image: Extract<ImageSpec, { kind: 'url' }>): Digest {
  return image.sha512 !== undefined
    ? { algorithm: 'sha512', hex: image.sha512 }
    : { algorithm: 'sha256', hex: image.sha256 ?? '' };
}

/** An image's name for people: its catalogue name, else its URL's last part. */
export function imageLabel(image: ImageSpec): string {
  if (image.kind === 'path') return image.path;
  return (
    image.name ??
    image.url
      .replace(/[?#].*$/, '')
      .split('/')
      .pop() ??
    image.url
  );
}
