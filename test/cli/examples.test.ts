/** Every manifest in examples/ passes the real `qvm validate`, and the ones the README names are there. */
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { qvm } from '../helpers/cli.js';

describe('examples/', () => {
  const folder = new URL('../../examples/', import.meta.url).pathname;
  const manifests = readdirSync(folder).filter((name) => name.endsWith('.yaml'));

  it('holds the examples the README names', () => {
    expect(manifests).toEqual(
      expect.arrayContaining(['demo.yaml', 'debian-install.yaml', 'debian-dev.yaml', 'multi.yaml']),
    );
  });

  it.each(manifests)('%s passes qvm validate', async (name) => {
    const r = await qvm(['validate', '-f', name], { cwd: folder });
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${name}: valid, \\d+ VMs? `));
  });
});
