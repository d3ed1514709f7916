/**
 * Planning a VM started outside qvm and reached through `monitor:`: its forwards are reconciled live and
 * `state: stopped` quits it through that monitor. qvm never starts, restarts or signals it.
 */
import type { VmPlanning } from './context.js';
import { locate } from './context.js';
import { forwardUpdate, withoutConflicts } from './forwards.js';
import { stopChange } from './managed.js';

/** Plans an adopted VM: live forward changes, or a quit through its monitor for `state: stopped`. */
export function planAdopted(ctx: VmPlanning): void {
  const { spec, out } = ctx;
  const observed = ctx.observation.vms.get(spec.name)!;
  const socket = spec.monitor!;
  const ignored = spec.adoptedIgnores ?? [];
  if (ignored.length > 0) {
    out.notes.push({
      vm: spec.name,
      message: `${ignored.join(', ')} not applied: this VM was started outside qvm, which cannot restart it`,
    });
  }
  const clash = ctx.observation.monitorClashes.find((c) => c.vm === spec.name);
  if (clash) {
    ctx.problem(clash.message, 'monitor');
    return;
  }
  if (observed.state === 'unknown') {
    ctx.problem(`does not answer on ${socket}: ${observed.error}`);
    return;
  }
  if (observed.state === 'stopped') {
    if (spec.state === 'running') {
      out.problems.push({
        vm: spec.name,
        message: `is not running (no QEMU answers on ${socket}); qvm does not start a VM it did not start`,
        location: locate(ctx.manifest, spec.name, 'monitor'),
      });
    }
    return;
  }
  if (spec.state === 'stopped') {
    out.changes.push(stopChange(ctx, observed, socket));
    return;
  }
  const netdev = observed.forwards[0]?.netdev ?? '';
  const update = forwardUpdate(
    spec,
    observed,
    socket,
    netdev,
    withoutConflicts(spec, ctx.observation, ctx.problem),
  );
  if (update) out.changes.push(update);
}
