/**
 * From a loaded YAML document to a Manifest: the schema first, then one checker per concern for what a schema
 * cannot express, then the defaults step. Every problem of every checker is collected and located; nothing
 * stops at the first one.
 */
import type { Diagnostic } from '../errors.js';
import { checkManagedOptions, checkSnapshotDrives } from './checks/args.js';
import { checkKernelBoot } from './checks/boot.js';
import { checkForwardCollisions, checkForwardRules } from './checks/forwards.js';
import { checkReady } from './checks/ready.js';
import { checkSnapshotNeeds } from './checks/snapshots.js';
import { toVmSpec } from './defaults.js';
import { type ManifestCheck, type VmCheck, vmDocuments } from './document.js';
import type { LoadedYaml } from './load.js';
import { schemaDiagnostics } from './schema.js';
import type { Manifest } from './types.js';

/** The checks of one VM, run on the fields the schema accepted. */
const VM_CHECKS: VmCheck[] = [
  checkForwardRules,
  checkKernelBoot,
  checkManagedOptions,
  checkSnapshotNeeds,
  checkSnapshotDrives,
  checkReady,
];

/** The checks between the VMs of one file. */
const MANIFEST_CHECKS: ManifestCheck[] = [checkForwardCollisions];

export interface CheckResult {
  manifest?: Manifest;
  diagnostics: Diagnostic[];
}

/** Schema, then semantic checks, then defaults. `dir` is what relative paths are relative to. */
export function checkManifest(loaded: LoadedYaml, dir: string): CheckResult {
  if (loaded.diagnostics.length > 0) return { diagnostics: loaded.diagnostics };
  const shape = checkShape(loaded);
  if (shape) return { diagnostics: [shape] };

  const diagnostics = schemaDiagnostics(loaded);
  const docs = vmDocuments(loaded, dir, diagnostics);
  const failed = new Set<string>();
  for (const doc of docs) {
    const problems = VM_CHECKS.flatMap((check) => check(doc));
    if (problems.length > 0 || !doc.accepted()) failed.add(doc.name);
    diagnostics.push(...problems);
  }
  diagnostics.push(...MANIFEST_CHECKS.flatMap((check) => check(docs, loaded)));
  if (diagnostics.length > 0) {
    diagnostics.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
    return { diagnostics };
  }
  const vms = docs.filter((d) => !failed.has(d.name)).map(toVmSpec);
  return { manifest: { file: loaded.file, dir, vms, locate: (p) => loaded.locate(p) }, diagnostics: [] };
}

/** An empty document, or one that is not a mapping, is one problem and nothing more to check. */
function checkShape(loaded: LoadedYaml): Diagnostic | undefined {
  const file = loaded.file;
  if (loaded.value === undefined || loaded.value === null) {
    return { file, line: 1, column: 1, message: 'is empty; a manifest is a mapping with a `vms` key' };
  }
  if (typeof loaded.value !== 'object' || Array.isArray(loaded.value)) {
    const kind = Array.isArray(loaded.value) ? 'a list' : `a ${typeof loaded.value}`;
    return {
      file,
      ...loaded.locate([]),
      message: `is ${kind}, not a mapping; a manifest is a mapping with a \`vms\` key`,
    };
  }
  return undefined;
}
