/**
 * The Debian 12 test guest (guest/debian/README.md): built once per machine into a cache outside the
 * repository (a few minutes, as root, from Debian's mirror), then found in ~20 ms. Its image is pinned by the
 * digests of the build at hand.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface DebianGuest {
  image: string;
  kernel: string;
  initrd: string;
  sha256: string;
  sha512: string;
  /** The kernel command line the image boots with. */
  append: string;
}

const BUILD = fileURLToPath(new URL('../../guest/debian/build.sh', import.meta.url));

/** Builds the guest when the cache does not have it (root needed then: the error says so) and returns it. */
export function debianGuest(): DebianGuest {
  let out: string;
  try {
    out = execFileSync('bash', [BUILD], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 900_000,
    });
  } catch (error) {
    const stderr = String((error as { stderr?: string }).stderr ?? '');
    throw new Error(
      `the Debian test guest could not be built (guest/debian/build.sh needs root and Debian's mirror the first time): ${stderr.trim().split('\n').slice(-3).join(' / ')}`,
    );
  }
  const [image, kernel, initrd] = out.trim().split('\n') as [string, string, string];
  const digest = (file: string) =>
    readFileSync(path.join(path.dirname(image), file), 'utf8')
      .split('\n')
      .find((l) => l.endsWith(path.basename(image)))!
      .split(/\s+/)[0]!;
  return {
    image,
    kernel,
    initrd,
    sha256: digest('SHA256SUMS'),
    sha512: digest('SHA512SUMS'),
    append: 'root=LABEL=root rw console=ttyS0',
  };
}
