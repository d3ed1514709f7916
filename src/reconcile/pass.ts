/**
 * One reconcile pass, the same for `qvm apply`, every pass of `qvm watch` and `qvm destroy`: load the
 * manifest, take the namespace's lock, observe, plan, pick what to apply, apply, and release the lock.
 * Observing and planning happen under the lock, so what another qvm changed while this one waited is seen.
 */
import type { Effects } from '../apply/effects.js';
import type { ProgressEvent, VmResult } from '../apply/executor.js';
import { prepareGuests } from '../guest/prepare.js';
import { loadManifest } from '../manifest/manifest.js';
import type { Manifest } from '../manifest/types.js';
import { observe } from '../observe/observe.js';
import type { Observation } from '../observe/types.js';
import { plan as makePlan, type PlanOptions } from '../plan/plan.js';
import type { Plan } from '../plan/types.js';
import { manifestLoadOptions } from '../runtime/file-store.js';
import { acquireLock, type LockHolder, lockToken } from '../runtime/lock.js';
import { capSerialLog } from '../runtime/logs.js';
import { checkNamespace, type Namespace, namespaceFor, vmPaths } from '../runtime/paths.js';

/** A loaded manifest and the runtime namespace its VMs live in. */
export interface Context {
  manifest: Manifest;
  namespace: Namespace;
}

/**
 * Loads and checks the manifest (throws ManifestError), and finds its namespace, whose folders are checked
 * before anything in them is read: a folder another user owns or can write is refused (RuntimeDirError).
 */
export async function loadContext(source: string): Promise<Context> {
  const manifest = await loadManifest(source, manifestLoadOptions());
  const namespace = namespaceFor(source);
  checkNamespace(namespace);
  return { manifest: await prepareGuests(manifest, namespace), namespace };
}

export interface PassRequest {
  /** The manifest file or folder. */
  source: string;
  /** What the lock tells a waiting qvm this one is doing: apply, watch, destroy. */
  command: string;
  /** Wait for the lock when another qvm holds it; without, fail at once with LockBusyError. */
  wait: boolean;
  /** Told once, with the holder, when the lock is busy and this pass waits. */
  onLockWait?: (holder: LockHolder | undefined) => void;
  /** Aborts waiting for the lock and for readiness. */
  signal?: AbortSignal;
  /** Deadline for each VM's monitor while observing. */
  timeoutMs: number;
  /** The plan's options; a function when they depend on the manifest (destroy checks the VMs named). */
  planOptions: Omit<PlanOptions, 'namespace'> | ((context: Context) => Omit<PlanOptions, 'namespace'>);
  /** Plan only: nothing is applied and the lock is not taken. */
  dryRun?: boolean;
  /**
   * Take the lock only when there is something to do: observe and plan without it first, and when the plan
   * is empty and no qvm took or held the lock meanwhile (runtime/lock.ts's lockToken), that plan stands.
   * Otherwise take the lock; the plan is carried out as it is when no qvm held the lock since the look,
   * else made again under the lock. A no-op apply then starts no flock(1) child.
   */
  lockOnlyForChanges?: boolean;
  /** Told the whole plan, before anything is applied; a promise it returns is waited for. */
  onPlan?: (plan: Plan, context: Context) => unknown;
  /** Picks what of the plan to apply (watch: --live-only and back-off). Default: everything. */
  select?: (plan: Plan) => Plan;
  onProgress?: (event: ProgressEvent) => void;
  /** Work after applying, still under the lock (destroy removes runtime files and disks). */
  afterApply?: (context: Context, plan: Plan, results: VmResult[]) => Promise<void> | void;
  /** The effects to apply with; real QEMU unless a test says otherwise. */
  effects?: (namespace: Namespace) => Effects;
  /** How the VMs are observed; the real world unless a test says otherwise. */
  observer?: typeof observe;
}

export interface PassResult extends Context {
  observation: Observation;
  /** Everything the planner found. */
  plan: Plan;
  /** What was applied (what `select` kept); empty for a dry run. */
  applied: Plan;
  results: VmResult[];
}

/**
 * Carries out the changes. The executor and the effects (the process supervisor, qemu-img, downloads) are
 * loaded here, so a pass with nothing to do (plan, a no-op apply, most watch passes) never loads them.
 */
async function applyChanges(applied: Plan, context: Context, request: PassRequest): Promise<VmResult[]> {
  const { applyPlan } = await import('../apply/executor.js');
  const makeEffects =
    request.effects ??
    (async (ns: Namespace) =>
      (await import('../apply/effects.js')).realEffects(ns, { signal: request.signal }));
  const effects = await makeEffects(context.namespace);
  return applyPlan(applied, effects, request.onProgress ? { onProgress: request.onProgress } : {});
}

/** Runs one pass. Throws what loading, locking or observing throws; a VM's failure is in `results`. */
export async function runPass(request: PassRequest): Promise<PassResult> {
  const context = await loadContext(request.source);
  const options =
    typeof request.planOptions === 'function' ? request.planOptions(context) : request.planOptions;
  // The look without the lock (lockOnlyForChanges), and the lock token it was taken under.
  let looked: Awaited<ReturnType<typeof observeAndPlan>> | undefined;
  let tokenBefore: string | undefined;
  if (request.lockOnlyForChanges && !request.dryRun) {
    tokenBefore = lockToken(context.namespace);
    if (tokenBefore !== undefined) {
      looked = await observeAndPlan(context, options, request);
      if (looked.applied.changes.length === 0 && lockToken(context.namespace) === tokenBefore) {
        const { observation, plan, applied } = looked;
        await request.onPlan?.(plan, context);
        await request.afterApply?.(context, applied, []);
        return { ...context, observation, plan, applied, results: [] };
      }
    }
  }
  const lock = request.dryRun
    ? undefined
    : await acquireLock(context.namespace, request.command, {
        wait: request.wait,
        ...(request.onLockWait ? { onWait: request.onLockWait } : {}),
        ...(request.signal ? { signal: request.signal } : {}),
      });
  try {
    // The look stands when no qvm held the lock between it and now; else look again, under the lock.
    const { observation, plan, applied } =
      looked && lock && lock.tokenBefore === tokenBefore
        ? looked
        : await observeAndPlan(context, options, request);
    await request.onPlan?.(plan, context);
    const results = applied.changes.length > 0 ? await applyChanges(applied, context, request) : [];
    if (!request.dryRun) await request.afterApply?.(context, applied, results);
    return { ...context, observation, plan, applied, results };
  } finally {
    await lock?.release();
  }
}

/** Observes the VMs, caps their serial logs, and plans; `applied` is what the pass would carry out. */
async function observeAndPlan(
  context: Context,
  options: Omit<PlanOptions, 'namespace'>,
  request: PassRequest,
): Promise<{ observation: Observation; plan: Plan; applied: Plan }> {
  const observation = await (request.observer ?? observe)(context.manifest, context.namespace, {
    timeoutMs: request.timeoutMs,
  });
  for (const vm of [...context.manifest.vms.map((v) => v.name), ...observation.orphans.map((o) => o.name)]) {
    if (!context.manifest.vms.find((v) => v.name === vm)?.monitor)
      capSerialLog(vmPaths(context.namespace, vm));
  }
  const plan = makePlan(context.manifest, observation, { ...options, namespace: context.namespace });
  const applied = request.dryRun ? { ...plan, changes: [] } : (request.select ?? ((p: Plan) => p))(plan);
  return { observation, plan, applied };
}
