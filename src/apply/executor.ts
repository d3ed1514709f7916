/**
 * Carrying out a plan. VMs are independent and go in parallel; one VM's steps run in order. A failure on one
 * VM is recorded with what was being done and QEMU's message, and the other VMs carry on.
 *
 * What is guaranteed when something fails halfway: a VM that was started stays started; a disk that was
 * created stays (and is recorded as created by qvm); forwards already added stay added. The next apply
 * observes all that and plans only what is still missing.
 */
import { isQvmError, MonitorCommandError, VmActionError } from '../errors.js';
import type { Manifest, VmSpec } from '../manifest/types.js';
import { formatHostfwd, formatHostfwdRemoval, type HostForward } from '../model/forward.js';
import { formatDuration, formatSize } from '../model/units.js';
import { display } from '../plan/plan.js';
import type { Plan, RestartChange, SaveChange, StartChange, UpdateChange, VmChange } from '../plan/types.js';
import { SAVED_STATE_TAG } from '../plan/types.js';
import { describeProbe } from '../ready/probe.js';
import { type Effects, hasSnapshot } from './effects.js';

export type ProgressEvent =
  | { type: 'begin'; vm: string; action: VmChange['action'] }
  | { type: 'step'; vm: string; step: string }
  | { type: 'done'; vm: string; summary: string; elapsedMs: number }
  | { type: 'failed'; vm: string; error: VmActionError; elapsedMs: number };

export interface VmResult {
  vm: string;
  ok: boolean;
  error?: VmActionError;
  elapsedMs: number;
}

export interface ApplyOptions {
  effects: Effects;
  onProgress?: (event: ProgressEvent) => void;
  /** How many VMs change at once. */
  parallelism?: number;
}

export async function applyPlan(plan: Plan, manifest: Manifest, options: ApplyOptions): Promise<VmResult[]> {
  const specs = new Map(manifest.vms.map((v) => [v.name, v]));
  const queue = [...plan.changes];
  const results: VmResult[] = [];
  const worker = async () => {
    for (let change = queue.shift(); change; change = queue.shift()) {
      results.push(await applyChange(change, specs.get(change.vm), plan.baseDir, options));
    }
  };
  const parallelism = Math.max(1, options.parallelism ?? 16);
  await Promise.all(Array.from({ length: Math.min(parallelism, queue.length) }, worker));
  const order = new Map(plan.changes.map((c, i) => [c.vm, i]));
  return results.sort((a, b) => order.get(a.vm)! - order.get(b.vm)!);
}

async function applyChange(
  change: VmChange,
  spec: VmSpec | undefined,
  baseDir: string,
  options: ApplyOptions,
): Promise<VmResult> {
  const started = Date.now();
  const emit = options.onProgress ?? (() => {});
  const { effects } = options;
  let doing = describeStart(change);
  const step = (text: string) => {
    doing = text;
    emit({ type: 'step', vm: change.vm, step: text });
  };
  emit({ type: 'begin', vm: change.vm, action: change.action });
  try {
    let summary: string;
    switch (change.action) {
      case 'start':
        summary = await start(change, requireSpec(spec, change.vm), baseDir, effects, step);
        break;
      case 'restart':
        summary = await restart(change, requireSpec(spec, change.vm), baseDir, effects, step);
        break;
      case 'update':
        summary = await update(change, effects, step);
        break;
      case 'stop': {
        step(change.alreadyPoweredOff ? 'quitting' : 'stopping');
        const outcome = await effects.stop({
          vm: change.vm,
          socket: change.socket,
          ...(change.pid !== undefined ? { pid: change.pid } : {}),
          adopted: change.adopted,
          stopTimeoutMs: change.stopTimeoutMs,
          alreadyPoweredOff: change.alreadyPoweredOff,
          onStep: step,
        });
        summary = {
          'powered-off': 'stopped (guest powered off)',
          'quit-after-timeout': `stopped (no power-off within the stop timeout; quit)`,
          killed: 'stopped (killed: QEMU did not quit)',
          'already-gone': 'stopped (was already gone)',
        }[outcome];
        break;
      }
      case 'save':
        summary = await save(change, effects, step);
        break;
      default:
        return assertNever(change);
    }
    const elapsedMs = Date.now() - started;
    emit({ type: 'done', vm: change.vm, summary, elapsedMs });
    return { vm: change.vm, ok: true, elapsedMs };
  } catch (error) {
    if (!isQvmError(error)) throw error;
    const wrapped = error instanceof VmActionError ? error : new VmActionError(change.vm, doing, error);
    const elapsedMs = Date.now() - started;
    emit({ type: 'failed', vm: change.vm, error: wrapped, elapsedMs });
    return { vm: change.vm, ok: false, error: wrapped, elapsedMs };
  }
}

function describeStart(change: VmChange): string {
  return { start: 'starting', restart: 'restarting', update: 'updating', stop: 'stopping', save: 'saving' }[
    change.action
  ];
}

async function start(
  change: StartChange | RestartChange,
  spec: VmSpec,
  baseDir: string,
  effects: Effects,
  step: (s: string) => void,
): Promise<string> {
  if (change.action === 'start' && change.replacesPid !== undefined) {
    step('quitting the powered-off QEMU');
    await effects.stop({
      vm: change.vm,
      socket: change.socket,
      pid: change.replacesPid,
      adopted: false,
      stopTimeoutMs: 0,
      alreadyPoweredOff: true,
    });
  }
  if (change.createDisk) {
    step(`creating ${display({ dir: baseDir }, change.createDisk.path)}`);
    await effects.createDisk(change.vm, change.createDisk);
  }
  if (change.resizeDisk) {
    step(
      `growing ${display({ dir: baseDir }, change.resizeDisk.path)} to ${formatSize(change.resizeDisk.toBytes)}`,
    );
    await effects.growDisk(change.resizeDisk.path, change.resizeDisk.toBytes);
  }
  if (change.dropSnapshot && spec.disk) {
    step(`deleting snapshot ${change.dropSnapshot}`);
    await effects.deleteSnapshotOffline(spec.disk.path, change.dropSnapshot);
  }
  step(
    change.bootFrom
      ? `starting QEMU from ${change.bootFrom.kind === 'saved-state' ? 'the saved state' : `snapshot ${change.bootFrom.tag}`}`
      : 'starting QEMU',
  );
  const args = change.action === 'start' ? change.args : change.argsAfter;
  const pid = await effects.launch(spec, args, change.bootFrom?.tag);
  const notes = [`started (pid ${pid})`];
  if (change.bootFrom?.kind === 'saved-state') {
    // The hibernation image has served: drop it so a later cold start does not resume stale state.
    step('dropping the used saved state');
    await effects.monitorCommand(change.socket, `delvm ${SAVED_STATE_TAG}`);
    notes.push('resumed from the saved state');
  } else if (change.bootFrom) {
    notes.push(`from snapshot ${change.bootFrom.tag}`);
  }
  if (change.ready) {
    const what = describeProbe(change.ready);
    step(`waiting for ready (${what})`);
    const { elapsedMs } = await effects.waitReady(change.vm, change.ready, change.socket, (detail) =>
      step(`waiting for ready: ${detail}`),
    );
    notes.push(`ready in ${formatDuration(elapsedMs)}`);
  }
  if (change.saveSnapshot) {
    step(`saving snapshot ${change.saveSnapshot}`);
    await effects.monitorCommand(change.socket, `savevm ${change.saveSnapshot}`, 300_000);
    if (!(await hasSnapshot(effects, change.socket, change.saveSnapshot))) {
      throw new MonitorCommandError(
        `savevm ${change.saveSnapshot}`,
        `snapshot ${change.saveSnapshot} is not on the disk after savevm`,
        change.socket,
      );
    }
    notes.push(`saved snapshot ${change.saveSnapshot}`);
  }
  return notes.join(', ');
}

async function restart(
  change: RestartChange,
  spec: VmSpec,
  baseDir: string,
  effects: Effects,
  step: (s: string) => void,
): Promise<string> {
  step('stopping');
  await effects.stop({
    vm: change.vm,
    socket: change.socket,
    pid: change.pid,
    adopted: false,
    stopTimeoutMs: change.stopTimeoutMs,
    // A VM stuck in internal-error or restore-vm runs no guest that could answer the power button.
    alreadyPoweredOff: change.stuckIn !== undefined,
    onStep: step,
  });
  const started = await start(change, spec, baseDir, effects, step);
  return `restarted: ${started}`;
}

async function update(change: UpdateChange, effects: Effects, step: (s: string) => void): Promise<string> {
  const failures: string[] = [];
  const removed: HostForward[] = [];
  const added: HostForward[] = [];
  const netdev = change.netdev ? `${change.netdev} ` : '';
  // Removals first: a forward whose guest side changed is removed and added back on the same host port.
  for (const forward of change.remove) {
    step(`removing forward ${formatHostfwdRemoval(forward)}`);
    try {
      await effects.monitorCommand(change.socket, `hostfwd_remove ${netdev}${formatHostfwdRemoval(forward)}`);
      removed.push(forward);
    } catch (error) {
      if (!(error instanceof MonitorCommandError)) throw error;
      failures.push(`hostfwd_remove ${formatHostfwdRemoval(forward)}: ${error.qemuMessage}`);
    }
  }
  // Each forward is tried even when another fails, so one taken port does not hold back the rest.
  for (const forward of change.add) {
    step(`adding forward ${formatHostfwd(forward)}`);
    try {
      await effects.monitorCommand(change.socket, `hostfwd_add ${netdev}${formatHostfwd(forward)}`);
      added.push(forward);
    } catch (error) {
      if (!(error instanceof MonitorCommandError)) throw error;
      failures.push(`hostfwd_add ${formatHostfwd(forward)}: ${error.qemuMessage}`);
    }
  }
  if (!change.adopted) effects.rememberLiveForwards(change.vm, added, removed);
  if (change.resume) {
    step('resuming');
    await effects.monitorCommand(change.socket, 'cont');
  }
  if (failures.length > 0) {
    throw new VmActionError(
      change.vm,
      'updating forwards',
      new MonitorCommandError('forwards', failures.join('; '), change.socket),
    );
  }
  const parts = [
    ...(added.length ? [`${added.length} forward${added.length === 1 ? '' : 's'} added`] : []),
    ...(removed.length ? [`${removed.length} removed`] : []),
    ...(change.resume ? ['resumed'] : []),
  ];
  return `updated live: ${parts.join(', ')}`;
}

async function save(change: SaveChange, effects: Effects, step: (s: string) => void): Promise<string> {
  step(`saving state (savevm ${change.tag})`);
  // savevm writes RAM into the disk: allow it minutes, not the usual monitor deadline.
  await effects.monitorCommand(change.socket, `savevm ${change.tag}`, 300_000);
  // Never end the VM unless its state is really on disk.
  if (!(await hasSnapshot(effects, change.socket, change.tag))) {
    throw new MonitorCommandError(
      `savevm ${change.tag}`,
      `snapshot ${change.tag} is not on the disk after savevm; the VM was left running`,
      change.socket,
    );
  }
  step('quitting');
  await effects.stop({
    vm: change.vm,
    socket: change.socket,
    pid: change.pid,
    adopted: false,
    stopTimeoutMs: 0,
    alreadyPoweredOff: true,
  });
  return `saved (snapshot ${change.tag}) and stopped`;
}

function requireSpec(spec: VmSpec | undefined, vm: string): VmSpec {
  if (!spec) throw new Error(`bug: no spec for ${vm}`);
  return spec;
}

function assertNever(value: never): never {
  throw new Error(`bug: unhandled change ${JSON.stringify(value)}`);
}
