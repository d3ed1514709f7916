/** `ready:` probes through one of the VM's own tcp forwards, and names exactly one kind of probe. */
import { forwardsOf, readyForward } from '../defaults.js';
import type { VmCheck } from '../document.js';

/** `ready:` names exactly one probe, through a tcp forward of this VM. */
export const checkReady: VmCheck = (doc) => {
  const r = doc.raw.ready;
  if (r === undefined || !doc.accepted('ready')) return [];
  const kinds = (['tcp', 'http', 'ssh', 'agent'] as const).filter((k) => r[k] !== undefined);
  if (kinds.length !== 1) return [doc.problem(['ready'], 'needs exactly one of tcp, http, ssh or agent')];
  if (r.ssh !== undefined || r.agent !== undefined) return [];
  const port = r.tcp ?? r.http!.port;
  if (readyForward(forwardsOf(doc), port)) return [];
  return [
    doc.problem(
      ['ready', ...(r.tcp !== undefined ? ['tcp'] : ['http', 'port'])],
      `must be the host port of one of this VM's tcp forwards, got ${port}`,
    ),
  ];
};
