/**
 * What planning one VM works from: its spec, what was observed, the options, and one way to report a problem
 * or a note. The planning steps (start.ts, forwards.ts, ...) take this and add to its outcome.
 */
import type { Manifest, VmSpec } from '../manifest/types.js';
import { type FieldPath, formatFieldPath } from '../model/field-path.js';
import type { Observation } from '../observe/types.js';
import type { Namespace, VmPaths } from '../runtime/paths.js';
import type { PlanLocation, PlanNote, PlanProblem, VmChange } from './types.js';

export interface PlanOptions {
  namespace: Namespace;
  /** Stop running VMs of this namespace that the manifest no longer lists. */
  prune: boolean;
  /**
   * Honour each VM's `restart:` policy for VMs that went down by themselves (watch does; apply, an explicit
   * request to make the VMs match, does not).
   */
  restartPolicy?: boolean;
  /** Recreate the warm snapshot of VMs that have `snapshot:` and `ready:` (`apply --refresh-snapshot`). */
  refreshSnapshots?: boolean;
  /** `qvm destroy`: stop these VMs (of the manifest or its namespace) and plan nothing else. */
  destroy?: string[];
  /** Drop a hibernated state instead of resuming it (`apply --discard-saved-state`). */
  discardSavedState?: boolean;
}

export interface Outcome {
  changes: VmChange[];
  problems: PlanProblem[];
  notes: PlanNote[];
}

export interface VmPlanning {
  spec: VmSpec;
  manifest: Manifest;
  observation: Observation;
  options: PlanOptions;
  paths: VmPaths;
  /** `accel: auto` decided from the host's KVM probe. */
  accel: 'kvm' | 'tcg';
  out: Outcome;
  /** Records a problem, located at a field of the VM when one is named. */
  problem(message: string, ...field: (string | number)[]): void;
}

/** An outcome with nothing in it yet. */
export function emptyOutcome(): Outcome {
  return { changes: [], problems: [], notes: [] };
}

/** Where a field of a VM is in the manifest: the file that declares the VM, line, column and field path. */
export function locate(manifest: Manifest, vm: string, ...field: (string | number)[]): PlanLocation {
  const fieldPath: FieldPath = ['vms', vm, ...field];
  const at = manifest.locate(fieldPath);
  const file = manifest.vms.find((v) => v.name === vm)?.source ?? manifest.file;
  return { file, ...at, path: formatFieldPath(fieldPath) };
}

/** A problem reporter for one VM's outcome. */
export function problemReporter(out: Outcome, manifest: Manifest, vm: string): VmPlanning['problem'] {
  return (message, ...field) =>
    out.problems.push({
      vm,
      message,
      ...(field.length ? { location: locate(manifest, vm, ...field) } : {}),
    });
}
