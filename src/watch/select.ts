/**
 * Which of a pass's planned changes watch applies now: `--live-only` holds back what would replace or end a
 * process (applying only the forwards a held-back restart can change live), and back-off holds back starts of
 * VMs that keep going down by themselves. Pure: the clock is an argument; the back-off's memory is updated.
 */
import type { Plan, UpdateChange, VmChange } from '../plan/types.js';
import type { Backoff } from './backoff.js';

export interface Selection {
  /** The plan to apply. */
  plan: Plan;
  /** Changes held back by --live-only, with the live part applied instead when there is one. */
  pending: { change: VmChange; liveInstead?: UpdateChange }[];
  /** VMs whose start waits for their back-off. */
  backedOff: { vm: string; restarts: number; delayMs: number }[];
}

/** Splits a plan into what watch applies now, what --live-only holds back, and what back-off delays. */
export function selectChanges(full: Plan, liveOnly: boolean, backoff: Backoff, nowMs: number): Selection {
  const kept: VmChange[] = [];
  const pending: Selection['pending'] = [];
  const backedOff: Selection['backedOff'] = [];
  for (const change of full.changes) {
    if (liveOnly && (change.action === 'restart' || change.action === 'stop' || change.action === 'save')) {
      const liveInstead = change.action === 'restart' ? change.liveForwards : undefined;
      pending.push({ change, ...(liveInstead ? { liveInstead } : {}) });
      if (liveInstead) kept.push(liveInstead);
      continue;
    }
    if (change.action === 'start' && change.recovery) {
      const delayMs = backoff.delayMs(change.vm, nowMs);
      if (delayMs > 0) {
        backedOff.push({ vm: change.vm, restarts: backoff.restartsInWindow(change.vm, nowMs), delayMs });
        continue;
      }
      backoff.recordRestart(change.vm, nowMs);
    } else if (change.action === 'start' || change.action === 'stop') {
      // Started or stopped on purpose: earlier deaths no longer count against it.
      backoff.reset(change.vm);
    }
    kept.push(change);
  }
  return { plan: { ...full, changes: kept }, pending, backedOff };
}
