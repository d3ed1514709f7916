/**
 * Shell completion as a shell runs it: the script `qvm completion SHELL` prints, loaded into a real bash, fish
 * and zsh, asking the real qvm for candidates. VM names come from the manifest in effect (`-f` respected), and
 * completing never runs QEMU: fake qemu programs earlier on PATH would leave a mark.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { QVM_BIN } from '../helpers/cli.js';

const dir = mkdtempSync(path.join(tmpdir(), 'qvm-completion-'));
const bin = path.join(dir, 'bin');
const marker = path.join(dir, 'qemu-was-run');
const env = { PATH: `${bin}:${process.env.PATH}`, NO_COLOR: '1' };

beforeAll(() => {
  mkdirSync(bin);
  const script = (file: string, text: string) => {
    writeFileSync(path.join(bin, file), text);
    chmodSync(path.join(bin, file), 0o755);
  };
  script('qvm', `#!/bin/sh\nexec node ${QVM_BIN} "$@"\n`);
  for (const qemu of ['qemu-system-x86_64', 'qemu-img']) script(qemu, `#!/bin/sh\ntouch ${marker}\nexit 1\n`);
  writeFileSync(
    path.join(dir, 'qvm.yaml'),
    'x-base: &base {memory: 256M}\nvms:\n  web: {<<: *base}\n  db: {<<: *base}\n',
  );
  writeFileSync(path.join(dir, 'other.yaml'), 'vms:\n  api: {}\n');
  mkdirSync(path.join(dir, 'fleet'));
  writeFileSync(path.join(dir, 'fleet', 'a.yaml'), 'vms:\n  one: {}\n');
  writeFileSync(path.join(dir, 'fleet', 'b.yml'), 'vms:\n  two: {}\n');
});

/** COMPREPLY of the bash completion for these words (the last one being typed). */
async function bash(...words: string[]): Promise<string[]> {
  const program = [
    'source <(qvm completion bash)',
    'COMP_WORDS=("$@")',
    'COMP_CWORD=$(( $# - 1 ))',
    '_qvm_complete',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: bash, not a template
    '[ ${#COMPREPLY[@]} -gt 0 ] && printf "%s\\n" "${COMPREPLY[@]}"',
    'exit 0',
  ].join('\n');
  const r = await execa('bash', ['-c', program, 'bash', ...words], { cwd: dir, env });
  return r.stdout.split('\n').filter(Boolean);
}

const COMMANDS = [
  'validate',
  'plan',
  'apply',
  'watch',
  'status',
  'destroy',
  'logs',
  'snapshot',
  'ssh',
  'cp',
  'ssh-config',
  'exec',
  'screenshot',
  'vnc',
  'pull',
  'images',
  'monitor',
  'console',
  'export',
  'init',
  'explain',
  'schema',
  'completion',
];

describe('bash completion', () => {
  it.each([
    [['qvm', ''], COMMANDS],
    [['qvm', 'st'], ['status']],
    [
      ['qvm', 'logs', ''],
      ['web', 'db'],
    ],
    [['qvm', 'logs', 'w'], ['web']],
    [['qvm', 'logs', '-f', 'other.yaml', ''], ['api']],
    [['qvm', 'status', '--file', '=', 'other.yaml', '--no-color', 'x'], []],
    [['qvm', 'destroy', '-f', 'fleet', 'one', ''], ['two']],
    [
      ['qvm', 'monitor', ''],
      ['web', 'db'],
    ],
    [['qvm', 'monitor', '--socket', '/tmp/m.sock', ''], []],
    [
      ['qvm', 'snapshot', ''],
      ['list', 'save', 'delete'],
    ],
    [
      ['qvm', 'snapshot', 'list', ''],
      ['web', 'db'],
    ],
    [
      ['qvm', 'status', '-o', ''],
      ['human', 'json'],
    ],
    [['qvm', 'status', '--o'], ['--output']],
    [['qvm', 'images', ''], ['prune']],
    [
      ['qvm', 'completion', ''],
      ['bash', 'zsh', 'fish'],
    ],
    [['qvm', 'init', '--image', ''], ['debian-12']],
    [
      ['qvm', 'explain', 'ready.h'],
      ['ready.http', 'ready.http.port', 'ready.http.path', 'ready.http.status'],
    ],
    [['qvm', 'validate', '-f', 'oth'], ['other.yaml']],
    [['qvm', 'validate', '-f', 'fl'], ['fleet']],
  ])('%j', async (words, expected) => {
    expect(await bash(...words)).toEqual(expected);
  });

  it('never ran QEMU', () => {
    expect(existsSync(marker)).toBe(false);
  });
});

describe('fish completion', () => {
  it('passes fish -n and completes commands, options and VM names with descriptions', async () => {
    const script = (await execa('node', [QVM_BIN, 'completion', 'fish'])).stdout;
    writeFileSync(path.join(dir, 'qvm.fish'), script);
    await execa('fish', ['-n', path.join(dir, 'qvm.fish')]);
    const complete = async (line: string) =>
      (
        await execa('fish', ['--no-config', '-c', `source qvm.fish; complete -C '${line}'`], {
          cwd: dir,
          env,
        })
      ).stdout.split('\n');
    expect(await complete('qvm st')).toEqual(['status\tone row per VM']);
    expect(await complete('qvm logs ')).toEqual(['db\tVM', 'web\tVM']); // fish sorts them
    expect(await complete('qvm logs -f other.yaml ')).toEqual(['api\tVM']);
    expect(await complete('qvm status -o ')).toEqual(['human', 'json']);
  });
});

describe('zsh completion', () => {
  it('passes zsh -n, and its function offers what qvm answers', async () => {
    const script = (await execa('node', [QVM_BIN, 'completion', 'zsh'])).stdout;
    writeFileSync(path.join(dir, '_qvm'), script);
    await execa('zsh', ['-n', path.join(dir, '_qvm')]);
    // compsys itself needs a terminal: _describe and compdef stand in, printing what they are given.
    const program = [
      'compdef() { :; }',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: zsh, not a template
      '_describe() { print -rl -- "${(@P)4}"; }',
      '_files() { print FILES; }',
      'source ./_qvm',
      'words=("$@"); CURRENT=$#',
      '_qvm',
    ].join('\n');
    const run = async (...words: string[]) =>
      (await execa('zsh', ['-f', '-c', program, 'zsh', ...words], { cwd: dir, env })).stdout.split('\n');
    expect(await run('qvm', 'logs', '')).toEqual(['web:VM', 'db:VM']);
    expect(await run('qvm', 'ssh', 'web', '--', '')).toEqual(['FILES']);
  });
});
