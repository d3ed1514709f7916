/** What most commands start from: the manifest, validated, and its runtime namespace. */
import { UsageError } from '../errors.js';
import type { Manifest, VmSpec } from '../manifest/types.js';
import { loadManifest } from '../manifest/validate.js';
import { type Namespace, namespaceFor } from '../runtime/paths.js';

export interface Context {
  manifest: Manifest;
  namespace: Namespace;
}

export async function loadContext(file: string): Promise<Context> {
  const manifest = await loadManifest(file);
  return { manifest, namespace: namespaceFor(file) };
}

export function findVm(context: Context, name: string): VmSpec {
  const spec = context.manifest.vms.find((v) => v.name === name);
  if (!spec) {
    const names = context.manifest.vms.map((v) => v.name);
    throw new UsageError(
      `no VM named "${name}" in ${context.manifest.file} (it has: ${names.join(', ') || 'none'})`,
    );
  }
  return spec;
}
