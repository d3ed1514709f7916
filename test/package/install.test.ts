/**
 * The package as users receive it. In a copy of this repository (what a clone holds: the tracked files, and new
 * ones not ignored, so the test sees the working tree), the README's Install commands run exactly as written,
 * with npm's global prefix pointed at a temporary folder (npm_config_prefix, as `--prefix` would); the
 * tarball holds exactly what runs; then the installed `qvm` runs from another folder.
 *
 * It costs a `npm ci` (from npm's cache when it can: prefer-offline), a build and an install: about half a
 * minute.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { privateDir } from '../helpers/env.js';
import { removeDir, tempDir } from '../helpers/qemu.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const clone = tempDir('qvm-clone-');
const prefix = tempDir('qvm-prefix-');
const elsewhere = tempDir('qvm-elsewhere-');
const runtime = privateDir('qvmrt-');
const version = (JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string })
  .version;

const env = {
  npm_config_prefix: prefix,
  npm_config_prefer_offline: 'true',
  npm_config_audit: 'false',
  npm_config_fund: 'false',
  npm_config_update_notifier: 'false',
  PATH: `${path.join(prefix, 'bin')}:${process.env.PATH}`,
  QVM_RUNTIME_DIR: runtime,
  QVM_STATE_DIR: `${runtime}-state`,
  NO_COLOR: '1',
};

/** The command lines of the README's Install section, comments and blank lines left out. */
function installCommands(): string[] {
  const readme = readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Install\n');
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)]
    .flatMap((m) => m[1]!.split('\n'))
    .map((line) => line.replace(/\s+#\s.*$/, '').trim())
    .filter(Boolean);
}

/** Copies the repository as a clone holds it. */
function copyRepository(): string[] {
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: REPO,
    encoding: 'utf8',
  })
    .split('\0')
    .filter((f) => f && existsSync(path.join(REPO, f)) && statSync(path.join(REPO, f)).isFile());
  for (const file of files) {
    mkdirSync(path.dirname(path.join(clone, file)), { recursive: true });
    copyFileSync(path.join(REPO, file), path.join(clone, file)); // keeps the mode (guest/build.sh runs)
  }
  return files;
}

async function sh(line: string, cwd: string) {
  return execa('bash', ['-c', line], { cwd, env, reject: false, timeout: 180_000 });
}

describe('the npm package', () => {
  const commands = installCommands();
  let files: string[] = [];
  const outputs = new Map<string, string>();

  beforeAll(async () => {
    files = copyRepository();
    for (const line of commands) {
      if (line.startsWith('sudo ')) continue; // the system's packages: QEMU is here already
      const r = await sh(line, line.startsWith('qvm') ? elsewhere : clone);
      if (r.exitCode !== 0) throw new Error(`\`${line}\` failed (${r.exitCode}):\n${r.stdout}\n${r.stderr}`);
      outputs.set(line, String(r.stdout));
    }
  }, 240_000);

  afterAll(() => {
    for (const folder of [clone, prefix, elsewhere, runtime, `${runtime}-state`]) removeDir(folder);
  });

  it('is built, packed and installed by the README commands, and run from another folder', () => {
    expect(commands).toEqual([
      'npm ci',
      'npm pack',
      'npm install -g qvm-*.tgz',
      'sudo apt-get install -y --no-install-recommends qemu-system-x86 qemu-utils',
      'qvm --version',
      'qvm init',
      'qvm validate',
      'qvm plan',
    ]);
    expect(outputs.get('qvm --version')).toBe(version);
    expect(outputs.get('qvm validate')).toBe('qvm.yaml: valid, 1 VM (web)');
    expect(outputs.get('qvm plan')).toMatch(/^ {2}\+ web {3}start \(creates disks\/web\.qcow2, 8G\)\n/);
  });

  it('holds exactly what runs: bin, the bundle, schemas, examples, the guest scripts, README, LICENSE', () => {
    const tarball = readdirSync(clone).find((f) => /^qvm-.*\.tgz$/.test(f))!;
    const packed = execFileSync('tar', ['tzf', tarball], { cwd: clone, encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map((f) => f.replace(/^package\//, ''))
      .sort();
    // bin/qvm.js runs the esbuild bundles only: not the modules tsc also writes to dist/, nor the source maps.
    // The whole CLI, and one per command in src/cli/entries/ (bundle.test.ts pins which commands those are).
    const entries = readdirSync(path.join(REPO, 'src', 'cli', 'entries')).map((f) => f.replace(/\.ts$/, ''));
    const compiled = ['qvm', ...entries].map((b) => `dist/bundle/${b}.cjs`);
    const shipped = files.filter(
      (f) =>
        /^(bin\/|schemas\/|guest\/debian\/)/.test(f) ||
        /^examples\/[^/]+\.(yaml|service)$/.test(f) ||
        ['README.md', 'LICENSE', 'package.json', 'guest/build.sh', 'guest/init', 'guest/README.md'].includes(
          f,
        ),
    );
    expect(packed).toEqual([...compiled, ...shipped].sort());
  });

  it('installs nothing but itself (the bundles hold its libraries), and the installed qvm is the one on PATH', async () => {
    const installed = path.join(prefix, 'lib', 'node_modules', 'qvm');
    expect(readdirSync(installed)).not.toContain('node_modules');
    expect(readdirSync(path.join(prefix, 'lib', 'node_modules'))).toEqual(['qvm']);
    expect((await sh('command -v qvm', elsewhere)).stdout).toBe(path.join(prefix, 'bin', 'qvm'));
    const schema = await sh('qvm schema', elsewhere);
    expect(schema.stdout).toBe(readFileSync(path.join(REPO, 'schemas', 'qvm.schema.json'), 'utf8').trimEnd());
  });
});
