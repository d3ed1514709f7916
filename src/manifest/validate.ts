/**
 * From loaded YAML documents to a Manifest: the schema first, then one checker per concern for what a schema
 * cannot express, then the defaults step. Every problem of every checker is collected and located; nothing
 * stops at the first one. Checks between VMs see every file of a folder, so a port or a disk claimed in two
 * files is found as surely as in one.
 */
import type { Diagnostic } from '../errors.js';
import { type FieldPath, formatFieldPath, isWithinField } from '../model/field-path.js';
import { checkMonitorClaims } from './checks/adopted.js';
import { checkManagedOptions, checkSnapshotDrives } from './checks/args.js';
import { checkKernelBoot } from './checks/boot.js';
import { checkDevices } from './checks/devices.js';
import { checkDiskClaims, checkDiskFormat } from './checks/disks.js';
import { checkForwardCollisions, checkForwardRules } from './checks/forwards.js';
import { checkCloudInit, checkImage, checkSsh, imageSourceProblem } from './checks/guest.js';
import { checkLimits } from './checks/limits.js';
import { checkReady } from './checks/ready.js';
import { checkSnapshotNeeds } from './checks/snapshots.js';
import { toVmSpec } from './defaults.js';
import { located, type ManifestCheck, type VmCheck, type VmDocument, vmDocuments } from './document.js';
import { withDefaults, withoutInheritedRepeats } from './inherit.js';
import type { LoadedYaml, SourcePosition } from './load.js';
import { schemaDiagnostics } from './schema.js';
import type { Manifest, RawImageSource } from './types.js';

/** The checks of one VM, run on the fields the schema accepted. */
const VM_CHECKS: VmCheck[] = [
  checkForwardRules,
  checkKernelBoot,
  checkManagedOptions,
  checkSnapshotNeeds,
  checkSnapshotDrives,
  checkDiskFormat,
  checkReady,
  checkDevices,
  checkLimits,
  checkImage,
  checkCloudInit,
  checkSsh,
];

/** The checks between VMs, across every file. */
const MANIFEST_CHECKS: ManifestCheck[] = [
  checkForwardCollisions,
  checkDiskClaims,
  checkMonitorClaims,
  checkNamesUnique,
];

export interface CheckResult {
  manifest?: Manifest;
  diagnostics: Diagnostic[];
}

/** Schema, then semantic checks, then defaults. `dir` is what relative paths are relative to. */
export function checkManifest(loaded: LoadedYaml, dir: string): CheckResult {
  return checkDocuments([loaded], dir, loaded.file);
}

/**
 * Checks several documents as one manifest (a folder of them), and names it `file`. The manifest exists only
 * when nothing at all is wrong.
 */
export function checkDocuments(files: LoadedYaml[], dir: string, file: string): CheckResult {
  // `defaults:` goes under every VM first, so the schema and the checkers see each VM as it is meant.
  const loadeds = files.map(withDefaults);
  const diagnostics: Diagnostic[] = [];
  const checked: { loaded: LoadedYaml; schema: Diagnostic[] }[] = [];
  for (const loaded of loadeds) {
    if (loaded.diagnostics.length > 0) {
      diagnostics.push(...loaded.diagnostics);
      continue;
    }
    const shape = checkShape(loaded);
    if (shape) {
      diagnostics.push(shape);
      continue;
    }
    const schema = schemaDiagnostics(loaded);
    diagnostics.push(...withoutInheritedRepeats(schema));
    checked.push({ loaded, schema });
  }
  const catalog = imageCatalog(checked, diagnostics);
  const docs: VmDocument[] = [];
  const failed = new Set<VmDocument>();
  for (const { loaded, schema } of checked) {
    for (const doc of vmDocuments(loaded, dir, schema, catalog)) {
      const problems = VM_CHECKS.flatMap((check) => check(doc));
      if (problems.length > 0 || !doc.accepted()) failed.add(doc);
      diagnostics.push(...problems);
      docs.push(doc);
    }
  }
  diagnostics.push(...MANIFEST_CHECKS.flatMap((check) => check(docs)));
  if (diagnostics.length > 0) {
    const order = new Map(loadeds.map((l, i) => [l.file, i]));
    diagnostics.sort(
      (a, b) =>
        (order.get(a.file) ?? 0) - (order.get(b.file) ?? 0) ||
        (a.line ?? 0) - (b.line ?? 0) ||
        (a.column ?? 0) - (b.column ?? 0),
    );
    return { diagnostics };
  }
  const byVm = new Map(docs.map((d) => [d.name, loadeds.find((l) => l.file === d.file)!]));
  const locate = (fieldPath: FieldPath): SourcePosition | undefined => {
    const owner = typeof fieldPath[1] === 'string' ? byVm.get(fieldPath[1]) : loadeds[0];
    return owner?.locate(fieldPath);
  };
  const vms = docs.filter((d) => !failed.has(d)).map(toVmSpec);
  return { manifest: { file, dir, vms, locate }, diagnostics: [] };
}

/**
 * The `images:` of every file, as one catalogue: each entry pinned when it is downloaded over http(s), and a
 * name given two different images in two files is an error.
 */
function imageCatalog(
  checked: { loaded: LoadedYaml; schema: Diagnostic[] }[],
  diagnostics: Diagnostic[],
): Record<string, RawImageSource> {
  const catalog: Record<string, RawImageSource> = {};
  const where = new Map<string, string>();
  for (const { loaded, schema } of checked) {
    const images = (loaded.value as { images?: unknown }).images;
    if (typeof images !== 'object' || images === null || Array.isArray(images)) continue;
    for (const [name, source] of Object.entries(images as Record<string, RawImageSource>)) {
      const fieldPath = ['images', name];
      const prefix = formatFieldPath(fieldPath);
      const refused = schema.some((d) => d.path !== undefined && isWithinField(d.path, prefix));
      if (refused || typeof source !== 'object' || source === null) continue;
      const problem = imageSourceProblem(source);
      if (problem) diagnostics.push(located(loaded, [...fieldPath, ...problem.at], problem.message));
      const earlier = catalog[name];
      if (earlier && JSON.stringify(earlier) !== JSON.stringify(source)) {
        diagnostics.push(
          located(loaded, fieldPath, `is also an image of ${where.get(name)}, with another url or digest`),
        );
        continue;
      }
      catalog[name] = source;
      const at = loaded.locate(fieldPath);
      where.set(name, at ? `${loaded.file}:${at.line}` : loaded.file);
    }
  }
  return catalog;
}

/** A VM name declared in two files of a folder. */
function checkNamesUnique(docs: VmDocument[]): Diagnostic[] {
  const first = new Map<string, VmDocument>();
  const out: Diagnostic[] = [];
  for (const doc of docs) {
    const earlier = first.get(doc.name);
    if (!earlier) {
      first.set(doc.name, doc);
      continue;
    }
    out.push(
      doc.problem([], `is also declared in ${earlier.where([])}; a VM name must be unique across the folder`),
    );
  }
  return out;
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
