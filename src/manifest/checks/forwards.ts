/** Forwards: each rule parses, and no two forwards of the manifest claim the same host port. */
import type { Diagnostic } from '../../errors.js';
import { formatFieldPath } from '../../model/field-path.js';
import { describeForward, hostSidesCollide, parseHostfwd } from '../../model/forward.js';
import { forwardsOf } from '../defaults.js';
import type { ManifestCheck, VmCheck } from '../document.js';
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
export const checkForwardCollisions: ManifestCheck = (docs, loaded) => {
  const out: Diagnostic[] = [];
  const claimed: { forward: ForwardSpec; vm: string }[] = [];
  for (const doc of docs) {
    for (const forward of forwardsOf(doc)) {
      const earlier = claimed.find((c) => hostSidesCollide(c.forward, forward));
      if (!earlier) {
        claimed.push({ forward, vm: doc.name });
        continue;
      }
      const otherPath = ['vms', earlier.vm, 'forwards', earlier.forward.index];
      const where = loaded.locate(otherPath);
      out.push(
        doc.problem(
          ['forwards', forward.index],
          `${describeForward(forward)} claims the same host port as ${formatFieldPath(otherPath)}` +
            (where ? ` (line ${where.line})` : ''),
        ),
      );
    }
  }
  return out;
};
