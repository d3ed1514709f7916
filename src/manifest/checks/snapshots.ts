/**
 * Snapshots and hibernation live in the VM's qcow2 disk, and need qvm to start the VM: a VM without a disk, or
 * an adopted one, cannot have them.
 */
import type { Diagnostic } from '../../errors.js';
import type { VmCheck } from '../document.js';

/** `snapshot:` and `state: saved` need a disk, and a VM qvm starts itself. */
export const checkSnapshotNeeds: VmCheck = (doc) => {
  const { raw } = doc;
  const out: Diagnostic[] = [];
  if (raw.monitor !== undefined) {
    if (raw.snapshot !== undefined) {
      out.push(
        doc.problem(
          ['snapshot'],
          'cannot be used with `monitor`: qvm does not start an adopted VM, so it cannot boot it from a snapshot',
        ),
      );
    }
    if (raw.state === 'saved') {
      out.push(
        doc.problem(
          ['state'],
          'saved cannot be used with `monitor`: qvm could not start an adopted VM again to resume it',
        ),
      );
    }
    return out;
  }
  if (raw.disk !== undefined || (raw.snapshot === undefined && raw.state !== 'saved')) return out;
  const field = raw.snapshot !== undefined ? 'snapshot' : 'state';
  if (doc.accepted(field)) {
    out.push(
      doc.problem(
        [field],
        "needs a qcow2 `disk`: QEMU saves snapshots (RAM and devices) into the VM's qcow2 disk",
      ),
    );
  }
  return out;
};
