/**
 * bin/qvm.js runs the esbuild bundle dist/bundle/qvm.cjs (built by global-setup like every CLI test's qvm):
 * with QVM_DEBUG, the stack of an internal error names the src/ files, through the bundle's source map; and
 * a code cache, when qvm keeps one, never changes what a command does.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import module from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const QVM_BIN = fileURLToPath(new URL('../../bin/qvm.js', import.meta.url));
const BUNDLE = fileURLToPath(new URL('../../dist/bundle/qvm.cjs', import.meta.url));

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
      const written = readFileSync(cache);
      expect(validate()).toBe(expected);
      expect(readFileSync(cache).equals(written)).toBe(true); // used, not written again
      // Data V8 refuses (same key, other bytes): the command still works, and the cache is made anew.
      const key = written.subarray(0, written.indexOf(10) + 1);
      writeFileSync(cache, Buffer.concat([key, Buffer.alloc(4096, 7)]));
      expect(validate()).toBe(expected);
      expect(readFileSync(cache).equals(written)).toBe(false);
      expect(readFileSync(cache).subarray(0, key.length).equals(key)).toBe(true);
      expect(readFileSync(cache).length).toBeGreaterThan(key.length + 4096);
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
