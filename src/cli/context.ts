/** What most commands start from: the manifest, validated, and its runtime namespace. */
import { UsageError } from '../errors.js';
import { loadManifest } from '../manifest/manifest.js';
import type { Manifest, VmSpec } from '../manifest/types.js';
import { acquireLock, describeHolder, type Lock } from '../runtime/lock.js';
import { type Namespace, namespaceFor } from '../runtime/paths.js';
import { type Output, writeLine } from './output.js';

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

/** The namespace's lock, saying on stderr what it waits for. */
export function takeLock(context: Context, command: string, wait: boolean, output: Output): Promise<Lock> {
  return acquireLock(context.namespace, command, {
    wait,
    onWait: (holder) =>
      writeLine(
        output.err,
        `waiting for ${describeHolder(holder)} to finish with the VMs of ${context.manifest.file}`,
      ),
  });
}
