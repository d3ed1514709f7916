/**
 * Text a manifest gives inline or as `{file: PATH}` (cloud-init data). Files are read when the manifest is
 * checked, relative to the manifest's folder; a file that cannot be read is a located problem, like any other.
 */
import { readFileSync } from 'node:fs';
import type { VmDocument } from './document.js';
import type { RawTextOrFile } from './types.js';

export type TextRead = { ok: true; text: string; file?: string } | { ok: false; message: string };

const cache = new WeakMap<VmDocument, Map<string, TextRead>>();

/** The text of a field that is inline text or `{file}`; read once per checked document. */
export function readTextOrFile(doc: VmDocument, key: string, value: RawTextOrFile): TextRead {
  let byKey = cache.get(doc);
  if (!byKey) {
    byKey = new Map();
    cache.set(doc, byKey);
  }
  const known = byKey.get(key);
  if (known) return known;
  let result: TextRead;
  if (typeof value === 'string') {
    result = { ok: true, text: value };
  } else {
    const file = doc.resolve(value.file);
    try {
      result = { ok: true, text: readFileSync(file, 'utf8'), file };
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      result = {
        ok: false,
        message: `cannot read ${value.file}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a folder' : (error as Error).message}`,
      };
    }
  }
  byKey.set(key, result);
  return result;
}
