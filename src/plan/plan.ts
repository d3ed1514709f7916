/**
 * The planner: a pure function of the desired state (the manifest), the observed state and the options.
 * No I/O, no clock; VMs in manifest order, then VMs of the namespace the manifest no longer lists, by name.
 */
import { DEFAULTS, type Manifest } from '../manifest/types.js';
import type { Observation, ObservedVm, RunningVm } from '../observe/types.js';
import { vmPaths } from '../runtime/paths.js';
import { planAdopted } from './adopted.js';
import { emptyOutcome, type Outcome, type PlanOptions, problemReporter, type VmPlanning } from './context.js';
import { planManaged } from './managed.js';
import type { Plan, StopChange } from './types.js';

export type { PlanOptions } from './context.js';

/** The plan that makes the observed VMs match the manifest (or, with `destroy`, stops the VMs named). */
export function plan(manifest: Manifest, observation: Observation, options: PlanOptions): Plan {
  const result: Plan = { baseDir: manifest.dir, changes: [], problems: [], notes: [], unchanged: [] };
  const add = (vm: string, outcome: Outcome) => {
    result.changes.push(...outcome.changes);
    result.problems.push(...outcome.problems);
    result.notes.push(...outcome.notes);
    if (outcome.changes.length === 0 && outcome.problems.length === 0) result.unchanged.push(vm);
  };
  if (options.destroy) {
    for (const vm of options.destroy) add(vm, planDestroy(vm, manifest, observation, options));
    return result;
  }
  for (const spec of manifest.vms) {
    if (!observation.vms.has(spec.name)) throw new Error(`bug: ${spec.name} was not observed`);
    const out = emptyOutcome();
    const ctx: VmPlanning = {
      spec,
      manifest,
      observation,
      options,
      paths: vmPaths(options.namespace, spec.name),
      accel: spec.accel === 'auto' ? (observation.host.kvmUsable ? 'kvm' : 'tcg') : spec.accel,
      out,
      problem: problemReporter(out, manifest, spec.name),
    };
    if (spec.monitor) planAdopted(ctx);
    else planManaged(ctx);
    add(spec.name, out);
  }
  for (const orphan of [...observation.orphans].sort((a, b) => a.name.localeCompare(b.name))) {
    result.changes.push(...planOrphan(orphan, options, result));
  }
  orderMoves(result, observation);
  return result;
}

/**
 * A VM renamed, or a disk or port handed from a VM the manifest no longer lists to one it does: the new start
 * must wait until the old VM has stopped and let go. With --prune the old VM's stop is in the plan and the
 * start is ordered after it; without, the start could only fail, so it is a problem naming what to do.
 */
function orderMoves(result: Plan, observation: Observation): void {
  const holders = observation.orphans.filter((o): o is RunningVm => o.state === 'running');
  if (holders.length === 0) return;
  const stopping = new Set(result.changes.filter((c) => c.action === 'stop').map((c) => c.vm));
  result.changes = result.changes.filter((change) => {
    if (change.action !== 'start' && change.action !== 'restart') return true;
    const disk = change.launch.spec.disk?.path;
    const after: string[] = [];
    for (const holder of holders) {
      const holdsDisk =
        disk !== undefined && (holder.disk?.path ?? holder.launch?.launch.disk?.path) === disk;
      const port = change.forwards.find((f) =>
        holder.forwards.some((h) => h.proto === f.proto && h.hostPort === f.hostPort),
      );
      if (!holdsDisk && !port) continue;
      if (stopping.has(holder.name)) {
        after.push(holder.name);
        continue;
      }
      const what = holdsDisk ? disk : `host port ${port!.proto} ${port!.hostPort}`;
      result.problems.push({
        vm: change.vm,
        message: `${what} is in use by VM ${holder.name}, which the manifest no longer lists; \`qvm apply --prune\` stops it first`,
      });
      return false;
    }
    if (after.length > 0) change.after = after;
    return true;
  });
  result.unchanged = result.unchanged.filter((vm) => !result.problems.some((p) => p.vm === vm));
}

/** A running VM of the namespace that the manifest no longer lists: stopped only with --prune. */
function planOrphan(orphan: ObservedVm, options: PlanOptions, result: Plan): StopChange[] {
  if (!options.prune) {
    result.notes.push({
      vm: orphan.name,
      message: 'is running but not in the manifest; `apply --prune` stops it',
    });
    return [];
  }
  if (orphan.state === 'unknown') {
    result.problems.push({
      vm: orphan.name,
      message: `is not in the manifest, but its monitor does not answer: ${orphan.error}`,
    });
    return [];
  }
  if (orphan.state !== 'running') return [];
  return [stopOf(orphan, 'not-in-manifest', options)];
}

/** `qvm destroy`: a stop for a VM of qvm's that runs (adopted VMs are never destroyed by qvm). */
function planDestroy(
  vm: string,
  manifest: Manifest,
  observation: Observation,
  options: PlanOptions,
): Outcome {
  const out = emptyOutcome();
  const spec = manifest.vms.find((v) => v.name === vm);
  if (spec?.monitor) {
    out.notes.push({
      vm,
      message: 'skipped: adopted VMs (monitor:) are not destroyed by qvm; set state: stopped to quit one',
    });
    return out;
  }
  const observed = observation.vms.get(vm) ?? observation.orphans.find((o) => o.name === vm);
  if (observed?.state === 'stopped' && observed.elsewhere) {
    out.problems.push({
      vm,
      message: `cannot be destroyed by this qvm: it runs under another runtime folder, ${observed.elsewhere.root} (QEMU pid ${observed.elsewhere.pid}); run qvm with QVM_RUNTIME_DIR=${observed.elsewhere.root}`,
    });
    return out;
  }
  if (!observed || observed.state === 'stopped') return out;
  out.changes.push(stopOf(observed, 'destroy', options, spec?.stopTimeoutMs));
  return out;
}

/**
 * A stop of a VM qvm started. Its stop timeout is the manifest's, else the one its launch record kept (a VM the
 * manifest no longer lists), else the default.
 */
function stopOf(
  vm: Exclude<ObservedVm, { state: 'stopped' }>,
  reason: StopChange['reason'],
  options: PlanOptions,
  manifestTimeoutMs?: number,
): StopChange {
  const launch = vm.state === 'running' ? vm.launch : undefined;
  return {
    action: 'stop',
    vm: vm.name,
    reason,
    adopted: false,
    ...(vm.pid !== undefined ? { pid: vm.pid } : {}),
    socket: vmPaths(options.namespace, vm.name).qmp,
    stopTimeoutMs: manifestTimeoutMs ?? launch?.stopTimeoutMs ?? DEFAULTS.stopTimeoutMs,
    alreadyPoweredOff: vm.state === 'running' && vm.runstate === 'shutdown',
  };
}
