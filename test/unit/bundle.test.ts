/**
 * bin/qvm.js runs the esbuild bundle in dist/bundle/ (built by global-setup like every CLI test's qvm): with
 * QVM_DEBUG, the stack of an internal error names the src/ files, through the bundle's source maps.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const BUNDLE_MAIN = fileURLToPath(new URL('../../dist/bundle/main.js', import.meta.url));

describe('the bundled CLI', () => {
  it('names src/ files in the stack of an internal error when QVM_DEBUG is set', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'qvm-bundle-'));
    try {
      const manifest = path.join(dir, 'qvm.yaml');
      writeFileSync(manifest, 'vms:\n  web: {}\n');
      // A stdout that throws a plain Error is a bug as far as qvm can tell: main prints it as an internal error.
      const script = `
        process.setSourceMapsEnabled(true);
        const { main } = await import(${JSON.stringify(BUNDLE_MAIN)});
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
});
