/**
 * Parsed manifests kept between runs (manifest/parse-cache.ts): a kept parse answers exactly what the parse it
 * was made from answers (the value, and `locate` for every field, key or value, present or missing), and it
 * is used only for the same text, file and build.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { type LoadedYaml, parseYaml } from '../../src/manifest/load.js';
import { loadManifest } from '../../src/manifest/manifest.js';
import { cachedParse, keepParse, type ParseStore } from '../../src/manifest/parse-cache.js';
import type { FieldPath } from '../../src/model/field-path.js';
import { privateFileStore } from '../../src/runtime/file-store.js';

const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));

/** A store in memory that counts what it is asked. */
function memoryStore(): ParseStore & { entries: Map<string, string>; reads: number; writes: number } {
  const entries = new Map<string, string>();
  return {
    entries,
    reads: 0,
    writes: 0,
    read(file) {
      this.reads++;
      return entries.get(file);
    },
    write(file, data) {
      this.writes++;
      entries.set(file, data);
    },
  };
}

/** Templates, merge keys, aliases, flow and block collections, empty values, keys that look like numbers. */
const TRICKY = `# a comment
x-base: &base
  memory: 256M
  forwards:
    - { host: 18080, guest: 80 }
    - tcp::2222-:22
vms:
  web:
    <<: *base
    cpus: 2
    args: [-vga, none]
  db:
    <<: [*base]
    memory: 1G
    state:
  "8080":
    disk: { path: d.qcow2, size: 4G }
    cloudInit:
      userData: |
        #cloud-config
        packages: [htop]
`;

/** Every field path of a value, and paths next to them that are not there. */
function probes(value: unknown, at: FieldPath = []): FieldPath[] {
  const out: FieldPath[] = [at, [...at, 'missing'], [...at, 7], [...at, 'missing', 'deeper']];
  if (Array.isArray(value)) {
    value.forEach((item, i) => {
      out.push([...at, String(i)]); // an index given as a string names no list item
      out.push(...probes(item, [...at, i]));
    });
  } else if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      if (/^\d+$/.test(key)) out.push([...at, Number(key)]); // a key that looks like a number, given as one
      out.push(...probes(item, [...at, key]));
    }
  }
  return out;
}

function kept(loaded: LoadedYaml, file = '/m/qvm.yaml', build = 'b1'): LoadedYaml | undefined {
  const store = memoryStore();
  keepParse(store, build, file, loaded);
  return cachedParse(store, build, file, loaded.text, loaded.file);
}

describe('a kept parse', () => {
  const texts: [string, string][] = [
    ['tricky.yaml', TRICKY],
    ...readdirSync(EXAMPLES)
      .filter((f) => f.endsWith('.yaml'))
      .map((f): [string, string] => [f, readFileSync(path.join(EXAMPLES, f), 'utf8')]),
  ];

  it.each(texts)('answers what the parse of %s answers, for every field and its neighbours', (name, text) => {
    const loaded = parseYaml(text, name);
    expect(loaded.diagnostics).toEqual([]);
    const copy = kept(loaded);
    expect(copy).toBeDefined();
    expect(copy!.file).toBe(name);
    expect(copy!.text).toBe(text);
    expect(copy!.diagnostics).toEqual([]);
    expect(copy!.value).toEqual(loaded.value);
    const paths = probes(loaded.value);
    let located = 0;
    for (const fieldPath of paths) {
      for (const key of [false, true]) {
        const expected = loaded.locate(fieldPath, { key });
        expect({ fieldPath, key, at: copy!.locate(fieldPath, { key }) }).toEqual({
          fieldPath,
          key,
          at: expected,
        });
        if (expected) located++;
      }
    }
    // The probes reached deep into each manifest, and keys sit elsewhere than their values.
    expect(paths.length).toBeGreaterThan(40);
    expect(located).toBeGreaterThan(40);
    expect(paths.some((p) => copy!.locate(p, { key: true })?.column !== copy!.locate(p)?.column)).toBe(true);
  });

  it('is used only for the same text, file and build, and never when the entry is damaged', () => {
    const loaded = parseYaml(TRICKY, 'qvm.yaml');
    const store = memoryStore();
    keepParse(store, 'b1', '/m/qvm.yaml', loaded);
    expect(cachedParse(store, 'b1', '/m/qvm.yaml', TRICKY, 'qvm.yaml')).toBeDefined();
    expect(cachedParse(store, 'b1', '/m/qvm.yaml', `${TRICKY} `, 'qvm.yaml')).toBeUndefined();
    expect(cachedParse(store, 'b2', '/m/qvm.yaml', TRICKY, 'qvm.yaml')).toBeUndefined();
    expect(cachedParse(store, 'b1', '/m/other.yaml', TRICKY, 'qvm.yaml')).toBeUndefined();
    store.entries.set('/m/qvm.yaml', store.entries.get('/m/qvm.yaml')!.slice(0, 100));
    expect(cachedParse(store, 'b1', '/m/qvm.yaml', TRICKY, 'qvm.yaml')).toBeUndefined();
    store.entries.set('/m/qvm.yaml', 'null');
    expect(cachedParse(store, 'b1', '/m/qvm.yaml', TRICKY, 'qvm.yaml')).toBeUndefined();
  });

  it('is not kept for a text with problems, or with values JSON cannot carry exactly', () => {
    for (const text of [
      'vms:\n  web: {}\n  web: {}\n', // a duplicate key
      'vms: [\n', // not YAML
      'vms:\n  web:\n    x: .nan\n',
      'vms:\n  web:\n    x: .inf\n',
      'vms:\n  web:\n    x: -0\n',
    ]) {
      const store = memoryStore();
      keepParse(store, 'b1', '/m/qvm.yaml', parseYaml(text, 'qvm.yaml'));
      expect({ text, writes: store.writes }).toEqual({ text, writes: 0 });
    }
  });
});

describe('loadManifest with a parse cache', () => {
  it('parses a file once, then reads it from the store until the file changes, with the same result', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'qvm-parse-cache-'));
    try {
      const file = path.join(dir, 'qvm.yaml');
      const valid = TRICKY.replace('      - tcp::2222-:22\n', '').replace(
        / {4}state:\n {2}"8080":\n/,
        '    forwards: []\n  big:\n',
      );
      writeFileSync(file, valid);
      const store = privateFileStore(path.join(dir, 'cache', 'manifests'));
      const counting = memoryStore();
      const spy: ParseStore = {
        read: (key) => {
          counting.reads++;
          return store.read(key);
        },
        write: (key, data) => {
          counting.writes++;
          store.write(key, data);
        },
      };
      const options = { parseCache: { store: spy, build: 'b1' } };
      const plain = await loadManifest(file);
      const first = await loadManifest(file, options);
      const second = await loadManifest(file, options);
      expect(counting.writes).toBe(1);
      expect(counting.reads).toBe(2);
      for (const loaded of [first, second]) {
        expect(loaded.vms).toEqual(plain.vms);
        expect(loaded.locate(['vms', 'db', 'memory'])).toEqual(plain.locate(['vms', 'db', 'memory']));
      }
      // The entry is a private file in a private folder.
      const [entry] = readdirSync(path.join(dir, 'cache', 'manifests'));
      expect(entry).toMatch(/^[0-9a-f]{16}\.json$/);
      writeFileSync(file, valid.replace('cpus: 2', 'cpus: 3'));
      const changed = await loadManifest(file, options);
      expect(changed.vms.find((v) => v.name === 'web')?.cpus).toBe(3);
      expect(counting.writes).toBe(2);
      // A manifest with problems reports them at the same places, from a kept parse as from a new one.
      writeFileSync(file, TRICKY);
      const problems = async (o = {}) =>
        loadManifest(file, o).then(
          () => [],
          (error: { diagnostics: unknown[] }) => error.diagnostics,
        );
      const expected = await problems();
      expect(expected.length).toBe(4);
      expect(await problems(options)).toEqual(expected);
      expect(await problems(options)).toEqual(expected);
      expect(counting.writes).toBe(3);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
