/**
 * A VM of a loaded manifest as the checkers and the defaults step see it: its raw fields, where each field is,
 * and whether the schema accepted it. Checkers only look at fields the schema accepted, so one run reports
 * every problem without a checker tripping over a value of the wrong type.
 */
import path from 'node:path';
import type { Diagnostic } from '../errors.js';
import { type FieldPath, formatFieldPath, isWithinField } from '../model/field-path.js';
import type { LoadedYaml } from './load.js';
import type { RawImageSource, RawVm } from './types.js';

export interface VmDocument {
  name: string;
  raw: RawVm;
  /** The manifest file, as the user named it. */
  file: string;
  /** The folder relative paths are relative to. */
  dir: string;
  /** The field path of a field of this VM. */
  at(...rest: (string | number)[]): FieldPath;
  /** Whether the schema accepted this field of the VM (and everything under it). */
  accepted(...rest: (string | number)[]): boolean;
  /** A located diagnostic about a field of this VM. */
  problem(field: (string | number)[], message: string): Diagnostic;
  /** Where a field of this VM is, as `file:line` for a message about another field. */
  where(field: (string | number)[]): string;
  /** A path from the manifest, made absolute. */
  resolve(p: string): string;
  /** The manifest's `images:` catalogue (of every file of a folder). */
  catalog: Record<string, RawImageSource>;
}

/** Checks one VM: every problem found, each located. */
export type VmCheck = (doc: VmDocument) => Diagnostic[];

/** Checks something between VMs, of one file or of every file of a folder (a port or a disk claimed twice). */
export type ManifestCheck = (docs: VmDocument[]) => Diagnostic[];

/** The VMs of a document, given the schema's findings (so checkers can skip what the schema refused). */
export function vmDocuments(
  loaded: LoadedYaml,
  dir: string,
  schemaFindings: Diagnostic[],
  catalog: Record<string, RawImageSource> = {},
): VmDocument[] {
  const refused = schemaFindings.map((d) => d.path ?? '');
  const accepted = (fieldPath: FieldPath) => {
    const prefix = formatFieldPath(fieldPath);
    return !refused.some((p) => isWithinField(p, prefix));
  };
  const vms = (loaded.value as { vms?: unknown }).vms;
  if (typeof vms !== 'object' || vms === null || Array.isArray(vms)) return [];
  const docs: VmDocument[] = [];
  for (const [name, raw] of Object.entries(vms as Record<string, unknown>)) {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) continue;
    const at = (...rest: (string | number)[]): FieldPath => ['vms', name, ...rest];
    docs.push({
      name,
      raw: raw as RawVm,
      file: loaded.file,
      dir,
      at,
      accepted: (...rest) => accepted(at(...rest)),
      problem: (field, message) => located(loaded, at(...field), message),
      where: (field) => {
        const position = loaded.locate(at(...field));
        return position ? `${loaded.file}:${position.line}` : loaded.file;
      },
      resolve: (p) => path.resolve(dir, p),
      catalog,
    });
  }
  return docs;
}

/** A diagnostic at a field of the document. */
export function located(loaded: LoadedYaml, fieldPath: FieldPath, message: string): Diagnostic {
  return { file: loaded.file, ...loaded.locate(fieldPath), path: formatFieldPath(fieldPath), message };
}
