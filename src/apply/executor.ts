/**
 * Carrying out a plan, from the plan alone. VMs are independent and go in parallel; one VM's steps run in
 * order. A failure on one VM is recorded with what was being done and QEMU's message, and the other VMs
 * carry on.
 *
 * What is guaranteed when something fails halfway: a VM that was started stays started; a disk that was
 * created stays (and is recorded as created by qvm); forwards already added stay added. The next apply
 * observes all that and plans only what is still missing.
 */
import { isQvmError, MonitorCommandError, VmActionError } from '../errors.js';
import type { DownloadProgress } from '../images/download.js';
import { formatHostfwd, formatHostfwdRemoval, type HostForward } from '../model/forward.js';
import { SAVED_STATE_TAG } from '../model/names.js';
import { formatDuration, formatSize } from '../model/units.js';
import { display } from '../plan/describe.js';
import { plainForward } from '../plan/launch.js';
import type {
  Plan,
  RestartChange,
  SaveChange,
  StartChange,
  StopChange,
  UpdateChange,
  VmChange,
} from '../plan/types.js';
import { savevmVerified } from '../qemu/savevm.js';
import { describeProbe } from '../ready/probe.js';
import type { Effects } from './effects.js';

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
  onProgress?: (event: ProgressEvent) => void;
  /** How many VMs change at once. */
  parallelism?: number;
}

type Step = (text: string) => void;

/** What a change is doing before its first step says more (for the failure message). */
const DOING = {
  start: 'starting',
  restart: 'restarting',
  update: 'updating',
  stop: 'stopping',
  save: 'saving',
};

/** Carries out every change of the plan; one result per change, in plan order. Never throws for a VM's failure. */
export async function applyPlan(
  plan: Plan,
  effects: Effects,
  options: ApplyOptions = {},
): Promise<VmResult[]> {
  // Changes others wait for go first, so a worker never waits on a change still in the queue.
  const awaited = new Set(plan.changes.flatMap((c) => ('after' in c ? (c.after ?? []) : [])));
  const queue = [...plan.changes].sort((a, b) => Number(awaited.has(b.vm)) - Number(awaited.has(a.vm)));
  const results: VmResult[] = [];
  const finished = new Map<string, Promise<VmResult>>();
  const worker = async () => {
    for (let change = queue.shift(); change; change = queue.shift()) {
      const after = 'after' in change ? (change.after ?? []) : [];
      const current = change;
      const run = (async () => {
        // A VM leaving the manifest frees the disk or port this change needs: wait until it has stopped.
        await Promise.all(after.map((vm) => finished.get(vm)));
        return applyChange(current, plan.baseDir, effects, options);
      })();
      finished.set(change.vm, run);
      results.push(await run);
    }
  };
  const parallelism = Math.max(1, options.parallelism ?? 16);
  await Promise.all(Array.from({ length: Math.min(parallelism, queue.length) }, worker));
  const order = new Map(plan.changes.map((c, i) => [c.vm, i]));
  return results.sort((a, b) => order.get(a.vm)! - order.get(b.vm)!);
}

async function applyChange(
  change: VmChange,
  baseDir: string,
  effects: Effects,
  options: ApplyOptions,
): Promise<VmResult> {
  const started = Date.now();
  const emit = options.onProgress ?? (() => {});
  let doing = DOING[change.action];
  const step: Step = (text) => {
    doing = text;
    emit({ type: 'step', vm: change.vm, step: text });
  };
  emit({ type: 'begin', vm: change.vm, action: change.action });
  try {
    const summary = await run(change, baseDir, effects, step);
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

function run(change: VmChange, baseDir: string, effects: Effects, step: Step): Promise<string> {
  switch (change.action) {
    case 'start':
      return start(change, baseDir, effects, step);
    case 'restart':
      return restart(change, baseDir, effects, step);
    case 'update':
      return update(change, effects, step);
    case 'stop':
      return stop(change, effects, step);
    case 'save':
      return save(change, effects, step);
    default:
      return assertNever(change);
  }
}

const STOP_SUMMARY = {
  'powered-off': 'stopped (guest powered off)',
  'quit-after-timeout': 'stopped (no power-off within the stop timeout; quit)',
  killed: 'stopped (killed: QEMU did not quit)',
  'already-gone': 'stopped (was already gone)',
} as const;

async function stop(change: StopChange, effects: Effects, step: Step): Promise<string> {
  await dropStray(change, effects, step);
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
  return STOP_SUMMARY[outcome];
}

/** The disk steps before a start: create, grow, drop a snapshot. */
async function prepareDisk(
  change: StartChange | RestartChange,
  baseDir: string,
  effects: Effects,
  step: Step,
) {
  let createDisk = change.createDisk;
  if (change.fetchImage) {
    const label = change.fetchImage.label;
    step(`downloading ${label}`);
    const image = await effects.fetchImage(
      change.fetchImage,
      throttled((p) => step(`downloading ${label}: ${downloadText(p)}`)),
    );
    // The planner could not name the backing file before the download: the cache decides where it lives.
    if (createDisk) createDisk = { ...createDisk, backing: image.path, backingFormat: image.format };
  }
  if (createDisk) {
    step(`creating ${display(baseDir, createDisk.path)}`);
    await effects.createDisk(change.vm, createDisk, change.launch.spec.disk?.format ?? 'qcow2');
  }
  for (const d of change.createDataDisks ?? []) {
    step(`creating data disk ${display(baseDir, d.path)}`);
    await effects.createDisk(change.vm, d, d.format, 'data');
  }
  for (const g of change.growDataDisks ?? []) {
    step(`growing ${display(baseDir, g.path)} to ${formatSize(g.toBytes)}`);
    await effects.growDisk(g.path, g.format, g.toBytes);
  }
  if (change.resizeDisk) {
    step(`growing ${display(baseDir, change.resizeDisk.path)} to ${formatSize(change.resizeDisk.toBytes)}`);
    await effects.growDisk(
      change.resizeDisk.path,
      change.launch.spec.disk?.format ?? 'qcow2',
      change.resizeDisk.toBytes,
    );
  }
  for (const drop of change.dropSnapshots ?? []) {
    step(drop.tag === SAVED_STATE_TAG ? 'dropping the saved state' : `deleting snapshot ${drop.tag}`);
    await effects.deleteSnapshotOffline(drop.disk, drop.tag);
  }
  if (change.forgetSavedState) await effects.forgetSavedState(change.vm);
}

async function start(
  change: StartChange | RestartChange,
  baseDir: string,
  effects: Effects,
  step: Step,
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
  await prepareDisk(change, baseDir, effects, step);
  const from = change.bootFrom;
  step(
    from
      ? `starting QEMU from ${from.kind === 'saved-state' ? 'the saved state' : `snapshot ${from.tag}`}`
      : 'starting QEMU',
  );
  const pid = await effects.launch(change.vm, change.launch, from);
  const notes = [`started (pid ${pid})`];
  if (from?.kind === 'saved-state') {
    // The hibernation image has served: drop it so a later cold start does not resume stale state.
    step('dropping the used saved state');
    await effects.hmp(change.socket, `delvm ${SAVED_STATE_TAG}`);
    notes.push('resumed from the saved state');
  } else if (from) {
    notes.push(`from snapshot ${from.tag}`);
  }
  if (from && change.shareAgent) {
    // Saved with the shares unmounted (QEMU refuses otherwise): mount them again.
    step('mounting the shared folders (guest agent)');
    await effects.guestShares(change.shareAgent, 'mount');
  }
  if (change.ready) {
    step(`waiting for ready (${describeProbe(change.ready)})`);
    const { elapsedMs, detail } = await effects.waitReady(change.vm, change.ready, change.socket, (d) =>
      step(`waiting for ready: ${d}`),
    );
    notes.push(`ready in ${formatDuration(elapsedMs)}`);
    // A guest that is up but whose cloud-init failed is ready to inspect: say so with the result.
    const failedInit = /cloud-init finished: .*/.exec(detail ?? '')?.[0];
    if (failedInit) notes.push(failedInit);
  }
  if (change.syncClock) {
    const how = 'agent' in change.syncClock ? 'guest agent' : 'ssh';
    step(`setting the guest clock (${how})`);
    notes.push(
      (await effects.syncClock(change.syncClock))
        ? 'guest clock set'
        : 'guest clock not set (sudo date refused)',
    );
  }
  if (change.saveSnapshot) {
    const tag = change.saveSnapshot;
    await withSharesUnmounted(change.shareAgent, effects, step, async () => {
      step(`saving snapshot ${tag}`);
      await savevmVerified(
        (command, timeoutMs) => effects.hmp(change.socket, command, timeoutMs),
        change.socket,
        tag,
      );
    });
    effects.recordSnapshot(change.vm, change.saveSnapshot, change.launch.spec);
    notes.push(`saved snapshot ${change.saveSnapshot}`);
  }
  return notes.join(', ');
}

async function restart(
  change: RestartChange,
  baseDir: string,
  effects: Effects,
  step: Step,
): Promise<string> {
  step('stopping');
  await effects.stop({
    vm: change.vm,
    socket: change.socket,
    pid: change.pid,
    adopted: false,
    stopTimeoutMs: change.stopTimeoutMs,
    alreadyPoweredOff: change.skipPowerOff,
    onStep: step,
  });
  return `restarted: ${await start(change, baseDir, effects, step)}`;
}

/** One live monitor command: what to send, and how to name it in progress and in a failure. */
interface LiveCommand<T> {
  item: T;
  /** The command line sent to QEMU. */
  command: string;
  /** The rule it is about, without the netdev: how failures name it. */
  rule: string;
  progress: string;
}

/** Runs each command in turn, collecting QEMU's refusals instead of stopping at the first; returns what worked. */
async function eachCommand<T>(
  commands: LiveCommand<T>[],
  effects: Effects,
  socket: string,
  step: Step,
  failures: string[],
): Promise<T[]> {
  const done: T[] = [];
  for (const c of commands) {
    step(c.progress);
    try {
      await effects.hmp(socket, c.command);
      done.push(c.item);
    } catch (error) {
      if (!(error instanceof MonitorCommandError)) throw error;
      failures.push(`${c.rule}: ${error.qemuMessage}`);
    }
  }
  return done;
}

async function update(change: UpdateChange, effects: Effects, step: Step): Promise<string> {
  await dropStray(change, effects, step);
  const failures: string[] = [];
  const netdev = change.netdev ? `${change.netdev} ` : '';
  // Removals first: a forward whose guest side changed is removed and added back on the same host port.
  const removed: HostForward[] = await eachCommand(
    change.remove.map((f) => ({
      item: f,
      command: `hostfwd_remove ${netdev}${formatHostfwdRemoval(f)}`,
      rule: `hostfwd_remove ${formatHostfwdRemoval(f)}`,
      progress: `removing forward ${formatHostfwdRemoval(f)}`,
    })),
    effects,
    change.socket,
    step,
    failures,
  );
  // Each forward is tried even when another fails, so one taken port does not hold back the rest.
  const added: HostForward[] = await eachCommand(
    change.add.map((f) => ({
      item: f,
      command: `hostfwd_add ${netdev}${formatHostfwd(f)}`,
      rule: `hostfwd_add ${formatHostfwd(f)}`,
      progress: `adding forward ${formatHostfwd(f)}`,
    })),
    effects,
    change.socket,
    step,
    failures,
  );
  if (!change.adopted)
    effects.rememberLiveForwards(change.vm, added.map(plainForward), removed.map(plainForward));
  if (change.resume) {
    step('resuming');
    await effects.hmp(change.socket, 'cont');
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
    ...(change.dropStraySnapshot ? [`left-over ${change.dropStraySnapshot} deleted`] : []),
  ];
  return `updated live: ${parts.join(', ')}`;
}

/** A running VM's left-over hibernation tag is deleted (never loaded), and a stale record forgotten. */
async function dropStray(change: StopChange | UpdateChange, effects: Effects, step: Step): Promise<void> {
  if (change.dropStraySnapshot) {
    step(`deleting the left-over saved state ${change.dropStraySnapshot}`);
    await effects.hmp(change.socket, `delvm ${change.dropStraySnapshot}`, 60_000);
  }
  if (change.forgetSavedState) effects.forgetSavedState(change.vm);
}

async function save(change: SaveChange, effects: Effects, step: Step): Promise<string> {
  if (change.shareAgent) {
    step('unmounting the shared folders (guest agent)');
    await effects.guestShares(change.shareAgent, 'unmount');
  }
  step(`saving state (savevm ${change.tag})`);
  // Never end the VM unless its state is really on disk.
  try {
    await savevmVerified(
      (command, timeoutMs) => effects.hmp(change.socket, command, timeoutMs),
      change.socket,
      change.tag,
      '; the VM was left running',
    );
  } catch (error) {
    if (change.shareAgent) await effects.guestShares(change.shareAgent, 'mount').catch(() => {});
    throw error;
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
  // Recorded after the process ended and before anything else: only this record lets a start resume the state.
  step('recording the saved state');
  effects.recordSavedState(change.vm, {
    tag: change.tag,
    disk: change.disk,
    ...(change.launch ? { launch: change.launch } : {}),
  });
  return `saved (snapshot ${change.tag}) and stopped`;
}

/** Runs a save with the guest's 9p shares unmounted, and mounts them again whatever happened. */
export async function withSharesUnmounted(
  agent: string | undefined,
  effects: Effects,
  step: Step,
  save: () => Promise<void>,
): Promise<void> {
  if (!agent) return save();
  step('unmounting the shared folders (guest agent)');
  await effects.guestShares(agent, 'unmount');
  try {
    await save();
  } finally {
    step('mounting the shared folders (guest agent)');
    await effects.guestShares(agent, 'mount');
  }
}

/** Download progress in words: `120M of 346M, 35M/s, 6s left`. */
export function downloadText(
  p: DownloadProgress,
  nowMs = Date.now(),
  startedMs = p.startedMs ?? nowMs,
): string {
  const seconds = Math.max(0.001, (nowMs - startedMs) / 1000);
  const rate = (p.receivedBytes - p.resumedFrom) / seconds;
  const mib = (n: number) => `${Math.round(n / 2 ** 20)}M`;
  const parts = [
    p.totalBytes ? `${mib(p.receivedBytes)} of ${mib(p.totalBytes)}` : mib(p.receivedBytes),
    `${mib(rate)}/s`,
  ];
  if (p.totalBytes && rate > 0)
    parts.push(`${formatDuration(((p.totalBytes - p.receivedBytes) / rate) * 1000)} left`);
  return parts.join(', ');
}

/** A progress callback that passes on at most one report a second (a download reports every chunk). */
function throttled(report: (p: DownloadProgress) => void): (p: DownloadProgress) => void {
  let last = 0;
  let startedMs: number | undefined;
  return (p) => {
    const now = Date.now();
    startedMs ??= now;
    if (now - last < 1000 && p.receivedBytes !== p.totalBytes) return;
    last = now;
    report({ ...p, startedMs });
  };
}

function assertNever(value: never): never {
  throw new Error(`bug: unhandled change ${JSON.stringify(value)}`);
}
