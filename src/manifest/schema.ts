/**
 * The manifest's JSON Schema (schemas/qvm.schema.json, the single source of its shape), checked with the
 * validator ajv generated from it at build time (`npm run schema`), and ajv's findings turned into plain,
 * located messages.
 */
import type { ErrorObject } from 'ajv';
import type { Diagnostic } from '../errors.js';
import { type FieldPath, formatFieldPath } from '../model/field-path.js';
import type { LoadedYaml } from './load.js';
import { SCHEMA_URL } from './schema-fields.js';
import { validate as generated } from './schema-validator.generated.js';

/** The schema file, shipped beside the code (for editors, `qvm explain` and `qvm schema`). */
export { SCHEMA_URL };

/**
 * Ajv's standalone validator: compiled from the schema with allErrors and verbose (every error, each with its
 * parentSchema and data), so nothing is compiled at run time. Errors are left on the function after a call.
 */
const validate = generated as ((data: unknown) => boolean) & { errors?: ErrorObject[] | null };

/** Schema problems of a loaded document, each located and worded for people. */
export function schemaDiagnostics(loaded: LoadedYaml): Diagnostic[] {
  if (validate(loaded.value)) return [];
  const seen = new Set<string>();
  const out: Diagnostic[] = [];
  for (const error of validate.errors ?? []) {
    const described = describeError(error, loaded.value);
    if (!described) continue;
    const key = formatFieldPath(described.path);
    if (seen.has(key)) continue; // the first finding per field is the useful one (type before pattern)
    seen.add(key);
    const position = loaded.locate(described.path, { key: described.atKey });
    out.push({ file: loaded.file, ...position, path: key || undefined, message: described.message });
  }
  return out;
}

interface Described {
  path: FieldPath;
  message: string;
  /** Point at the mapping key (unknown fields, bad names) rather than at the value. */
  atKey?: boolean;
}

/** A JSON pointer as a field path; a part is an index only where the value there is a list (a key may be "0"). */
function pointerToPath(pointer: string, root: unknown): (string | number)[] {
  if (!pointer) return [];
  const path: (string | number)[] = [];
  let node: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const part = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node) && /^(0|[1-9][0-9]*)$/.test(part)) {
      path.push(Number(part));
      node = node[Number(part)];
    } else {
      path.push(part);
      node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[part] : undefined;
    }
  }
  return path;
}

/** A value as it appears in a message: strings quoted, objects named by their kind. */
function showValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string')
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  return String(value);
}

const typeNames: Record<string, string> = {
  integer: 'an integer',
  number: 'a number',
  string: 'a string',
  object: 'a mapping',
  array: 'a list',
  boolean: 'true or false',
};

function describeError(error: ErrorObject, root: unknown): Described | undefined {
  const path = pointerToPath(error.instancePath, root);
  const schemaMessage = error.parentSchema?.errorMessage as string | undefined;
  switch (error.keyword) {
    case 'if':
    case 'propertyNames':
      // Summaries of errors that ajv reports on their own as well.
      return undefined;
    case 'required':
      return { path: [...path, error.params.missingProperty as string], message: 'is required' };
    case 'additionalProperties': {
      const field = error.params.additionalProperty as string;
      const known = Object.keys((error.parentSchema?.properties as object | undefined) ?? {});
      const suggestion = closest(field, known);
      const hint = suggestion
        ? `; did you mean "${suggestion}"?`
        : known.length
          ? `; known fields: ${known.join(', ')}`
          : '';
      return { path: [...path, field], message: `is not a known field${hint}`, atKey: true };
    }
  }
  if (error.propertyName !== undefined) {
    // A mapping key that fails propertyNames: a bad VM name.
    const message = schemaMessage ?? 'is not a valid name';
    const got = error.propertyName === '' ? 'an empty or null key' : showValue(error.propertyName);
    return { path: [...path, error.propertyName], message: `${message}, got ${got}`, atKey: true };
  }
  const got = `, got ${showValue(error.data)}`;
  if (schemaMessage) return { path, message: schemaMessage + got };
  switch (error.keyword) {
    case 'type':
      return {
        path,
        message: `must be ${typeNames[error.params.type as string] ?? error.params.type}${got}`,
      };
    case 'enum':
      return {
        path,
        message: `must be one of ${(error.params.allowedValues as unknown[]).join(', ')}${got}`,
      };
    default:
      return { path, message: `${error.message ?? 'is invalid'}${got}` };
  }
}

/** The known word nearest to a misspelling, when it is near enough to be a likely typo. */
function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length]!;
}
