/**
 * Small files kept by key in a private folder of the cache root, for what qvm can always make again (parsed
 * manifests). Nothing here throws: a store that cannot be read or written is a store that is empty.
 */
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheRoot, checkPrivateDir, ensurePrivateDir } from './paths.js';
import { replaceFile } from './records.js';

export interface FileStore {
  read(key: string): string | undefined;
  write(key: string, data: string): void;
}

/**
 * How commands load a manifest: with the parses kept in `<cache root>/manifests` (manifest/parse-cache.ts),
 * for this build of qvm; without them when there is no usable cache root.
 */
export function manifestLoadOptions(): { parseCache?: { store: FileStore; build: string } } {
  try {
    return { parseCache: { store: privateFileStore(path.join(cacheRoot(), 'manifests')), build: buildId() } };
  } catch {
    return {}; // e.g. a relative QVM_CACHE_DIR: commands that need the cache say so themselves
  }
}

/**
 * Entries live in files named by a hash of their key; the key is stored in the entry too, and checked by its
 * reader, so two keys with one hash only miss each other.
 */
export function privateFileStore(dir: string): FileStore {
  const fileOf = (key: string) => path.join(dir, `${hash(key)}.json`);
  return {
    read(key) {
      try {
        checkPrivateDir(dir); // a folder another user can write could hold planted entries
        return readFileSync(fileOf(key), 'utf8');
      } catch {
        return undefined;
      }
    },
    write(key, data) {
      try {
        ensurePrivateDir(dir);
        replaceFile(fileOf(key), data); // a concurrent reader sees the old entry or the new one
      } catch {
        // a full or read-only disk: the next run does the work again
      }
    },
  };
}

/** Set by esbuild to a new value on every build (scripts/build.ts): the same in every bundle of one build. */
declare const QVM_BUILD_ID: string | undefined;

/** This build of qvm; unbundled (tests, tsx), the file this code runs from and when it was written. */
function buildId(): string {
  if (typeof QVM_BUILD_ID === 'string') return QVM_BUILD_ID;
  const file = fileURLToPath(import.meta.url);
  return `${file} ${statSync(file).mtimeMs}`;
}

/** 64 bits of FNV-1a, as hex: a file name, not a digest (entries carry their key). */
function hash(text: string): string {
  let low = 0x811c9dc5;
  let high = 0x01000193;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    low = Math.imul(low ^ code, 0x01000193) >>> 0;
    high = Math.imul(high ^ code ^ (low >>> 24), 0x01000193) >>> 0;
  }
  return high.toString(16).padStart(8, '0') + low.toString(16).padStart(8, '0');
}
