/**
 * Planning a VM qvm starts itself: from what its process is doing (none, running, paused, powered off, stuck)
 * and what the manifest wants, the one change that gets it there.
 */

import { SAVED_STATE_TAG } from '../model/names.js';
import { formatSize } from '../model/units.js';
import type { RunningVm } from '../observe/types.js';
import { NETDEV_ID, restartRelevantArgs } from '../qemu/argv.js';
import type { VmPlanning } from './context.js';
import { fieldChanges } from './fields.js';
import { forwardUpdate, withoutConflicts } from './forwards.js';
import { launchOf, launchSpec, planned } from './launch.js';
import { diskGrowth, prepareStart } from './start.js';
import type { StartReason, StopChange } from './types.js';

/** Runstates a VM cannot leave by itself; the only way forward is a fresh process. */
const STUCK_RUNSTATES = new Set(['restore-vm', 'internal-error', 'guest-panicked', 'io-error', 'colo']);

/** Plans a VM qvm starts: the one change (start, restart, live update, stop, save) that makes it match. */
export function planManaged(ctx: VmPlanning): void {
  const { spec, out } = ctx;
  const observed = ctx.observation.vms.get(spec.name)!;
  if (observed.state === 'unknown') {
    ctx.problem(
      `does not answer on its monitor${observed.pid ? ` (pid ${observed.pid})` : ''}: ${observed.error}. Left alone: qvm never starts a second QEMU on the same disk`,
    );
    return;
  }
  if (observed.state === 'stopped') {
    if (spec.state !== 'running') return;
    if (ctx.options.restartPolicy && observed.stale && spec.restart === 'never') {
      out.notes.push({ vm: spec.name, message: 'died (its QEMU exited); restart: never leaves it down' });
      return;
    }
    pushStart(ctx, observed.stale ? 'exited' : 'new', observed.stale ? { detail: observed.stale } : {});
    return;
  }
  const running = observed;
  if (spec.state === 'stopped' || (spec.state === 'saved' && running.runstate === 'shutdown')) {
    out.changes.push(stopChange(ctx, running, ctx.paths.qmp));
    return;
  }
  if (spec.state === 'saved') {
    out.changes.push({
      action: 'save',
      vm: spec.name,
      pid: running.pid!,
      socket: ctx.paths.qmp,
      tag: SAVED_STATE_TAG,
    });
    return;
  }
  if (running.runstate === 'shutdown') {
    if (ctx.options.restartPolicy && spec.restart !== 'always') {
      out.notes.push({
        vm: spec.name,
        message: `was powered off by its guest; restart: ${spec.restart} leaves it down (\`qvm apply\` starts it)`,
      });
      return;
    }
    pushStart(ctx, 'guest-powered-off', { replacesPid: running.pid! });
    return;
  }
  planRunning(ctx, running);
}

/** A running VM: restart when its command line must change (or it is stuck), else change what is live. */
function planRunning(ctx: VmPlanning, running: RunningVm): void {
  const { spec, observation, paths } = ctx;
  const runningArgs = (running.argv ?? []).slice(1);
  const current = launchOf(spec, launchSpec(spec, ctx.accel, [], running.disk), paths);
  const argsDiffer = !sameArgs(restartRelevantArgs(runningArgs), restartRelevantArgs(current.args));
  const stuck = STUCK_RUNSTATES.has(running.runstate) ? running.runstate : undefined;
  const refresh =
    spec.snapshot !== undefined && spec.ready !== undefined && ctx.options.refreshSnapshots === true;
  const growth = diskGrowth(ctx, running.disk);
  if (growth === null) return;
  if (!argsDiffer && !stuck && !refresh && !growth) {
    const update = forwardUpdate(
      spec,
      running,
      paths.qmp,
      NETDEV_ID,
      withoutConflicts(spec, observation, ctx.problem),
    );
    if (update) ctx.out.changes.push(update);
    return;
  }
  const prepared = prepareStart(ctx, running.disk);
  if (!prepared) return;
  const { diskFormat, ...steps } = prepared;
  const launch = launchOf(
    spec,
    launchSpec(spec, ctx.accel, spec.forwards, running.disk, steps.bootFrom),
    paths,
  );
  const live = forwardUpdate(spec, running, paths.qmp, NETDEV_ID, withoutConflicts(spec, observation));
  ctx.out.changes.push({
    action: 'restart',
    vm: spec.name,
    pid: running.pid!,
    fields: [
      ...(running.launch ? fieldChanges(running.launch.launch, launch.spec, ctx.manifest.dir) : []),
      ...(growth
        ? [{ field: 'disk size', from: formatSize(growth.fromBytes), to: formatSize(growth.toBytes) }]
        : []),
    ],
    ...(stuck ? { stuckIn: stuck } : {}),
    skipPowerOff: stuck !== undefined,
    ...(refresh ? { refreshSnapshot: true } : {}),
    argsBefore: runningArgs,
    stopTimeoutMs: spec.stopTimeoutMs,
    ...steps,
    launch,
    forwards: planned(spec.forwards),
    socket: paths.qmp,
    ...(live ? { liveForwards: live } : {}),
  });
}

/** A start of a fresh process, when the start's preparation allows one. */
function pushStart(
  ctx: VmPlanning,
  reason: StartReason,
  extra: { detail?: string; replacesPid?: number },
): void {
  const { spec, paths } = ctx;
  const disk = ctx.observation.vms.get(spec.name)?.disk;
  const prepared = prepareStart(ctx, disk);
  if (!prepared) return;
  const { diskFormat, ...steps } = prepared;
  const format = diskFormat ? { format: diskFormat } : undefined;
  const shownReason = steps.bootFrom?.kind === 'saved-state' ? 'resume' : reason;
  ctx.out.changes.push({
    action: 'start',
    vm: spec.name,
    reason: shownReason,
    recovery: shownReason === 'exited' || shownReason === 'guest-powered-off',
    ...extra,
    ...steps,
    launch: launchOf(spec, launchSpec(spec, ctx.accel, spec.forwards, format, steps.bootFrom), paths),
    forwards: planned(spec.forwards),
    socket: paths.qmp,
  });
}

/** A graceful stop of a running VM (quit at once when its guest already powered off). */
export function stopChange(ctx: VmPlanning, running: RunningVm, socket: string): StopChange {
  return {
    action: 'stop',
    vm: ctx.spec.name,
    reason: 'state-stopped',
    adopted: running.adopted,
    ...(running.pid !== undefined ? { pid: running.pid } : {}),
    socket,
    stopTimeoutMs: ctx.spec.stopTimeoutMs,
    alreadyPoweredOff: running.runstate === 'shutdown',
  };
}

function sameArgs(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
