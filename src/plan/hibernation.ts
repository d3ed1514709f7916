/**
 * Whether a VM that is down resumes from its hibernated state. Loading a snapshot also loads the disk as it
 * was then, so loading one that is not the VM's last state silently reverts every write since. The state is
 * resumed only when qvm knows the VM was stopped by hibernating: its record (written after the process
 * ended) names this very disk file, and the VM is started with the configuration it was saved with. A tag
 * on the disk without a record (an interrupted save, a kill after a resume) is never loaded; the user drops
 * it (`apply --discard-saved-state`) or qvm removes it while the VM runs.
 */

import { SAVED_STATE_TAG } from '../model/names.js';
import type { DiskState, ObservedVm } from '../observe/types.js';
import type { VmPlanning } from './context.js';
import { fieldChanges } from './fields.js';
import { clockSync } from './guest.js';
import { launchSpec } from './launch.js';
import type { StartSteps } from './types.js';

/**
 * The hibernation steps of a start: resume, drop (discarded), forget a stale record, or nothing. Undefined
 * (with a problem reported) when the VM has a saved state qvm may not load and was not told to drop.
 */
export function hibernationSteps(
  ctx: VmPlanning,
  observed: ObservedVm,
  disk: DiskState | undefined,
): StartSteps | undefined {
  const { spec } = ctx;
  const hasTag = (disk?.snapshots ?? []).includes(SAVED_STATE_TAG);
  const saved = observed.savedState;
  if (!hasTag) return saved ? { forgetSavedState: true } : {};
  const drop = {
    dropSnapshots: [{ disk: spec.disk!.path, tag: SAVED_STATE_TAG }],
    ...(saved ? { forgetSavedState: true } : {}),
  };
  // A running VM's own state is its last: a hibernation tag on its disk is left over by definition.
  if (ctx.options.discardSavedState || observed.state === 'running') return drop;
  const record = saved && 'record' in saved ? saved.record : undefined;
  const sameFile =
    record &&
    disk?.identity &&
    record.disk.dev === disk.identity.dev &&
    record.disk.ino === disk.identity.ino;
  if (!record || !sameFile) {
    const why = !saved
      ? 'qvm has no record of saving it (a save that was interrupted, or a VM hibernated by a qvm older than 0.2)'
      : 'unreadable' in saved
        ? `its record cannot be read (${saved.unreadable})`
        : `its record names another file at ${record!.disk.path} (the disk was replaced)`;
    ctx.problem(
      `has a hibernation snapshot (${SAVED_STATE_TAG}) on its disk, but ${why}. It is not loaded: it may be older than what the disk holds now, and loading it would revert the disk. \`qvm apply --discard-saved-state\` drops it and boots cold`,
    );
    return undefined;
  }
  if (record.launch) {
    const wanted = launchSpec(spec, ctx.accel, spec.forwards, disk);
    const changed = fieldChanges(record.launch, wanted, ctx.manifest.dir);
    if (changed.some((f) => f.field === 'devices')) {
      // Nothing in the manifest can set this back: only the qvm that saved it could resume it.
      ctx.problem(
        `was hibernated (${record.savedAt}) by an older qvm, which started QEMU with its default devices; this qvm starts QEMU with -nodefaults and only the devices the manifest asks for, and QEMU resumes a saved state only into the device set it was saved with. \`qvm apply --discard-saved-state\` drops the saved state and boots cold (or resume it with the older qvm and shut the guest down first)`,
      );
      return undefined;
    }
    if (changed.length > 0) {
      ctx.problem(
        `was hibernated (${record.savedAt}) with another configuration than the manifest's now (${changed.map((f) => f.text ?? `${f.field} ${f.from} -> ${f.to}`).join(', ')}), and QEMU resumes a saved state only with the configuration it was saved with. Set those fields back and apply to resume it, or \`qvm apply --discard-saved-state\` to drop the saved state and boot cold`,
      );
      return undefined;
    }
  }
  return {
    bootFrom: { tag: SAVED_STATE_TAG, kind: 'saved-state' },
    ...clockSync(ctx),
  };
}
