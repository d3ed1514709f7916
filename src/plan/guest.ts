/** What a start or a save does inside the guest, through its agent or SSH: the clock, the 9p shares. */
import type { VmPlanning } from './context.js';
import type { ClockSync } from './types.js';

/** How to set the clock after a resume: the agent when the VM has one, else SSH; nothing without either. */
export function clockSync(ctx: VmPlanning): { syncClock?: ClockSync } {
  const { spec, paths } = ctx;
  if (spec.agent) return { syncClock: { agent: paths.agent } };
  if (spec.ssh?.access) return { syncClock: { ssh: spec.ssh.access } };
  return {};
}

/** A VM with shares and an agent: qvm unmounts them around saves and mounts them again after resumes. */
export function guestSteps(ctx: VmPlanning): { shareAgent?: string } {
  const { spec, paths } = ctx;
  return spec.agent && spec.mounts.length > 0 ? { shareAgent: paths.agent } : {};
}
