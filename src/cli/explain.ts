/**
 * `qvm explain [FIELD]`: a manifest field's documentation, as `kubectl explain` gives a resource's: its
 * description, type, default, what changing it does to a running VM, its fields and examples. Everything comes
 * from schemas/qvm.schema.json, which editors read too; nothing is written twice.
 */
import { stringify } from 'yaml';
import { UsageError } from '../errors.js';
import {
  allFields,
  type ChangeKind,
  childFields,
  ENTRY,
  type Field,
  findField,
  readSchema,
  rootField,
  type SchemaNode,
  typeText,
} from '../manifest/schema-fields.js';
import { type Output, writeLine } from './output.js';

/** What each `x-change` value means, in the words `qvm explain` prints after it. */
const CHANGE_TEXT: Record<ChangeKind, string> = {
  live: 'applied to the running VM through its monitor; the VM keeps running',
  restart: '`qvm apply` restarts the VM: a graceful stop, then a start with the new command line',
  'next start': "used from the VM's next start; a running VM is left as it is",
  'next stop': 'used the next time qvm stops the VM',
  'at once': 'qvm uses it from its next command or watch pass; the VM itself is not touched',
  'start, stop or save': '`qvm apply` starts, stops or hibernates the VM to match',
  'new disk': 'used when qvm creates a disk from it; once the disk exists, a change is refused',
};

const WIDTH = 100;

/** Text wrapped to WIDTH columns, each line indented. */
function wrap(text: string, indent: string): string[] {
  const lines: string[] = [];
  for (const paragraph of text.split('\n')) {
    let line = '';
    for (const word of paragraph.split(/ +/)) {
      if (line && indent.length + line.length + 1 + word.length > WIDTH) {
        lines.push(indent + line);
        line = word;
      } else {
        line = line ? `${line} ${word}` : word;
      }
    }
    lines.push(indent + line);
  }
  return lines;
}

/** The first sentence of a description, for a field listed under another. */
function firstSentence(text: string): string {
  const match = /^.*?[.!?](?=\s|$)/s.exec(text);
  return (match ? match[0] : text).replace(/\s+/g, ' ');
}

/** An example as the user writes it in the manifest, under the field's own key. */
function exampleYaml(field: Field, example: unknown): string[] {
  const value = field.name === ENTRY ? example : { [field.name === 'x-*' ? 'x-base' : field.name]: example };
  return stringify(value, { lineWidth: 0 }).trimEnd().split('\n');
}

function fieldLines(schema: SchemaNode, fields: Field[], recursive: boolean, depth: number): string[] {
  const lines: string[] = [];
  const pad = '  '.repeat(depth + 1);
  for (const field of fields) {
    const required = field.required ? ' -required-' : '';
    lines.push(`${pad}${field.name}\t<${typeText(schema, field.node)}>${required}`);
    if (recursive) {
      lines.push(...fieldLines(schema, childFields(schema, field), true, depth + 1));
    } else if (typeof field.node.description === 'string') {
      lines.push(...wrap(firstSentence(field.node.description), `${pad}  `));
    }
  }
  return lines;
}

/** Aligns the tab-separated name and type of the FIELDS lines. */
function alignTabs(lines: string[]): string[] {
  const width = Math.max(0, ...lines.filter((l) => l.includes('\t')).map((l) => l.indexOf('\t')));
  return lines.map((l) => {
    const tab = l.indexOf('\t');
    return tab < 0 ? l : `${l.slice(0, tab).padEnd(width + 2)}${l.slice(tab + 1)}`;
  });
}

/** The explanation of one field, as lines. Pure, for tests. */
export function explainField(field: Field, options: { recursive?: boolean } = {}, schema = readSchema()) {
  const node = field.node;
  const out: string[] = [];
  const head = (label: string, value: string) => out.push(`${`${label}:`.padEnd(10)}${value}`);
  head('FIELD', field.path || '(the manifest)');
  head('TYPE', typeText(schema, node) + (field.required && field.path ? ', required' : ''));
  if (node.default !== undefined)
    head('DEFAULT', typeof node.default === 'string' ? node.default : JSON.stringify(node.default));
  if (field.change) head('CHANGE', `${field.change}: ${CHANGE_TEXT[field.change]}`);
  if (typeof node.description === 'string') out.push('', 'DESCRIPTION:', ...wrap(node.description, '  '));
  const children = childFields(schema, field);
  if (children.length > 0)
    out.push('', 'FIELDS:', ...alignTabs(fieldLines(schema, children, options.recursive === true, 0)));
  const examples = Array.isArray(node.examples) ? node.examples : [];
  if (examples.length > 0 && field.path) {
    const rendered = examples.map((e) => exampleYaml(field, e));
    const spaced = rendered.some((r) => r.length > 1);
    out.push('', 'EXAMPLES:');
    rendered.forEach((lines, i) => {
      if (spaced && i > 0) out.push('');
      out.push(...lines.map((l) => `  ${l}`));
    });
  }
  return out;
}

export function explainCommand(
  path: string | undefined,
  flags: { recursive?: boolean },
  output: Output,
): number {
  const schema = readSchema();
  const words = path ? path.split('.').filter(Boolean) : [];
  const field = words.length === 0 ? rootField(schema) : findField(words, schema);
  if (!field) {
    const last = words.at(-1)!;
    const near = allFields(schema)
      .map((f) => f.path)
      .filter((p) => !p.startsWith('defaults.') && p.split('.').at(-1) === last);
    throw new UsageError(
      `the manifest has no field ${path}${near.length ? `; did you mean ${near.join(' or ')}?` : ''} (\`qvm explain\` lists the top-level fields, \`qvm explain vms --recursive\` every field of a VM)`,
    );
  }
  for (const line of explainField(field, flags, schema)) writeLine(output.out, line);
  return 0;
}
