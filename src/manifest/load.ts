/**
 * Reading a manifest: YAML text to a plain value, keeping positions so every later problem can be located.
 * Loading does not validate; it only reports what stops the text from being a YAML document at all.
 *
 * YAML merge keys (`<<: *base`, YAML 1.1's templates, which docker compose files use too) are resolved here,
 * and `locate` follows them and aliases: a value a VM inherits is located where it is written, in the anchor.
 */
import { readFile } from 'node:fs';
import {
  type Document,
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  type Pair,
  parseAllDocuments,
  visit,
} from 'yaml';
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

/**
 * Reads and parses a manifest file; a file that cannot be read is a located diagnostic. `parse` is given the
 * text, the name for messages and the file (a parse cache keeps parses by file).
 */
export async function loadYamlFile(
  file: string,
  displayName = file,
  parse: (text: string, displayName: string, file: string) => LoadedYaml = parseYaml,
): Promise<LoadedYaml> {
  let text: string;
  try {
    // node:fs's callback form: node:fs/promises costs a one-shot command about a millisecond to load.
    text = await new Promise<string>((resolve, reject) =>
      readFile(file, 'utf8', (error, read) => (error ? reject(error) : resolve(read))),
    );
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
  return parse(text, displayName, file);
}

/** Parses YAML text, keeping where every node is. */
export function parseYaml(text: string, file: string): LoadedYaml {
  const lineCounter = new LineCounter();
  const documents = parseAllDocuments(text, {
    lineCounter,
    prettyErrors: false,
    uniqueKeys: true,
    merge: true,
  });
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
  if (doc && diagnostics.length === 0) {
    for (const node of badMergeSources(doc)) {
      diagnostics.push({
        file,
        ...at(node.range?.[0] ?? doc.range[0]),
        message: 'YAML: a merge key (<<) takes a mapping, an alias of one, or a list of them',
      });
    }
  }
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
    let node: Node | null = deref(doc.contents as Node, doc);
    let keyNode: Node | null = null;
    for (const part of path) {
      let next: Node | null = null;
      keyNode = null;
      if (isMap(node)) {
        const pair = findPair(node, String(part), doc);
        if (pair) {
          next = (pair.value as Node | null) ?? (pair.key as Node);
          keyNode = pair.key as Node;
        }
      } else if (isSeq(node) && typeof part === 'number') {
        next = (node.items[part] as Node | undefined) ?? null;
      }
      if (!next) break;
      node = deref(next, doc);
    }
    const target = options?.key && keyNode ? keyNode : node;
    return target?.range ? at(target.range[0]) : undefined;
  };

  return { file, text, value, diagnostics, locate };
}

/** The node an alias stands for (the anchored node), or the node itself. */
function deref(node: Node, doc: Document): Node {
  for (let hops = 0; isAlias(node) && hops < 100; hops++) {
    const target = node.resolve(doc);
    if (!target) break;
    node = target;
  }
  return node;
}

/** A merge key: `<<` written plain (a quoted "<<" is an ordinary key). */
function isMergePair(pair: Pair): boolean {
  return isScalar(pair.key) && typeof pair.key.value === 'symbol';
}

/** The mappings a merge key's value names: one mapping, or a list of them, each possibly an alias. */
function mergeSources(pair: Pair, doc: Document): Node[] {
  const value = deref(pair.value as Node, doc);
  return isSeq(value) ? value.items.map((item) => deref(item as Node, doc)) : [value];
}

/**
 * The pair of a mapping with this key, as the parsed value sees it: the mapping's own key first, else the
 * first merged mapping that has it (YAML's merge rule: own keys win, earlier sources before later ones).
 */
function findPair(map: Node, key: string, doc: Document, depth = 0): Pair | undefined {
  if (!isMap(map) || depth > 100) return undefined;
  for (const item of map.items) {
    if (isPair(item) && !isMergePair(item) && isScalar(item.key) && keyText(item.key.value) === key)
      return item;
  }
  for (const item of map.items) {
    if (!isPair(item) || !isMergePair(item)) continue;
    for (const source of mergeSources(item, doc)) {
      const found = findPair(source, key, doc, depth + 1);
      if (found) return found;
    }
  }
  return undefined;
}

/** Merge keys whose value is not a mapping (or an alias of one, or a list of them): the nodes at fault. */
function badMergeSources(doc: Document): Node[] {
  const bad: Node[] = [];
  visit(doc, {
    Pair(_, pair) {
      if (!isMergePair(pair as Pair)) return;
      const value = pair.value as Node | null;
      if (!value) {
        bad.push(pair.key as Node);
        return;
      }
      const resolved = deref(value, doc);
      // An alias to no anchor is reported on its own when the document is converted.
      if (isAlias(resolved)) return;
      const items = isSeq(resolved) ? (resolved.items as Node[]) : [resolved];
      const wrong = items.filter((item) => {
        const source = deref(item, doc);
        return !isAlias(source) && !isMap(source);
      });
      if (wrong.length === 0) return;
      // Where the user wrote the merge: the value itself, or the wrong items of a list written in place.
      bad.push(...(isSeq(value) ? wrong : [value]));
    },
  });
  return bad;
}

/** A mapping key as the parsed value has it: the yaml library turns a null key (`null:`, `~:`) into "". */
function keyText(value: unknown): string {
  return value === null || value === undefined ? '' : String(value);
}

/** The yaml library's messages carry a trailing " at line X, column Y" that our prefix already says. */
function plainYamlMessage(message: string): string {
  return message.replace(/ at line \d+, column \d+:?[\s\S]*$/, '').trim();
}
