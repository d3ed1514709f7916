/** Forwards: each rule parses, and no two forwards of the manifest claim the same host port. */
import type { Diagnostic } from '../../errors.js';
import { formatFieldPath } from '../../model/field-path.js';
import { describeForward, hostSidesCollide, parseHostfwd } from '../../model/forward.js';
import { forwardsOf } from '../defaults.js';
import type { ManifestCheck, VmCheck, VmDocument } from '../document.js';
import type { ForwardSpec } from '../types.js';

/** A rule in QEMU's hostfwd syntax that does not parse (the schema only checks its outline). */
export const checkForwardRules: VmCheck = (doc) => {
  const out: Diagnostic[] = [];
  (Array.isArray(doc.raw.forwards) ? doc.raw.forwards : []).forEach((item, index) => {
    if (typeof item !== 'string' || !doc.accepted('forwards', index)) return;
    const parsed = parseHostfwd(item);
    if (!parsed.ok)
      out.push(doc.problem(['forwards', index], `${parsed.reason}, got ${JSON.stringify(item)}`));
  });
  return out;
};

/** Two forwards anywhere in the manifest on the same protocol and port, where one address covers the other. */
export const checkForwardCollisions: ManifestCheck = (docs) => {
  const out: Diagnostic[] = [];
  const claimed: { forward: ForwardSpec; doc: VmDocument }[] = [];
  for (const doc of docs) {
    for (const forward of forwardsOf(doc)) {
      const earlier = claimed.find((c) => hostSidesCollide(c.forward, forward));
      if (!earlier) {
        claimed.push({ forward, doc });
        continue;
      }
      const other = earlier.doc;
      const otherField = ['forwards', earlier.forward.index];
      const where = other.where(otherField);
      out.push(
        doc.problem(
          ['forwards', forward.index],
          `${describeForward(forward)} claims the same host port as ${formatFieldPath(other.at(...otherField))} (${other.file === doc.file ? where.replace(/^.*:(\d+)$/, 'line $1') : `in ${where}`})`,
        ),
      );
    }
  }
  return out;
};
