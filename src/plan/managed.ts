/**
 * Planning a VM qvm starts itself: from what its process is doing (none, running, paused, powered off, stuck,
 * paused on a full disk) and what the manifest wants, the one change that gets it there.
 */
import { SAVED_STATE_TAG } from '../model/names.js';
import { formatSize } from '../model/units.js';
import type { RunningVm, StoppedVm } from '../observe/types.js';
import { NETDEV_ID, restartRelevantArgs } from '../qemu/argv.js';
import type { VmPlanning } from './context.js';
import { runningDataDiskGrowth } from './data-disks.js';
import { display } from './describe.js';
import { fieldChanges } from './fields.js';
import { forwardUpdate, withoutConflicts } from './forwards.js';
import { guestSteps } from './guest.js';
import { launchOf, launchSpec, planned } from './launch.js';
import { diskGrowth, prepareStart } from './start.js';
import type { StartReason, StopChange, UpdateChange } from './types.js';

/**
 * Runstates a VM cannot leave by itself; the only way forward is a fresh process. (io-error is not one: the
 * guest's memory and its pending write are still there, and `cont` carries on once the disk has room.)
 */
const STUCK_RUNSTATES = new Set(['restore-vm', 'internal-error', 'guest-panicked', 'colo']);

/**
 * How much free space a full disk's filesystem needs before qvm resumes the VM paused on it: room for the disk
 * to grow to its full size, or at least this much.
 */
const ROOM_TO_RESUME_BYTES = 256 * 2 ** 20;

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
    planStopped(ctx, observed);
    return;
  }
  const running = observed;
  const stray = strayStep(running);
  if (spec.state === 'stopped' || (spec.state === 'saved' && running.runstate === 'shutdown')) {
    out.changes.push({ ...stopChange(ctx, running, ctx.paths.qmp), ...stray });
    return;
  }
  if (spec.state === 'saved') {
    out.changes.push({
      action: 'save',
      vm: spec.name,
      pid: running.pid!,
      socket: ctx.paths.qmp,
      tag: SAVED_STATE_TAG,
      disk: spec.disk!.path,
      ...(running.launch ? { launch: running.launch.launch } : {}),
      ...guestSteps(ctx),
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
    pushStart(ctx, running, 'guest-powered-off', { replacesPid: running.pid! });
    return;
  }
  if (running.runstate === 'io-error') {
    planIoError(ctx, running, stray);
    return;
  }
  planRunning(ctx, running, stray);
}

/** A VM with no process: start it when the manifest wants it running (and the restart policy allows). */
function planStopped(ctx: VmPlanning, observed: StoppedVm): void {
  const { spec } = ctx;
  if (observed.elsewhere) {
    ctx.problem(
      `runs under another runtime folder, ${observed.elsewhere.root} (QEMU pid ${observed.elsewhere.pid}), not this qvm's ${ctx.observation.host.runtimeRoot}: it was started with another QVM_RUNTIME_DIR. Run qvm with QVM_RUNTIME_DIR=${observed.elsewhere.root} to manage it; qvm never starts a second QEMU for it`,
    );
    return;
  }
  if (spec.state !== 'running') return;
  if (ctx.options.restartPolicy && observed.stale && spec.restart === 'never') {
    ctx.out.notes.push({ vm: spec.name, message: 'died (its QEMU exited); restart: never leaves it down' });
    return;
  }
  pushStart(
    ctx,
    observed,
    observed.stale ? 'exited' : 'new',
    observed.stale ? { detail: observed.stale } : {},
  );
}

/** A running VM's leftover hibernation tag and stale record, removed with whatever change the VM gets. */
function strayStep(running: RunningVm): { dropStraySnapshot?: string; forgetSavedState?: boolean } {
  const tagged =
    running.snapshots.includes(SAVED_STATE_TAG) || running.disk?.snapshots?.includes(SAVED_STATE_TAG);
  return {
    ...(tagged ? { dropStraySnapshot: SAVED_STATE_TAG } : {}),
    ...(tagged || running.savedState ? { forgetSavedState: true } : {}),
  };
}

/**
 * A VM QEMU paused on an I/O error (a full disk): restarting would lose the guest's memory and the write it
 * waits on, and fail again on the same full disk. It is resumed once its disk's filesystem has room again,
 * else reported and left paused.
 */
function planIoError(ctx: VmPlanning, running: RunningVm, stray: ReturnType<typeof strayStep>): void {
  const error = running.ioError;
  const file = error?.file ?? running.disk?.path ?? 'its disk';
  const shown = display(ctx.manifest.dir, file);
  const free = running.disk?.freeBytes;
  const growth = Math.max(
    0,
    (running.disk?.virtualSizeBytes ?? Infinity) - (running.disk?.allocatedBytes ?? 0),
  );
  if (error?.status === 'nospace' && free !== undefined && free >= Math.min(ROOM_TO_RESUME_BYTES, growth)) {
    ctx.out.changes.push(
      liveUpdate(ctx, { resume: true, resumeReason: `${shown} has room again`, ...stray }),
    );
    return;
  }
  const what =
    error?.status === 'nospace' ? 'no space left on device' : `I/O error (${error?.status ?? 'unknown'})`;
  ctx.problem(
    `is paused: ${what} on ${shown}. qvm leaves it paused (a restart would lose the guest's memory and its pending write): free space on that disk's filesystem, then apply again or run \`qvm monitor ${ctx.spec.name} cont\``,
  );
}

/** An update with only these steps, no forward changes. */
function liveUpdate(ctx: VmPlanning, steps: Partial<UpdateChange>): UpdateChange {
  return {
    action: 'update',
    vm: ctx.spec.name,
    adopted: false,
    socket: ctx.paths.qmp,
    netdev: NETDEV_ID,
    add: [],
    remove: [],
    resume: false,
    ...steps,
  };
}

/** A running VM: restart when its command line must change (or it is stuck), else change what is live. */
function planRunning(ctx: VmPlanning, running: RunningVm, stray: ReturnType<typeof strayStep>): void {
  const { spec, observation, paths } = ctx;
  const runningArgs = (running.argv ?? []).slice(1);
  const current = launchOf(spec, launchSpec(spec, ctx.accel, [], running.disk), paths);
  const argsDiffer = !sameArgs(restartRelevantArgs(runningArgs), restartRelevantArgs(current.args));
  const stuck = STUCK_RUNSTATES.has(running.runstate) ? running.runstate : undefined;
  const refresh =
    spec.snapshot !== undefined && spec.ready !== undefined && ctx.options.refreshSnapshots === true;
  const growth = diskGrowth(ctx, running.disk);
  if (growth === null) return;
  const dataGrowth = runningDataDiskGrowth(ctx, running.dataDisks);
  if (!argsDiffer && !stuck && !refresh && !growth && dataGrowth.length === 0) {
    const forwards = withoutConflicts(spec, observation, ctx.problem);
    const update = forwardUpdate(spec, running, paths.qmp, NETDEV_ID, forwards);
    if (update || stray.forgetSavedState)
      ctx.out.changes.push({ ...(update ?? liveUpdate(ctx, {})), ...stray });
    return;
  }
  const prepared = prepareStart(ctx, running);
  if (!prepared) return;
  const { diskFormat: _format, ...steps } = prepared;
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
      ...dataGrowth.map((g) => ({
        field: `size of ${display(ctx.manifest.dir, g.path)}`,
        from: formatSize(g.fromBytes),
        to: formatSize(g.toBytes),
      })),
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
  observed: StoppedVm | RunningVm,
  reason: StartReason,
  extra: { detail?: string; replacesPid?: number },
): void {
  const { spec, paths } = ctx;
  const prepared = prepareStart(ctx, observed);
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
