/** `qvm init` as a user runs it: a commented starter that passes `qvm validate`, and never an overwrite. */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { qvm } from '../helpers/cli.js';

function folder(): string {
  return mkdtempSync(path.join(tmpdir(), 'qvm-init-'));
}

/** The schema a modeline names, when the first line is one. */
function modelineSchema(text: string): string | undefined {
  return /^# yaml-language-server: \$schema=(.+)\n/.exec(text)?.[1];
}

describe('qvm init', () => {
  it('writes a commented qvm.yaml with the schema modeline, one VM, forwards and a ready probe', async () => {
    const dir = folder();
    const r = await qvm(['init'], { cwd: dir });
    expect(r).toEqual({
      exitCode: 0,
      stdout: 'wrote qvm.yaml: one VM, web. Next: qvm validate, qvm plan, qvm apply.\n',
      stderr: '',
    });
    const text = readFileSync(path.join(dir, 'qvm.yaml'), 'utf8');
    expect(existsSync(modelineSchema(text)!)).toBe(true);
    expect(text).toMatch(/^vms:\n {2}web:\n/m);
    expect(text).toMatch(/^ {4}forwards:\n/m);
    expect(text).toMatch(/^ {4}ready:\n {6}http: \{ port: 8080, path: \/, status: 200 \}\n/m);
    expect(text.split('\n').filter((l) => l.trimStart().startsWith('#')).length).toBeGreaterThan(10);
    expect(await qvm(['validate'], { cwd: dir })).toEqual({
      exitCode: 0,
      stdout: 'qvm.yaml: valid, 1 VM (web)\n',
      stderr: '',
    });
  });

  it('refuses to overwrite a file, and leaves it as it was', async () => {
    const dir = folder();
    writeFileSync(path.join(dir, 'qvm.yaml'), 'vms: {}\n');
    expect(await qvm(['init'], { cwd: dir })).toEqual({
      exitCode: 1,
      stdout: '',
      stderr:
        'error: qvm.yaml already exists; qvm init never overwrites a file (remove it, or use -f NEW.yaml)\n',
    });
    expect(readFileSync(path.join(dir, 'qvm.yaml'), 'utf8')).toBe('vms: {}\n');
    mkdirSync(path.join(dir, 'vms'));
    const r = await qvm(['init', '-f', 'vms'], { cwd: dir });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe('error: vms is a folder: name the manifest file to write, e.g. -f vms/qvm.yaml\n');
  });

  it('--image debian-12 writes a dev VM with a pinned Debian image, cloud-init and ssh, that validates', async () => {
    const dir = folder();
    const r = await qvm(['init', '--image', 'debian-12', '-f', 'dev/dev.yaml'], { cwd: dir });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('wrote dev/dev.yaml: one VM, dev. Next: qvm validate, qvm plan, qvm apply.\n');
    expect(r.stderr).toBe('');
    const text = readFileSync(path.join(dir, 'dev/dev.yaml'), 'utf8');
    const url =
      /^ {4}url: (https:\/\/cloud\.debian\.org\/images\/cloud\/bookworm\/(\d{8}-\d{4})\/debian-12-genericcloud-amd64-\2\.qcow2)$/m.exec(
        text,
      );
    expect(url).not.toBeNull();
    // The same build and digest as examples/debian-dev.yaml: one pinned image in the project, not two.
    const example = readFileSync(new URL('../../examples/debian-dev.yaml', import.meta.url), 'utf8');
    expect(example).toContain(`url: ${url![1]}\n`);
    const digest = /^ {4}sha512: ([0-9a-f]{128})$/m.exec(text)?.[1];
    expect(digest).toBeDefined();
    expect(example).toContain(`sha512: ${digest}\n`);
    for (const field of ['image: debian-12', 'cloudInit:', 'ssh: { user: dev }', 'ready: { ssh: true'])
      expect(text).toContain(`    ${field}`);
    expect(await qvm(['validate', '-f', 'dev/dev.yaml'], { cwd: dir })).toEqual({
      exitCode: 0,
      stdout: 'dev/dev.yaml: valid, 1 VM (dev)\n',
      stderr: '',
    });
  });

  it('knows only the images it has a starter for', async () => {
    const r = await qvm(['init', '--image', 'ubuntu'], { cwd: folder() });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(
      "error: option '--image <name>' argument 'ubuntu' is invalid. Allowed choices are debian-12.",
    );
  });
});
