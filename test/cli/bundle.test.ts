/**
 * bin/qvm.js runs the esbuild bundles in dist/bundle/ (built by global-setup like every CLI test's qvm): with
 * QVM_DEBUG, the stack of an internal error names the src/ files, through the bundle's source map; a code
 * cache, when qvm keeps one, never changes what a command does; and a command with a bundle of its own
 * behaves exactly as the whole CLI does.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import module from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const QVM_BIN = fileURLToPath(new URL('../../bin/qvm.js', import.meta.url));
const BUNDLE_DIR = fileURLToPath(new URL('../../dist/bundle', import.meta.url));
const BUNDLE = path.join(BUNDLE_DIR, 'qvm.cjs');

describe('the bundled CLI', () => {
  it('names src/ files in the stack of an internal error when QVM_DEBUG is set', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'qvm-bundle-'));
    try {
      const manifest = path.join(dir, 'qvm.yaml');
      writeFileSync(manifest, 'vms:\n  web: {}\n');
      // A stdout that throws a plain Error is a bug as far as qvm can tell: main prints it as an internal error.
      const script = `
        process.setSourceMapsEnabled(true);
        const { createRequire } = await import('node:module');
        const { main } = createRequire(import.meta.url)(${JSON.stringify(BUNDLE)});
        const pc = { red: (s) => s };
        const output = {
          out: { write() { throw new Error('stdout broke'); } },
          err: { write: (s) => process.stdout.write(s) },
          color: pc,
          interactive: false,
        };
        process.exitCode = await main(['node', 'qvm', 'validate', '-f', ${JSON.stringify(manifest)}], output);
      `;
      let printed = '';
      let status = 0;
      try {
        printed = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
          env: { ...process.env, QVM_DEBUG: '1' },
          encoding: 'utf8',
        });
      } catch (error) {
        const failed = error as { status: number; stdout: string };
        status = failed.status;
        printed = failed.stdout;
      }
      expect(status).toBe(70);
      expect(printed).toContain(
        'internal error (this is a bug in qvm; please report it): Error: stdout broke',
      );
      expect(printed).toMatch(/at validateCommand \(.*\/src\/cli\/validate\.ts:\d+:\d+\)/);
      expect(printed).not.toContain('dist/bundle');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps a private code cache that never changes what a command prints, and refuses one open to others', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'qvm-cache-'));
    try {
      const manifest = path.join(dir, 'qvm.yaml');
      writeFileSync(manifest, 'vms:\n  web: {}\n');
      const cacheRoot = path.join(dir, 'cache');
      // Without coverage: a qvm measured by npm test's coverage (NODE_V8_COVERAGE) runs without a code cache.
      // Node copies the variable into every child's environment unless the environment sets it: set it empty.
      const validate = () =>
        execFileSync(process.execPath, [QVM_BIN, 'validate', '-f', manifest], {
          env: { ...process.env, NODE_V8_COVERAGE: '', QVM_CACHE_DIR: cacheRoot, QVM_DEBUG: '' },
          encoding: 'utf8',
        });
      const expected = `${manifest}: valid, 1 VM (web)\n`;
      expect(validate()).toBe(expected);
      const code = path.join(cacheRoot, 'code');
      expect(statSync(code).mode & 0o777).toBe(0o700);
      if (typeof (module as { enableCompileCache?: unknown }).enableCompileCache === 'function') {
        // Node 22.1+: Node's own compile cache, in qvm's folder.
        expect(validate()).toBe(expected);
        expect(readdirSync(code).length).toBeGreaterThan(0);
        return;
      }
      const [file, ...others] = readdirSync(code);
      expect(others).toEqual([]);
      expect(file).toMatch(/^validate-[0-9a-z]+\.bin$/);
      const cache = path.join(code, file!);
      expect(statSync(cache).mode & 0o777).toBe(0o600);
      const header = () => {
        const data = readFileSync(cache);
        return data.subarray(0, data.indexOf(10)).toString();
      };
      const key = header().replace(/ \d+$/, '');
      expect(header()).toBe(`${key} 1`);
      // The next runs add what they compiled, up to the fourth; from then on the cache is only read.
      for (const generation of [2, 3, 4]) {
        expect(validate()).toBe(expected);
        expect(header()).toBe(`${key} ${generation}`);
      }
      const written = readFileSync(cache);
      expect(validate()).toBe(expected);
      expect(readFileSync(cache).equals(written)).toBe(true); // used, not written again
      // Data V8 refuses (same key, other bytes): the command still works, and the cache is made anew.
      writeFileSync(cache, Buffer.concat([Buffer.from(`${key} 4\n`), Buffer.alloc(4096, 7)]));
      expect(validate()).toBe(expected);
      expect(header()).toBe(`${key} 1`);
      expect(readFileSync(cache).length).toBeGreaterThan(key.length + 4096);
      // A cache of another build of the bundle (another key) is never used: it is replaced.
      writeFileSync(
        cache,
        Buffer.concat([Buffer.from(`${key}0 4\n`), written.subarray(written.indexOf(10) + 1)]),
      );
      expect(validate()).toBe(expected);
      expect(header()).toBe(`${key} 1`);
      // A folder others can write is never read nor written.
      rmSync(cache);
      chmodSync(code, 0o777);
      expect(validate()).toBe(expected);
      expect(readdirSync(code)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a command's own bundle", () => {
  const bundles = readdirSync(BUNDLE_DIR)
    .filter((f) => f.endsWith('.cjs') && f !== 'qvm.cjs')
    .map((f) => f.slice(0, -'.cjs'.length));

  it('exists for the commands a person waits on most', () => {
    expect(bundles.sort()).toEqual(['apply', 'destroy', 'monitor', 'plan', 'status', 'validate']);
  });

  it('is what bin/qvm.js runs for its command, and the whole CLI runs the rest', () => {
    // With QVM_DEBUG, bin/qvm.js loads the bundle with require(), which NODE_DEBUG=module reports.
    const loaded = (args: string[]) => {
      const result = spawnSync(process.execPath, [QVM_BIN, ...args], {
        env: { ...process.env, NODE_V8_COVERAGE: '', QVM_DEBUG: '1', NODE_DEBUG: 'module' },
        encoding: 'utf8',
      });
      return [...result.stderr.matchAll(/dist\/bundle\/([a-z-]+)\.cjs/g)].map((m) => m[1]);
    };
    expect(new Set(loaded(['validate', '--help']))).toEqual(new Set(['validate']));
    expect(new Set(loaded(['monitor', '--help']))).toEqual(new Set(['monitor']));
    expect(new Set(loaded(['explain', 'vms']))).toEqual(new Set(['qvm']));
    expect(new Set(loaded(['--no-color', 'validate', '--help']))).toEqual(new Set(['qvm']));
  });

  it('prints what the whole CLI prints: help, usage errors, manifest errors, results', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'qvm-bundles-'));
    try {
      writeFileSync(path.join(dir, 'good.yaml'), 'vms:\n  web: {}\n');
      writeFileSync(path.join(dir, 'bad.yaml'), 'vms:\n  web:\n    memroy: 1G\n');
      const cases = (command: string) => [
        [command, '--help'],
        [command, '--no-such-option'],
        [command, '-f', 'bad.yaml'],
        [command, '-f', 'missing.yaml'],
        ...(command === 'monitor' ? [[command, '--socket', 'no-such.sock', 'info', 'status']] : []),
        ...(command === 'validate' ? [[command, '-f', 'good.yaml']] : []),
      ];
      // Both bundles in one process each, their main() given each command line, the outputs collected.
      const script = `
        const { createRequire } = require('node:module');
        const load = (name) => createRequire(${JSON.stringify(BUNDLE)})(${JSON.stringify(BUNDLE_DIR)} + '/' + name + '.cjs');
        const pc = { red: (s) => s, green: (s) => s, yellow: (s) => s, bold: (s) => s, dim: (s) => s, cyan: (s) => s };
        const run = async (bundle, argv) => {
          let out = '';
          let err = '';
          const output = { out: { write: (s) => { out += s; return true; } }, err: { write: (s) => { err += s; return true; } }, color: pc, interactive: false };
          const code = await load(bundle).main(['node', 'qvm', ...argv], output);
          return { code, out, err };
        };
        (async () => {
          const rows = [];
          for (const [bundle, argv] of ${JSON.stringify(bundles.flatMap((b) => cases(b).map((argv) => [b, argv])))})
            rows.push({ argv, own: await run(bundle, argv), whole: await run('qvm', argv) });
          process.stdout.write(JSON.stringify(rows));
        })();
      `;
      const rows = JSON.parse(
        execFileSync(process.execPath, ['-e', script], {
          cwd: dir,
          env: { ...process.env, NODE_V8_COVERAGE: '', QVM_RUNTIME_DIR: path.join(dir, 'run') },
          encoding: 'utf8',
        }),
      ) as { argv: string[]; own: unknown; whole: unknown }[];
      expect(rows.length).toBe(bundles.length * 4 + 2);
      for (const row of rows)
        expect({ argv: row.argv, ...(row.own as object) }).toEqual({
          argv: row.argv,
          ...(row.whole as object),
        });
      // The cases are not all alike: help, a usage error and a manifest error each came up.
      const validate = rows
        .filter((r) => r.argv[0] === 'validate')
        .map((r) => r.own as { code: number; out: string; err: string });
      expect(validate.map((r) => r.code)).toEqual([0, 1, 1, 1, 0]);
      expect(validate[0]!.out).toContain('Usage: qvm validate [options]');
      expect(validate[1]!.err).toContain("error: unknown option '--no-such-option'");
      expect(validate[2]!.err).toContain('bad.yaml:3:5');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
