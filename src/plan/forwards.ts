/** Forward reconciliation: what to add and remove live so a running VM's forwards match the manifest. */
import { type ForwardSpec, forwardField, type VmSpec } from '../manifest/types.js';
import { sameForward } from '../model/forward.js';
import type { Observation, RunningVm } from '../observe/types.js';
import type { VmPlanning } from './context.js';
import { planned } from './launch.js';
import type { UpdateChange } from './types.js';

/**
 * The VM's forwards minus those whose host port something else holds: each of those is a located problem
 * (when `problem` is given), and the others are still applied.
 */
export function withoutConflicts(
  spec: VmSpec,
  observation: Observation,
  problem?: VmPlanning['problem'],
): ForwardSpec[] {
  const taken = new Map(
    observation.portConflicts.filter((c) => c.vm === spec.name).map((c) => [c.index, c.holder]),
  );
  return spec.forwards.filter((f) => {
    const holder = taken.get(f.index);
    if (holder === undefined) return true;
    problem?.(
      `host port ${f.proto} ${f.hostAddress}:${f.hostPort} is in use by ${holder}`,
      ...forwardField(f),
    );
    return false;
  });
}

/**
 * The live change that makes a running VM's forwards `wanted`, and resumes it when paused; undefined when
 * nothing differs. Forwards qvm did not add (not on its command line, not added live by qvm) are drift.
 */
export function forwardUpdate(
  spec: VmSpec,
  running: RunningVm,
  socket: string,
  netdev: string,
  wanted: ForwardSpec[],
): UpdateChange | undefined {
  const known = [...(running.launch?.launch.forwards ?? []), ...(running.launch?.liveForwards ?? [])];
  const add = planned(wanted.filter((want) => !running.forwards.some((have) => sameForward(have, want))));
  const remove = planned(
    // A forward whose port conflicts is still the manifest's: do not remove one that exists.
    running.forwards.filter((have) => !spec.forwards.some((want) => sameForward(have, want))),
  ).map((forward) => ({
    ...forward,
    drift: !running.adopted && !known.some((k) => sameForward(k, forward)),
  }));
  const resume = running.runstate === 'paused';
  if (add.length === 0 && remove.length === 0 && !resume) return undefined;
  return { action: 'update', vm: spec.name, adopted: running.adopted, socket, netdev, add, remove, resume };
}
