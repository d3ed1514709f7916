/** What most commands start from: the manifest, validated, its runtime namespace, and a VM of it by name. */
import { UsageError } from '../errors.js';
import type { VmSpec } from '../manifest/types.js';
import { type Context, loadContext } from '../reconcile/pass.js';
import { describeHolder, type LockHolder } from '../runtime/lock.js';
import { type Output, writeLine } from './output.js';

export { type Context, loadContext };

/** The VM of the manifest with this name; a UsageError listing the names it has otherwise. */
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

/** Says on stderr what a command waits for when another qvm holds the namespace's lock. */
export function sayWaiting(output: Output, manifestFile: string): (holder: LockHolder | undefined) => void {
  return (holder) =>
    writeLine(output.err, `waiting for ${describeHolder(holder)} to finish with the VMs of ${manifestFile}`);
}
