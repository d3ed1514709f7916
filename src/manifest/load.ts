/**
 * Reading a manifest: YAML text to a plain value, keeping positions so every later problem can be located.
 * Loading does not validate; it only reports what stops the text from being a YAML document at all.
 */
import { readFile } from 'node:fs/promises';
import { isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseAllDocuments } from 'yaml';
import type { Diagnostic } from '../errors.js';
import type { FieldPath } from '../model/field-path.js';

export interface SourcePosition {
  line: number;
  column: number;
}

export interface LoadedYaml {
  /** Absolute path of the file, as it appears in messages (the name the user gave is kept by callers). */
  file: string;
  text: string;
  /** The document as plain JavaScript values; undefined when loading failed. */
  value: unknown;
  /** YAML syntax problems, duplicate keys, several documents in one file. */
  diagnostics: Diagnostic[];
  /**
   * Where a field is. With `key: true`, the position of the mapping key rather than its value (for "unknown
   * field" messages). Falls back to the nearest enclosing node that exists.
   */
  locate(path: FieldPath, options?: { key?: boolean }): SourcePosition | undefined;
}

/** Reads and parses a manifest file; a file that cannot be read is a located diagnostic. */
export async function loadYamlFile(file: string, displayName = file): Promise<LoadedYaml> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EISDIR'
          ? 'is a folder, not a manifest file'
          : code === 'EACCES'
            ? 'permission denied'
            : (error as Error).message;
    return {
      file: displayName,
      text: '',
      value: undefined,
      diagnostics: [{ file: displayName, message: `cannot read the manifest: ${reason}` }],
      locate: () => undefined,
    };
  }
  return parseYaml(text, displayName);
}

/** Parses YAML text, keeping where every node is. */
export function parseYaml(text: string, file: string): LoadedYaml {
  const lineCounter = new LineCounter();
  const documents = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const diagnostics: Diagnostic[] = [];
  const at = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };

  // parseAllDocuments returns an EmptyStream (an array with no documents) for an empty file.
  const docs = Array.isArray(documents) ? documents : [];
  for (const doc of docs) {
    for (const problem of [...doc.errors, ...doc.warnings]) {
      const message = plainYamlMessage(problem.message);
      diagnostics.push({ file, ...at(problem.pos[0]), message: `YAML: ${message}` });
    }
  }
  if (docs.length > 1) {
    const second = docs[1]!;
    diagnostics.push({
      file,
      ...at(second.range[0]),
      message: `holds ${docs.length} YAML documents; a manifest is one document`,
    });
  }
  const doc = docs[0];
  let value: unknown;
  if (doc && diagnostics.length === 0) {
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (error) {
      // Unresolved aliases and alias bombs ("excessive alias count") surface only when converting.
      diagnostics.push({
        file,
        ...at(doc.range[0]),
        message: `YAML: ${plainYamlMessage((error as Error).message)}`,
      });
    }
  }

  const locate = (path: FieldPath, options?: { key?: boolean }): SourcePosition | undefined => {
    if (!doc?.contents) return undefined;
    let node: Node | null = doc.contents as Node;
    let keyNode: Node | null = null;
    for (const part of path) {
      let next: Node | null = null;
      keyNode = null;
      if (isMap(node)) {
        for (const item of node.items) {
          if (isPair(item) && isScalar(item.key) && keyText(item.key.value) === String(part)) {
            next = (item.value as Node | null) ?? (item.key as Node);
            keyNode = item.key as Node;
            break;
          }
        }
      } else if (isSeq(node) && typeof part === 'number') {
        next = (node.items[part] as Node | undefined) ?? null;
      }
      if (!next) break;
      node = next;
    }
    const target = options?.key && keyNode ? keyNode : node;
    return target?.range ? at(target.range[0]) : undefined;
  };

  return { file, text, value, diagnostics, locate };
}

/** A mapping key as the parsed value has it: the yaml library turns a null key (`null:`, `~:`) into "". */
function keyText(value: unknown): string {
  return value === null || value === undefined ? '' : String(value);
}

/** The yaml library's messages carry a trailing " at line X, column Y" that our prefix already says. */
function plainYamlMessage(message: string): string {
  return message.replace(/ at line \d+, column \d+:?[\s\S]*$/, '').trim();
}
