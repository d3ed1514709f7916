/**
 * Loading a manifest as commands do: a file, or every `*.yaml` and `*.yml` of a folder (the way a GitOps
 * repository holds them), checked together. Throws ManifestError with every problem of every file.
 */
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { type Diagnostic, ManifestError } from '../errors.js';
import { loadYamlFile } from './load.js';
import type { Manifest } from './types.js';
import { checkManifest } from './validate.js';

/** Loads and checks a manifest file or folder; throws ManifestError with every problem. */
export async function loadManifest(file: string): Promise<Manifest> {
  const absolute = path.resolve(file);
  if (!isFolder(absolute)) {
    const loaded = await loadYamlFile(absolute, file);
    const result = checkManifest(loaded, path.dirname(absolute));
    if (!result.manifest) throw new ManifestError(file, result.diagnostics);
    return result.manifest;
  }
  const names = readdirSync(absolute)
    // Hidden files are editors' lock and swap files (Emacs .#a.yaml), not manifests.
    .filter((name) => /^[^.].*\.ya?ml$/.test(name))
    .sort();
  if (names.length === 0) {
    throw new ManifestError(file, [{ file, message: 'is a folder with no *.yaml or *.yml manifest in it' }]);
  }
  const results = await Promise.all(
    names.map(async (name) =>
      checkManifest(await loadYamlFile(path.join(absolute, name), path.join(file, name)), absolute),
    ),
  );
  const diagnostics = results.flatMap((r) => r.diagnostics);
  const manifests = results.flatMap((r) => (r.manifest ? [r.manifest] : []));
  const declaredIn = new Map<string, Manifest>();
  for (const m of manifests) {
    for (const vm of m.vms) {
      const first = declaredIn.get(vm.name);
      if (first) diagnostics.push(declaredTwice(m, first, vm.name));
      else declaredIn.set(vm.name, m);
    }
  }
  if (diagnostics.length > 0) throw new ManifestError(file, diagnostics);
  return {
    file,
    dir: absolute,
    vms: manifests.flatMap((m) => m.vms),
    locate: (fieldPath) => {
      const owner = typeof fieldPath[1] === 'string' ? declaredIn.get(fieldPath[1]) : undefined;
      return owner?.locate(fieldPath);
    },
  };
}

function declaredTwice(second: Manifest, first: Manifest, vm: string): Diagnostic {
  const at = first.locate(['vms', vm]);
  return {
    file: second.file,
    ...second.locate(['vms', vm]),
    path: `vms.${vm}`,
    message: `is also declared in ${first.file}${at ? `:${at.line}` : ''}; a VM name must be unique across the folder`,
  };
}

function isFolder(file: string): boolean {
  try {
    return statSync(file).isDirectory();
  } catch {
    return false; // a missing file is reported by loadYamlFile, located
  }
}
