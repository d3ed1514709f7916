/** `qvm export` as a user runs it: where files go, their names, selection, refusals, exact messages. */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { qvmInProcess } from '../helpers/cli-in-process.js';

const dir = mkdtempSync(path.join(tmpdir(), 'qvm-export-cli-'));
const MULTI = readFileSync('examples/multi.yaml', 'utf8');
const multi = path.join(dir, 'multi.yaml');
writeFileSync(multi, MULTI);

describe('qvm export', () => {
  it('writes one file per VM with -o DIR, named VM.nomad.json, and says which', async () => {
    const out = path.join(dir, 'jobs');
    const r = await qvmInProcess(['export', '--to', 'nomad', '-f', multi, '-o', out]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(['web', 'api', 'worker'].map((vm) => `wrote ${out}/${vm}.nomad.json\n`).join(''));
    expect(readdirSync(out).sort()).toEqual(['api.nomad.json', 'web.nomad.json', 'worker.nomad.json']);
    const worker = JSON.parse(readFileSync(path.join(out, 'worker.nomad.json'), 'utf8'));
    expect(worker.Job.ID).toBe('worker');
    expect(worker.Job.TaskGroups[0].Count).toBe(0); // state: stopped
  });

  it('prints the same bytes to stdout as it writes to files, and the same bytes every time', async () => {
    const out = path.join(dir, 'vms');
    await qvmInProcess(['export', '--to', 'kubevirt', '-f', multi, '-o', out]);
    const first = await qvmInProcess(['export', '--to', 'kubevirt', '-f', multi]);
    const second = await qvmInProcess(['export', '--to', 'kubevirt', '-f', multi]);
    expect(second.stdout).toBe(first.stdout);
    const files = ['web', 'api', 'worker'].map((vm) =>
      readFileSync(path.join(out, `${vm}.kubevirt.yaml`), 'utf8'),
    );
    expect(first.stdout).toBe(files.join('---\n'));
    // One stream kubectl apply -f - reads: a VirtualMachine and a Service per VM.
    const kinds = parseAllDocuments(first.stdout).map((d) => (d.toJS() as { kind: string }).kind);
    expect(kinds).toEqual([
      'VirtualMachine',
      'Service',
      'VirtualMachine',
      'Service',
      'VirtualMachine',
      'Service',
    ]);
  });

  it('exports only the VMs named', async () => {
    const r = await qvmInProcess(['export', '--to', 'nomad', '-f', multi, 'api']);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout).Job.ID).toBe('api');
    expect(r.stderr.split('\n').filter((l) => l && !l.startsWith('warning: api: '))).toEqual([]);
  });

  it('says which VMs there are when one named is not in the manifest', async () => {
    const r = await qvmInProcess(['export', '--to', 'nomad', '-f', multi, 'db']);
    expect(r).toEqual({
      exitCode: 1,
      stdout: '',
      stderr: `error: no VM named "db" in ${multi} (it has: web, api, worker)\n`,
    });
  });

  it('refuses an adopted VM with a located error, like any manifest error', async () => {
    const sub = path.join(dir, 'adopted');
    mkdirSync(sub);
    writeFileSync(
      path.join(sub, 'm.yaml'),
      'vms:\n  web:\n    memory: 256M\n  old:\n    monitor: /run/old/mon.sock\n',
    );
    const r = await qvmInProcess(['export', '--to', 'kubevirt', '-f', path.join(sub, 'm.yaml')]);
    expect(r).toEqual({
      exitCode: 1,
      stdout: '',
      stderr: [
        `${sub}/m.yaml:5:14: vms.old.monitor: is an adopted VM (a QEMU started outside qvm): KubeVirt starts its own QEMU, so it cannot be exported; name the other VMs to export them`,
        `1 problem in ${sub}/m.yaml`,
        '',
      ].join('\n'),
    });
    const other = await qvmInProcess(['export', '--to', 'kubevirt', '-f', path.join(sub, 'm.yaml'), 'web']);
    expect(other.exitCode).toBe(0);
  });

  it('authorizes the --ssh-key public keys for the ssh: user, and refuses a private key', async () => {
    const sub = path.join(dir, 'ssh');
    mkdirSync(sub);
    const manifest = path.join(sub, 'm.yaml');
    writeFileSync(manifest, 'vms:\n  dev:\n    ssh: { user: dev }\n');
    writeFileSync(path.join(sub, 'id.pub'), '# laptop\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPx7 me@laptop\n');
    writeFileSync(path.join(sub, 'id'), '-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n');
    const r = await qvmInProcess([
      'export',
      '--to',
      'kubevirt',
      '-f',
      manifest,
      '--ssh-key',
      path.join(sub, 'id.pub'),
    ]);
    expect(r.exitCode).toBe(0);
    const vm = parseAllDocuments(r.stdout)[0]!.toJS();
    const userData: string = vm.spec.template.spec.volumes[0].cloudInitNoCloud.userData;
    // Merged as qvm merges its own seed (guest/cloud-init.ts), without qvm's host key.
    expect(userData).toBe(
      [
        '#cloud-config',
        'users:',
        '  - default',
        '  - name: dev',
        '    shell: /bin/bash',
        '    sudo: ALL=(ALL) NOPASSWD:ALL',
        '    lock_passwd: true',
        '    ssh_authorized_keys:',
        '      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPx7 me@laptop',
        '',
      ].join('\n'),
    );
    const refused = await qvmInProcess([
      'export',
      '--to',
      'nomad',
      '-f',
      manifest,
      '--ssh-key',
      path.join(sub, 'id'),
    ]);
    expect(refused).toEqual({
      exitCode: 1,
      stdout: '',
      stderr: `error: --ssh-key ${path.join(sub, 'id')} is a private key: give the .pub file\n`,
    });
  });

  it('checks --artifact-base is a URL', async () => {
    const r = await qvmInProcess(['export', '--to', 'nomad', '-f', multi, '--artifact-base', 'files/']);
    expect(r.stderr).toBe(
      'error: --artifact-base must be a URL such as https://files.example.com/qvm, got "files/"\n',
    );
    expect(r.exitCode).toBe(1);
  });

  it('needs --to', async () => {
    const r = await qvmInProcess(['export', '-f', multi]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain("error: required option '--to <engine>' not specified");
  });
});
