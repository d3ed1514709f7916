/**
 * Loading a manifest as commands do: a file, or every `*.yaml` and `*.yml` of a folder (the way a GitOps
 * repository holds them), checked together as one manifest. Throws ManifestError with every problem of every
 * file.
 */
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { ManifestError } from '../errors.js';
import { type LoadedYaml, loadYamlFile, parseYaml } from './load.js';
import { cachedParse, keepParse, type ParseStore } from './parse-cache.js';
import type { Manifest } from './types.js';
import { checkDocuments } from './validate.js';

export interface LoadOptions {
  /** Parses kept between runs (parse-cache.ts), valid for one build of qvm. */
  parseCache?: { store: ParseStore; build: string };
}

/** Loads and checks a manifest file or folder; throws ManifestError with every problem. */
export async function loadManifest(file: string, options: LoadOptions = {}): Promise<Manifest> {
  const cache = options.parseCache;
  const parse = cache
    ? (text: string, displayName: string, absolute: string): LoadedYaml => {
        const kept = cachedParse(cache.store, cache.build, absolute, text, displayName);
        if (kept) return kept;
        const loaded = parseYaml(text, displayName);
        keepParse(cache.store, cache.build, absolute, loaded);
        return loaded;
      }
    : parseYaml;
  const absolute = path.resolve(file);
  const folder = isFolder(absolute);
  const names = folder
    ? readdirSync(absolute)
        // Hidden files are editors' lock and swap files (Emacs .#a.yaml), not manifests.
        .filter((name) => /^[^.].*\.ya?ml$/.test(name))
        .sort()
    : [];
  if (folder && names.length === 0) {
    throw new ManifestError(file, [{ file, message: 'is a folder with no *.yaml or *.yml manifest in it' }]);
  }
  const loadeds = folder
    ? await Promise.all(
        names.map((name) => loadYamlFile(path.join(absolute, name), path.join(file, name), parse)),
      )
    : [await loadYamlFile(absolute, file, parse)];
  const result = checkDocuments(loadeds, folder ? absolute : path.dirname(absolute), file);
  if (!result.manifest) throw new ManifestError(file, result.diagnostics);
  return result.manifest;
}

function isFolder(file: string): boolean {
  try {
    return statSync(file).isDirectory();
  } catch {
    return false; // a missing file is reported by loadYamlFile, located
  }
}
