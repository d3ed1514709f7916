/**
 * The guest side of a VM: its image, its cloud-init data and its SSH access. An http(s) image is pinned by a
 * digest; an image needs a disk to be the overlay; user data qvm adds to must be a #cloud-config mapping; and
 * `ready: {ssh: true}` needs `ssh:`.
 */
import { fileURLToPath } from 'node:url';
import { isMap, LineCounter, parseDocument } from 'yaml';
import type { Diagnostic } from '../../errors.js';
import { formatFieldPath } from '../../model/field-path.js';
import type { VmCheck, VmDocument } from '../document.js';
import { readTextOrFile } from '../text.js';

/** A string that names no catalogue entry and does not look like a path is most likely a misspelt name. */
export function looksLikeImageName(text: string): boolean {
  return !text.includes('/') && !text.includes('.');
}

/** `image:` names a catalogue entry or is a path; a URL form is pinned; it needs a disk and is the backing. */
export const checkImage: VmCheck = (doc) => {
  const { raw } = doc;
  if (raw.image === undefined || !doc.accepted('image')) return [];
  const out: Diagnostic[] = [];
  if (typeof raw.image === 'object' && raw.image !== null) out.push(...pinned(doc, raw.image, ['image']));
  if (typeof raw.image === 'string' && !(raw.image in doc.catalog) && looksLikeImageName(raw.image)) {
    const names = Object.keys(doc.catalog);
    out.push(
      doc.problem(
        ['image'],
        `names no image of \`images:\` (${names.length ? `it has: ${names.join(', ')}` : 'there is none'}); a local image file is a path such as ./${raw.image}.qcow2, got ${JSON.stringify(raw.image)}`,
      ),
    );
  }
  if (raw.disk === undefined) {
    out.push(
      doc.problem(['image'], "needs `disk`: the VM's disk is created as a qcow2 overlay of the image"),
    );
  } else if (typeof raw.disk === 'object' && raw.disk !== null && raw.disk.backing !== undefined) {
    out.push(
      doc.problem(['disk', 'backing'], "cannot be used with `image`: the image is the disk's backing image"),
    );
  } else if (typeof raw.disk === 'object' && raw.disk !== null && raw.disk.format === 'raw') {
    out.push(
      doc.problem(['disk', 'format'], 'must be qcow2 with `image`: the disk is a qcow2 overlay of the image'),
    );
  }
  if (raw.monitor !== undefined)
    out.push(
      doc.problem(['image'], "cannot be used with `monitor`: qvm does not create an adopted VM's disk"),
    );
  return out;
};

function pinned(
  doc: VmDocument,
  source: { url: string; sha256?: string; sha512?: string },
  field: (string | number)[],
): Diagnostic[] {
  const problem = imageSourceProblem(source);
  return problem ? [doc.problem([...field, ...problem.at], problem.message)] : [];
}

/**
 * What is wrong with an image source, and where under it (`at`): a URL that cannot be used, or an http(s)
 * image without a digest (it could be anything the server sends). For `image:` and `images:` alike.
 */
export function imageSourceProblem(source: {
  url: string;
  sha256?: string;
  sha512?: string;
}): { at: string[]; message: string } | undefined {
  const bad = urlProblem(source.url);
  if (bad) return { at: ['url'], message: bad };
  const why = unpinned(source);
  return why ? { at: [], message: why } : undefined;
}

/**
 * Why an image URL cannot be used, or undefined. The schema checks only its outline: `file:///a/%` or
 * `file://host/a` pass it, and Node refuses them (a file URL must be a local, well-encoded path).
 */
function urlProblem(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `is not a valid URL, got ${JSON.stringify(url)}`;
  }
  if (parsed.protocol !== 'file:') return undefined;
  try {
    fileURLToPath(parsed);
    return undefined;
  } catch (error) {
    return `is not the URL of a local file (${(error as Error).message}), got ${JSON.stringify(url)}`;
  }
}

/** Why an http(s) image source is not pinned, or undefined when it is (or is not http). */
function unpinned(source: { url: string; sha256?: string; sha512?: string }): string | undefined {
  if (!/^https?:/.test(source.url) || source.sha256 !== undefined || source.sha512 !== undefined)
    return undefined;
  return `needs sha256 or sha512: an http(s) image is pinned by its digest, got none for ${source.url}`;
}

/** User data must be #cloud-config YAML (a mapping) or a script; network config a YAML mapping. */
export const checkCloudInit: VmCheck = (doc) => {
  const ci = doc.raw.cloudInit;
  if (ci === undefined || ci === null || !doc.accepted('cloudInit')) return [];
  const out: Diagnostic[] = [];
  if (ci.userData !== undefined) out.push(...checkYamlText(doc, 'userData', true));
  if (ci.networkConfig !== undefined) out.push(...checkYamlText(doc, 'networkConfig', false));
  return out;
};

function checkYamlText(
  doc: VmDocument,
  key: 'userData' | 'networkConfig',
  isUserData: boolean,
): Diagnostic[] {
  const value = doc.raw.cloudInit![key]!;
  const field = ['cloudInit', key];
  const read = readTextOrFile(doc, key, value);
  if (!read.ok) return [doc.problem([...field, 'file'], read.message)];
  const text = read.text;
  if (isUserData) {
    if (text.startsWith('#!')) {
      return doc.raw.ssh !== undefined
        ? [
            doc.problem(
              field,
              'must be #cloud-config for `ssh:`: qvm adds its user and keys to cloud-config user data, got a script',
            ),
          ]
        : [];
    }
    if (!text.startsWith('#cloud-config')) {
      return [
        doc.problem(
          field,
          `must start with #cloud-config (YAML) or #! (a script), got ${JSON.stringify(text.slice(0, 20))}`,
        ),
      ];
    }
  }
  const lines = new LineCounter();
  const parsed = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const error = parsed.errors[0];
  const what = isUserData ? 'the user data' : 'the network config';
  if (error) {
    const at = lines.linePos(error.pos[0]);
    const message = error.message.replace(/ at line \d+, column \d+:?[\s\S]*$/, '').trim();
    if (read.file) {
      return [
        {
          file: read.file,
          line: at.line,
          column: at.col,
          path: formatFieldPath(doc.at(...field)),
          message: `YAML: ${message}`,
        },
      ];
    }
    return [doc.problem(field, `is not valid YAML (line ${at.line} of ${what}: ${message})`)];
  }
  if (!isMap(parsed.contents)) {
    return [
      doc.problem(
        read.file ? [...field, 'file'] : field,
        `must be a YAML mapping, got ${parsed.contents === null ? 'nothing' : 'another kind of YAML'}`,
      ),
    ];
  }
  return [];
}

/** SSH access: qvm starts the VM itself, and `ready: {ssh: true}` logs in as the `ssh:` user. */
export const checkSsh: VmCheck = (doc) => {
  const { raw } = doc;
  const out: Diagnostic[] = [];
  if (raw.ssh !== undefined && raw.monitor !== undefined)
    out.push(
      doc.problem(
        ['ssh'],
        'cannot be used with `monitor`: qvm gives SSH access through the cloud-init seed of a VM it starts',
      ),
    );
  if (raw.cloudInit !== undefined && raw.monitor !== undefined)
    out.push(doc.problem(['cloudInit'], 'cannot be used with `monitor`: qvm does not start an adopted VM'));
  if (raw.ready?.ssh !== undefined && raw.ssh === undefined && doc.accepted('ready'))
    out.push(doc.problem(['ready', 'ssh'], 'needs `ssh:` (the user and key qvm logs in with)'));
  return out;
};
