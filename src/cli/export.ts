/**
 * `qvm export --to nomad|kubevirt [-f FILE] [VM...] [-o DIR|-]`: the manifest as another engine's files. Reads
 * the manifest only: no VM, key or runtime folder is touched, so the same manifest gives the same bytes on any
 * machine. Warnings go to stderr; with --strict any warning fails the export and nothing is written.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { exportManifest } from '../export/export.js';
import type { ExportOptions, ExportTarget, KubevirtNetwork } from '../export/types.js';
import { loadManifest } from '../manifest/manifest.js';
import { type Output, writeLine } from './output.js';

export interface ExportFlags {
  to: ExportTarget;
  file: string;
  output: string;
  strict: boolean;
  artifactBase?: string;
  registry?: string;
  network: KubevirtNetwork;
  sshKey: string[];
}

/** The public keys of the --ssh-key files: each non-empty line that is not a comment. */
function readPublicKeys(files: string[]): string[] {
  return files.flatMap((file) => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new UsageError(`--ssh-key ${file}: cannot read it (${(error as NodeJS.ErrnoException).code})`);
    }
    if (/PRIVATE KEY/.test(text))
      throw new UsageError(`--ssh-key ${file} is a private key: give the .pub file`);
    return text
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'));
  });
}

function checkArtifactBase(base: string | undefined): void {
  if (base === undefined) return;
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new UsageError(
      `--artifact-base must be a URL such as https://files.example.com/qvm, got "${base}"`,
    );
  }
  if (!['http:', 'https:', 's3:', 'gcs:'].includes(url.protocol))
    throw new UsageError(`--artifact-base must be an http(s) URL, got "${base}"`);
}

/** Writes FILE atomically: whole or not at all, never a half-written job a GitOps sync could pick up. */
function writeAtomically(file: string, text: string): void {
  const temporary = `${file}.tmp-${process.pid}`;
  try {
    writeFileSync(temporary, text);
    renameSync(temporary, file);
  } finally {
    rmSync(temporary, { force: true });
  }
}

export async function exportCommand(names: string[], flags: ExportFlags, output: Output): Promise<number> {
  checkArtifactBase(flags.artifactBase);
  const manifest = await loadManifest(flags.file);
  for (const name of names) {
    if (!manifest.vms.some((v) => v.name === name)) {
      const known = manifest.vms.map((v) => v.name);
      throw new UsageError(
        `no VM named "${name}" in ${manifest.file} (it has: ${known.join(', ') || 'none'})`,
      );
    }
  }
  const vms = names.length ? manifest.vms.filter((v) => names.includes(v.name)) : manifest.vms;
  const options: ExportOptions = {
    ...(flags.artifactBase ? { artifactBase: flags.artifactBase } : {}),
    ...(flags.registry ? { registry: flags.registry } : {}),
    network: flags.network,
    sshKeys: readPublicKeys(flags.sshKey),
  };
  const result = exportManifest(manifest, flags.to, vms, options);
  const { err, color } = output;
  for (const w of result.warnings)
    writeLine(err, `${color.yellow('warning:')} ${w.vm}: ${w.field}: ${w.message}`);
  if (flags.strict && result.warnings.length > 0) {
    const n = result.warnings.length;
    writeLine(err, `${color.red('error:')} ${n} warning${n === 1 ? '' : 's'} with --strict: nothing written`);
    return 1;
  }
  if (flags.output === '-') {
    const separator = flags.to === 'kubevirt' ? '---\n' : '';
    output.out.write(result.files.map((f) => f.text).join(separator));
    return 0;
  }
  mkdirSync(flags.output, { recursive: true });
  for (const file of result.files) {
    const target = path.join(flags.output, file.name);
    writeAtomically(target, file.text);
    writeLine(output.out, `wrote ${target}`);
  }
  return 0;
}
