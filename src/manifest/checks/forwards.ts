/** Forwards: each rule parses, and no two host ports of the manifest (forwards, SSH, VNC) are the same. */
import type { Diagnostic } from '../../errors.js';
import { formatFieldPath } from '../../model/field-path.js';
import { describeForward, hostSidesCollide, parseHostfwd } from '../../model/forward.js';
import { displayOf, forwardsOf } from '../defaults.js';
import type { ManifestCheck, VmCheck, VmDocument } from '../document.js';
import { type ForwardSpec, SSH_FORWARD_ADDRESS } from '../types.js';

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

/**
 * A host port qvm has QEMU bind for a VM: a forward, the SSH forward of `ssh.port` (on SSH_FORWARD_ADDRESS,
 * see guest/prepare.ts), or a VNC server on a TCP port (`display.vnc`). QEMU binds each when the VM starts
 * or the forward is added, so two claims on one port would fail there instead of here.
 */
interface HostPortClaim extends Pick<ForwardSpec, 'proto' | 'hostAddress' | 'hostPort'> {
  /** The field of the VM that claims it. */
  field: (string | number)[];
  /** How the claim is named in a message. */
  what: string;
}

function hostPortClaims(doc: VmDocument): HostPortClaim[] {
  const claims: HostPortClaim[] = forwardsOf(doc).map((forward) => ({
    ...forward,
    field: ['forwards', forward.index],
    what: describeForward(forward),
  }));
  const sshPort = doc.accepted('ssh') ? doc.raw.ssh?.port : undefined;
  if (sshPort !== undefined)
    claims.push({
      proto: 'tcp',
      hostAddress: SSH_FORWARD_ADDRESS,
      hostPort: sshPort,
      field: ['ssh', 'port'],
      what: `ssh on ${SSH_FORWARD_ADDRESS}:${sshPort}`,
    });
  const display = doc.accepted('display') ? displayOf(doc) : undefined;
  if (display?.kind === 'vnc-tcp')
    claims.push({
      proto: 'tcp',
      hostAddress: display.address,
      hostPort: display.port,
      field: ['display', 'vnc', 'port'],
      what: `VNC on ${display.address}:${display.port}`,
    });
  return claims;
}

/**
 * Two host ports anywhere in the manifest (forwards, SSH, VNC) on the same protocol and port, where one
 * address covers the other.
 */
export const checkForwardCollisions: ManifestCheck = (docs) => {
  const out: Diagnostic[] = [];
  const claimed: { claim: HostPortClaim; doc: VmDocument }[] = [];
  for (const doc of docs) {
    for (const claim of hostPortClaims(doc)) {
      const earlier = claimed.find((c) => hostSidesCollide(c.claim, claim));
      if (!earlier) {
        claimed.push({ claim, doc });
        continue;
      }
      const other = earlier.doc;
      const otherField = earlier.claim.field;
      const where = other.where(otherField);
      out.push(
        doc.problem(
          claim.field,
          `${claim.what} claims the same host port as ${formatFieldPath(other.at(...otherField))} (${other.file === doc.file ? where.replace(/^.*:(\d+)$/, 'line $1') : `in ${where}`})`,
        ),
      );
    }
  }
  return out;
};
