/**
 * The manifest's fields as schemas/qvm.schema.json declares them, for `qvm explain`, shell completion and the
 * schema's own tests: each field with its description, type, default, examples and what changing it does (the
 * `x-change` annotation). The schema is the single source: nothing here restates a field.
 *
 * Lists and the entries of a mapping of names (`vms`, `images`) are transparent, as in `kubectl explain`:
 * `vms.<name>.forwards.host` is the `host` of any forward of any VM.
 */
import { readFileSync } from 'node:fs';

/** The schema file, shipped beside the code. */
export const SCHEMA_URL = new URL('../../schemas/qvm.schema.json', import.meta.url);

/**
 * What changing a field does to a VM that runs: the values of the schema's `x-change` annotation. ajv is told
 * about the keyword (manifest/schema.ts) and checks every value is one of these.
 */
export const CHANGE_KINDS = [
  'live',
  'restart',
  'next start',
  'next stop',
  'at once',
  'start, stop or save',
  'new disk',
] as const;

export type ChangeKind = (typeof CHANGE_KINDS)[number];

export type SchemaNode = { [key: string]: unknown };

export interface Field {
  /** The field's path as `qvm explain` prints it: `vms.<name>.disk.size`. */
  path: string;
  /** Its last part: `size`, `<name>` for an entry of a mapping of names, `x-*` for extension fields. */
  name: string;
  /** The field's own schema with its `$ref` target under it (the field's own description wins). */
  node: SchemaNode;
  /** Required in the mapping that holds it. */
  required: boolean;
  /** What changing it does: its own `x-change`, else the nearest enclosing field's. */
  change?: ChangeKind;
}

/** Placeholder names of path parts that stand for any key. */
export const ENTRY = '<name>';
const EXTENSION = 'x-*';

let cached: SchemaNode | undefined;

/** The schema, parsed once per process. */
export function readSchema(): SchemaNode {
  cached ??= JSON.parse(readFileSync(SCHEMA_URL, 'utf8')) as SchemaNode;
  return cached;
}

function isNode(value: unknown): value is SchemaNode {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A node with its `$ref` (to `#/$defs/...`) merged under it, recursively. */
export function resolve(schema: SchemaNode, node: SchemaNode): SchemaNode {
  const ref = node.$ref;
  if (typeof ref !== 'string') return node;
  const name = ref.replace(/^#\/\$defs\//, '');
  const target = (schema.$defs as Record<string, SchemaNode> | undefined)?.[name];
  if (!target) throw new Error(`the schema refers to ${ref}, which it does not define`);
  const { $ref: _, ...own } = node;
  return { ...resolve(schema, target), ...own };
}

/** The forms a value of this node can take: itself, and the branches of an if/then/else. */
function shapes(schema: SchemaNode, node: SchemaNode): SchemaNode[] {
  const out = [resolve(schema, node)];
  for (const branch of ['then', 'else'] as const) {
    const sub = out[0]![branch];
    if (isNode(sub)) out.push(...shapes(schema, sub));
  }
  return out;
}

/** The fields directly under a field: its properties, a mapping's entries, and through a list's items. */
export function childFields(schema: SchemaNode, parent: Field): Field[] {
  const out: Field[] = [];
  const seen = new Set<string>();
  const add = (name: string, node: SchemaNode, required: boolean) => {
    if (seen.has(name)) return;
    seen.add(name);
    const resolved = resolve(schema, node);
    const change = (resolved['x-change'] as ChangeKind | undefined) ?? parent.change;
    out.push({
      path: parent.path ? `${parent.path}.${name}` : name,
      name,
      node: resolved,
      required,
      ...(change ? { change } : {}),
    });
  };
  const visit = (node: SchemaNode) => {
    for (const shape of shapes(schema, node)) {
      const required = new Set((shape.required as string[] | undefined) ?? []);
      for (const [name, sub] of Object.entries((shape.properties ?? {}) as Record<string, SchemaNode>))
        add(name, sub, required.has(name));
      for (const [pattern, sub] of Object.entries(
        (shape.patternProperties ?? {}) as Record<string, SchemaNode>,
      ))
        add(pattern === '^x-' ? EXTENSION : pattern, sub, false);
      if (isNode(shape.additionalProperties)) add(ENTRY, shape.additionalProperties, false);
      if (isNode(shape.items)) visit(shape.items);
    }
  };
  visit(parent.node);
  return out;
}

/** The manifest itself, as the field every other field is under. */
export function rootField(schema: SchemaNode = readSchema()): Field {
  return { path: '', name: '', node: schema, required: true };
}

/** Every field of the manifest, depth first, in the schema's order. */
export function allFields(schema: SchemaNode = readSchema()): Field[] {
  const out: Field[] = [];
  const walk = (field: Field, depth: number) => {
    if (depth > 20) throw new Error(`the schema nests deeper than 20 fields at ${field.path}`);
    for (const child of childFields(schema, field)) {
      out.push(child);
      walk(child, depth + 1);
    }
  };
  walk(rootField(schema), 0);
  return out;
}

/**
 * The field a user names: `vms.web.disk.size`, `vms.disk.size` or just `disk.size` (a VM's fields need no
 * prefix), `images.url`, `defaults.memory`. A part that names no field under a mapping of names is the name of
 * an entry (`web`). Undefined when no field has that path.
 */
export function findField(words: string[], schema: SchemaNode = readSchema()): Field | undefined {
  const root = rootField(schema);
  const direct = walkWords(schema, root, words);
  if (direct) return direct;
  // A VM's own fields without `vms.<name>.` in front of them.
  const vms = childFields(schema, root).find((f) => f.name === 'vms');
  const entry = vms && childFields(schema, vms).find((f) => f.name === ENTRY);
  return entry && words.length > 0 ? walkWords(schema, entry, words) : undefined;
}

function walkWords(schema: SchemaNode, start: Field, words: string[]): Field | undefined {
  let field = start;
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    const children = childFields(schema, field);
    const named =
      children.find((c) => c.name === word) ??
      (word.startsWith('x-') ? children.find((c) => c.name === EXTENSION) : undefined);
    if (named) {
      field = named;
      continue;
    }
    const entry = children.find((c) => c.name === ENTRY);
    if (!entry) return undefined;
    // `vms.disk`: the entry's own field; `vms.web.disk`: `web` is an entry's name.
    const inEntry = childFields(schema, entry).some((c) => c.name === word);
    field = entry;
    if (inEntry) i--;
  }
  return field === start && words.length > 0 ? undefined : field;
}

const TYPE_NAMES: Record<string, string> = {
  string: 'string',
  integer: 'integer',
  number: 'number',
  boolean: 'boolean',
  object: 'mapping',
  array: 'list',
};

/** The type of a field in words: `string`, `integer or string`, `list of (string or mapping)`, `one of: a, b`. */
export function typeText(schema: SchemaNode, node: SchemaNode): string {
  const n = resolve(schema, node);
  if (n.const !== undefined) return JSON.stringify(n.const);
  if (Array.isArray(n.enum)) return `one of: ${n.enum.join(', ')}`;
  if (isNode(n.then) && isNode(n.else)) {
    const branches = [typeText(schema, n.then), typeText(schema, n.else)];
    return [...new Set(branches)].join(' or ');
  }
  if (n.type === 'array' && isNode(n.items)) {
    const item = typeText(schema, n.items);
    return item.includes(' ') ? `list of (${item})` : `list of ${item}s`;
  }
  if (n.type === 'object' && isNode(n.additionalProperties)) return 'mapping of names to mappings';
  if (typeof n.type === 'string') return TYPE_NAMES[n.type] ?? n.type;
  if (n.type === undefined && n.properties === undefined) return 'any';
  return 'mapping';
}
