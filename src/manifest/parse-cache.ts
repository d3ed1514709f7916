/**
 * Parsed manifests kept between runs. The YAML library builds a full syntax tree with positions, and on a
 * one-shot command its code runs cold: a 600-line manifest (100 VMs) took 60-70 ms to parse, the largest
 * single part of a no-op `qvm apply` of 100 VMs. A manifest that parsed cleanly is kept as its value and the
 * position of every field (value and key), which is all that checking and locating problems read.
 *
 * An entry is used only when its text is the file's text, character for character, and it was written by
 * this build of qvm: the cache can make a run faster, never different. A text whose value JSON cannot carry
 * exactly (.nan, .inf, -0) is simply not kept.
 */
import type { FieldPath } from '../model/field-path.js';
import type { LoadedYaml, SourcePosition } from './load.js';

/** Where entries are kept, by manifest file: see runtime/file-store.ts. Failures are the store's to swallow. */
export interface ParseStore {
  read(file: string): string | undefined;
  write(file: string, data: string): void;
}

interface Entry {
  format: typeof FORMAT;
  /** The qvm build that wrote it. */
  build: string;
  file: string;
  text: string;
  value: unknown;
  /** Path (JSON of the field path) -> [line, column] of the value, then of the key when it has one. */
  at: Record<string, number[]>;
}

const FORMAT = 1;

/** The parse of `text` kept for `file`, when there is one made from exactly this text by this build. */
export function cachedParse(
  store: ParseStore,
  build: string,
  file: string,
  text: string,
  displayName: string,
): LoadedYaml | undefined {
  const data = store.read(file);
  if (data === undefined) return undefined;
  let entry: Entry;
  try {
    entry = JSON.parse(data) as Entry;
  } catch {
    return undefined;
  }
  if (
    entry?.format !== FORMAT ||
    entry.build !== build ||
    entry.file !== file ||
    entry.text !== text ||
    typeof entry.at !== 'object' ||
    entry.at === null
  )
    return undefined;
  const { value, at } = entry;
  return {
    file: displayName,
    text,
    value,
    diagnostics: [],
    locate: (fieldPath, options) => locateIn(value, at, fieldPath, options),
  };
}

/** Keeps a clean parse of `file` (no diagnostics) for the next run. */
export function keepParse(store: ParseStore, build: string, file: string, loaded: LoadedYaml): void {
  if (loaded.diagnostics.length > 0 || !jsonExact(loaded.value)) return;
  const at: Record<string, number[]> = {};
  const visit = (value: unknown, fieldPath: FieldPath) => {
    const valueAt = loaded.locate(fieldPath);
    const keyAt = loaded.locate(fieldPath, { key: true });
    if (valueAt) {
      at[JSON.stringify(fieldPath)] =
        keyAt && (keyAt.line !== valueAt.line || keyAt.column !== valueAt.column)
          ? [valueAt.line, valueAt.column, keyAt.line, keyAt.column]
          : [valueAt.line, valueAt.column];
    }
    if (Array.isArray(value)) {
      for (const [i, item] of value.entries()) visit(item, [...fieldPath, i]);
    } else if (value !== null && typeof value === 'object')
      for (const [key, item] of Object.entries(value)) visit(item, [...fieldPath, key]);
  };
  visit(loaded.value, []);
  const entry: Entry = { format: FORMAT, build, file, text: loaded.text, value: loaded.value, at };
  store.write(file, JSON.stringify(entry));
}

/**
 * What `locate` of the parsed document answers, from the kept positions: the field itself, else the nearest
 * enclosing field that exists (its value, never its key), as load.ts's locate does. A part names a list item
 * only as a number, and a mapping key always as a string.
 */
function locateIn(
  value: unknown,
  at: Record<string, number[]>,
  fieldPath: FieldPath,
  options?: { key?: boolean },
): SourcePosition | undefined {
  const parts: (string | number)[] = [];
  let node = value;
  let found = 0;
  for (const part of fieldPath) {
    if (Array.isArray(node)) {
      if (typeof part !== 'number' || part < 0 || part >= node.length) break;
      node = node[part];
      parts.push(part);
    } else if (node !== null && typeof node === 'object' && Object.hasOwn(node, String(part))) {
      node = (node as Record<string, unknown>)[String(part)];
      parts.push(String(part));
    } else {
      break;
    }
    found++;
  }
  const position = at[JSON.stringify(parts)];
  if (!position) return undefined;
  const [line, column, keyLine, keyColumn] = position;
  if (options?.key && found === fieldPath.length && keyLine !== undefined && keyColumn !== undefined)
    return { line: keyLine, column: keyColumn };
  return { line: line!, column: column! };
}

/** Whether JSON carries `value` exactly: finite numbers (not -0), strings, booleans, null, plain lists and maps. */
function jsonExact(value: unknown): boolean {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return true;
  if (typeof value === 'number') return Number.isFinite(value) && !Object.is(value, -0);
  if (Array.isArray(value)) return value.every(jsonExact);
  if (typeof value !== 'object' || Object.getPrototypeOf(value) !== Object.prototype) return false;
  return Object.keys(value).every((key) => key !== '__proto__') && Object.values(value).every(jsonExact);
}
