/**
 * The layers of src/ as the README draws them, checked from the imports themselves: each folder imports only
 * folders below it, and no two files import each other, even through others.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

/** What each folder may import (besides itself). errors.ts is the root of the error tree: everyone may use it. */
const ALLOWED: Record<string, string[]> = {
  model: [],
  manifest: ['model'],
  runtime: ['model'],
  qemu: ['model', 'runtime'],
  images: ['model', 'manifest', 'runtime', 'qemu'],
  guest: ['model', 'manifest', 'runtime'],
  ready: ['model', 'manifest', 'runtime', 'qemu', 'guest'],
  observe: ['model', 'manifest', 'qemu', 'runtime', 'images'],
  plan: ['model', 'manifest', 'qemu', 'runtime', 'images', 'observe'],
  apply: ['model', 'manifest', 'qemu', 'runtime', 'images', 'guest', 'ready', 'plan'],
  reconcile: ['model', 'manifest', 'qemu', 'runtime', 'images', 'guest', 'observe', 'plan', 'apply'],
  watch: ['model', 'manifest', 'qemu', 'runtime', 'observe', 'plan', 'apply', 'reconcile'],
  export: ['model', 'manifest', 'qemu', 'guest'],
  cli: [
    'model',
    'manifest',
    'qemu',
    'runtime',
    'images',
    'guest',
    'ready',
    'observe',
    'plan',
    'apply',
    'reconcile',
    'watch',
    'export',
  ],
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? sourceFiles(path.join(dir, e.name))
      : e.name.endsWith('.ts')
        ? [path.join(dir, e.name)]
        : [],
  );
}

/** Each file's relative imports, resolved to the files they name (`.js` in the source is the `.ts` file). */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(SRC)) {
    const text = readFileSync(file, 'utf8');
    const targets = [...text.matchAll(/^(?:import|export)[^'"]*from '(\.[^']+)'/gm)].map((m) =>
      path.resolve(path.dirname(file), m[1]!.replace(/\.js$/, '.ts')),
    );
    graph.set(file, targets);
  }
  return graph;
}

const folderOf = (file: string) => path.relative(SRC, file).split(path.sep)[0]!.replace(/\.ts$/, '');

describe('architecture', () => {
  const graph = importGraph();

  it('reads every folder of src/ and knows its layer', () => {
    const folders = new Set([...graph.keys()].map(folderOf));
    folders.delete('errors');
    expect([...folders].sort()).toEqual(Object.keys(ALLOWED).sort());
    expect(graph.size).toBeGreaterThan(50);
  });

  it('imports only run down the layers', () => {
    const wrong: string[] = [];
    for (const [file, targets] of graph) {
      const from = folderOf(file);
      for (const target of targets) {
        const to = folderOf(target);
        if (to === from || to === 'errors' || from === 'errors') continue;
        if (!ALLOWED[from]?.includes(to))
          wrong.push(`${path.relative(SRC, file)} -> ${path.relative(SRC, target)}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('has no import cycles between files', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'visiting' | 'done'>();
    const visit = (file: string, trail: string[]) => {
      if (state.get(file) === 'done') return;
      if (state.get(file) === 'visiting') {
        cycles.push(
          [...trail.slice(trail.indexOf(file)), file].map((f) => path.relative(SRC, f)).join(' -> '),
        );
        return;
      }
      state.set(file, 'visiting');
      for (const target of graph.get(file) ?? []) visit(target, [...trail, file]);
      state.set(file, 'done');
    };
    for (const file of graph.keys()) visit(file, []);
    expect(cycles).toEqual([]);
  });
});

describe('one pattern each', () => {
  it('the schema uses the same VM name and snapshot tag patterns as the code', async () => {
    const { VM_NAME, SNAPSHOT_TAG } = await import('../../src/model/names.js');
    const schema = JSON.parse(
      readFileSync(new URL('../../schemas/qvm.schema.json', import.meta.url), 'utf8'),
    );
    expect(schema.properties.vms.propertyNames.pattern).toBe(VM_NAME.source);
    expect(schema.$defs.vm.properties.snapshot.pattern).toBe(SNAPSHOT_TAG.source);
  });
});
