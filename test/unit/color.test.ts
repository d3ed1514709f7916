/** Colour only on terminals, never with NO_COLOR or --no-color, always with FORCE_COLOR. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { colorEnabled } from '../../src/cli/output.js';
import { qvm } from '../helpers/cli.js';

describe('colour', () => {
  const tty = { isTTY: true };
  const pipe = { isTTY: false };

  it.each([
    ['both terminals', [tty, tty], {}, true],
    ['stdout piped', [pipe, tty], {}, false],
    ['stderr redirected', [tty, pipe], {}, false],
    ['NO_COLOR on a terminal', [tty, tty], { NO_COLOR: '1' }, false],
    ['NO_COLOR empty', [tty, tty], { NO_COLOR: '' }, true],
    ['TERM=dumb', [tty, tty], { TERM: 'dumb' }, false],
    ['FORCE_COLOR in a pipe', [pipe, pipe], { FORCE_COLOR: '1' }, true],
    ['FORCE_COLOR=0', [tty, tty], { FORCE_COLOR: '0' }, true],
  ] as const)('%s', (_, streams, env, expected) => {
    expect(colorEnabled([...streams], env)).toBe(expected);
  });

  it('--no-color wins over FORCE_COLOR, anywhere on the command line', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'qvm-color-'));
    writeFileSync(path.join(dir, 'bad.yaml'), 'vms:\n  web:\n    memory: lots\n');
    const forced = await qvm(['validate', '-f', 'bad.yaml'], { cwd: dir, env: { FORCE_COLOR: '1' } });
    expect(forced.stderr).toContain('\u001b[31m1 problem in bad.yaml\u001b[39m');
    for (const args of [
      ['--no-color', 'validate', '-f', 'bad.yaml'],
      ['validate', '-f', 'bad.yaml', '--no-color'],
    ]) {
      const plain = await qvm(args, { cwd: dir, env: { FORCE_COLOR: '1' } });
      expect(plain.exitCode).toBe(1);
      expect(plain.stderr).toBe(
        'bad.yaml:3:13: vms.web.memory: must be a size such as 512M or 2G, or a positive integer in MiB, got "lots"\n1 problem in bad.yaml\n',
      );
    }
  });
});
