/**
 * The planner: a pure function of the desired state (the manifest), the observed state and the options.
 * No I/O, no clock; VMs in manifest order, then VMs of the namespace the manifest no longer lists, by name.
 */
import { DEFAULTS, type Manifest } from '../manifest/types.js';
import type { Observation, ObservedVm } from '../observe/types.js';
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
  return result;
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
