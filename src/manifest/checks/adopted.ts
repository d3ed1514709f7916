/** Adopted VMs: two entries reaching the same monitor socket would steer one QEMU from two places. */
import { realpathSync } from 'node:fs';
import type { Diagnostic } from '../../errors.js';
import type { ManifestCheck, VmDocument } from '../document.js';

export const checkMonitorClaims: ManifestCheck = (docs) => {
  const out: Diagnostic[] = [];
  const claimed = new Map<string, VmDocument>();
  for (const doc of docs) {
    if (doc.raw.monitor === undefined || !doc.accepted('monitor')) continue;
    const socket = doc.resolve(doc.raw.monitor);
    let real = socket;
    try {
      real = realpathSync(socket);
    } catch {
      // not there (yet): compare the path as written
    }
    const first = claimed.get(real);
    if (first) {
      out.push(
        doc.problem(
          ['monitor'],
          `is also the monitor of VM ${first.name} (${first.where(['monitor'])}); one QEMU can be one VM of the manifest`,
        ),
      );
    } else {
      claimed.set(real, doc);
    }
  }
  return out;
};
