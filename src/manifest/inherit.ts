/**
 * `defaults:`, the manifest's one template: its fields are under every VM of the same file, and a VM's own
 * field wins whole, as if each VM began with `<<: *defaults`: lists (forwards, args) and mappings (disk, ready)
 * are replaced, never merged. It runs after loading and before the schema, so the schema and every checker see
 * each VM as it is meant; a field a VM inherits is located in `defaults:`, where it is written.
 */
import type { Diagnostic } from '../errors.js';
import type { FieldPath } from '../model/field-path.js';
import type { LoadedYaml, SourcePosition } from './load.js';

type Mapping = Record<string, unknown>;

function isMapping(value: unknown): value is Mapping {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The document with `defaults:` under each of its VMs; unchanged when it has no defaults to give. */
export function withDefaults(loaded: LoadedYaml): LoadedYaml {
  const value = loaded.value;
  if (!isMapping(value) || !isMapping(value.defaults) || !isMapping(value.vms)) return loaded;
  const defaults = value.defaults;
  const own = new Map<string, Mapping>();
  const vms: Mapping = {};
  for (const [name, vm] of Object.entries(value.vms)) {
    // A VM that is not a mapping stays what it is, for the schema to report.
    if (!isMapping(vm)) {
      vms[name] = vm;
      continue;
    }
    own.set(name, vm);
    vms[name] = { ...defaults, ...vm };
  }
  const locate = (path: FieldPath, options?: { key?: boolean }): SourcePosition | undefined => {
    const [top, name, field, ...rest] = path;
    if (top === 'vms' && typeof name === 'string' && typeof field === 'string') {
      const vm = own.get(name);
      if (vm && !Object.hasOwn(vm, field) && Object.hasOwn(defaults, field))
        return loaded.locate(['defaults', field, ...rest], options);
    }
    return loaded.locate(path, options);
  };
  return { ...loaded, value: { ...value, vms }, locate };
}

/**
 * Schema findings without the copies a bad default makes in every VM that inherits it: the finding about
 * `defaults:` itself, at the same place with the same words, says it once.
 */
export function withoutInheritedRepeats(diagnostics: Diagnostic[]): Diagnostic[] {
  const key = (d: Diagnostic) => `${d.file}:${d.line}:${d.column}:${d.message}`;
  const inDefaults = new Set(
    diagnostics.filter((d) => d.path === 'defaults' || d.path?.startsWith('defaults.')).map(key),
  );
  return diagnostics.filter((d) => !(d.path?.startsWith('vms.') && inDefaults.has(key(d))));
}
