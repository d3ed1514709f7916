/** `qvm validate` as a user runs it: located messages, exit codes, never a stack trace. */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { qvm } from '../helpers/cli.js';

const dir = mkdtempSync(path.join(tmpdir(), 'qvm-validate-'));
mkdirSync(path.join(dir, 'empty'));
function file(name: string, text: string): string {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('qvm validate', () => {
  it('gives five located messages for five mistakes, and exits 1', async () => {
    const f = file(
      'vm.yaml',
      [
        'vms:',
        '  web:',
        '    memory: lots',
        '    forwards:',
        '      - { host: 80a, guest: 80 }',
        '    snapshot: "a b"',
        '    initrd: i.gz',
        '    colour: blue',
        '',
      ].join('\n'),
    );
    const r = await qvm(['validate', '-f', 'vm.yaml'], { cwd: dir });
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      [
        'vm.yaml:3:13: vms.web.memory: must be a size such as 512M or 2G, or a positive integer in MiB, got "lots"',
        'vm.yaml:5:17: vms.web.forwards[0].host: must be an integer from 1 to 65535, got "80a"',
        "vm.yaml:6:15: vms.web.snapshot: must be a snapshot tag of letters, digits, '.', '_' and '-', at most 64 characters, got \"a b\"",
        'vm.yaml:7:13: vms.web.initrd: needs `kernel` (direct kernel boot)',
        'vm.yaml:8:5: vms.web.colour: is not a known field; known fields: memory, cpus, disk, image, cloudInit, ssh, agent, mounts, disks, display, cdrom, kernel, initrd, append, nic, forwards, snapshot, state, stopTimeout, accel, monitor, restart, ready, args',
        '5 problems in vm.yaml',
        '',
      ].join('\n'),
    );
    expect(f).toBeTruthy();
  });

  it('accepts a valid manifest from ./qvm.yaml by default', async () => {
    file('qvm.yaml', 'vms:\n  web:\n    forwards: ["tcp::8080-:80"]\n');
    expect(await qvm(['validate'], { cwd: dir })).toEqual({
      exitCode: 0,
      stdout: 'qvm.yaml: valid, 1 VM (web)\n',
      stderr: '',
    });
  });

  it.each([
    ['missing.yaml', 'missing.yaml: cannot read the manifest: no such file\n1 problem in missing.yaml\n'],
    ['empty', 'empty: is a folder with no *.yaml or *.yml manifest in it\n1 problem in empty\n'],
  ])('says why it cannot read %s', async (name, stderr) => {
    expect(await qvm(['validate', '-f', name], { cwd: dir })).toEqual({ exitCode: 1, stdout: '', stderr });
  });

  it('locates YAML syntax errors and never prints a stack trace', async () => {
    file('broken.yaml', 'vms:\n  web: [1, 2\n');
    const r = await qvm(['validate', '-f', 'broken.yaml'], { cwd: dir });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^broken\.yaml:3:1: YAML: /);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
