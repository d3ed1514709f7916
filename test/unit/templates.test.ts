/**
 * Templates without a new language: YAML merge keys (`<<: *base`) with anchors under top-level `x-*` keys, and
 * a `defaults:` block under every VM. A VM's own field wins, whole; problems are located where the value is
 * written.
 */
import { describe, expect, it } from 'vitest';
import { formatDiagnostic } from '../../src/errors.js';
import { parseYaml } from '../../src/manifest/load.js';
import { checkManifest } from '../../src/manifest/validate.js';

function check(text: string) {
  return checkManifest(parseYaml(text, 'vm.yaml'), '/srv/vms');
}

function problems(text: string): string[] {
  return check(text).diagnostics.map(formatDiagnostic);
}

function vms(text: string) {
  const result = check(text);
  expect(result.diagnostics.map(formatDiagnostic)).toEqual([]);
  return Object.fromEntries(result.manifest!.vms.map((vm) => [vm.name, vm]));
}

describe('YAML merge keys and x-* anchors', () => {
  it('merges an anchor under a VM; the VM own fields win', () => {
    const { web, db } = vms(
      [
        'x-base: &base',
        '  memory: 1G',
        '  cpus: 2',
        '  accel: tcg',
        'vms:',
        '  web:',
        '    <<: *base',
        '    cpus: 4',
        '  db:',
        '    cpus: 1', // before the merge key, and still winning
        '    <<: *base',
        '',
      ].join('\n'),
    );
    expect([web!.memoryMiB, web!.cpus, web!.accel]).toEqual([1024, 4, 'tcg']);
    expect([db!.memoryMiB, db!.cpus]).toEqual([1024, 1]);
  });

  it('takes earlier sources of a merge list first', () => {
    const { web } = vms(
      ['x-a: &a {memory: 1G}', 'x-b: &b {memory: 2G, cpus: 2}', 'vms:', '  web: {<<: [*a, *b]}', ''].join(
        '\n',
      ),
    );
    expect([web!.memoryMiB, web!.cpus]).toEqual([1024, 2]);
  });

  it('reports a bad value inherited through <<: *base at the line where it was written, for each VM', () => {
    expect(
      problems(
        [
          'x-base: &base',
          '  memory: lots',
          '  colour: blue',
          'vms:',
          '  web:',
          '    <<: *base',
          '  db:',
          '    <<: *base',
          '    memory: 1G',
          '',
        ].join('\n'),
      ),
    ).toEqual([
      'vm.yaml:2:11: vms.web.memory: must be a size such as 512M or 2G, or a positive integer in MiB, got "lots"',
      'vm.yaml:3:3: vms.web.colour: is not a known field; known fields: memory, cpus, disk, image, cloudInit, ssh, agent, mounts, disks, display, cdrom, kernel, initrd, append, nic, forwards, snapshot, state, stopTimeout, accel, monitor, restart, ready, args',
      'vm.yaml:3:3: vms.db.colour: is not a known field; known fields: memory, cpus, disk, image, cloudInit, ssh, agent, mounts, disks, display, cdrom, kernel, initrd, append, nic, forwards, snapshot, state, stopTimeout, accel, monitor, restart, ready, args',
    ]);
  });

  it('locates semantic problems of inherited fields in the anchor too', () => {
    expect(
      problems(['x-boot: &boot', '  initrd: initrd.gz', 'vms:', '  web: {<<: *boot}', ''].join('\n')),
    ).toEqual(['vm.yaml:2:11: vms.web.initrd: needs `kernel` (direct kernel boot)']);
  });

  it('takes any x-* key at the top level and no other unknown key', () => {
    expect(problems('x-notes: [anything, {at: all}]\nx-: 1\nvms:\n  a: {}\n')).toEqual([]);
    expect(problems('vms:\n  a:\n    x-base: 1\n')).toEqual([
      'vm.yaml:3:5: vms.a.x-base: is not a known field; known fields: memory, cpus, disk, image, cloudInit, ssh, agent, mounts, disks, display, cdrom, kernel, initrd, append, nic, forwards, snapshot, state, stopTimeout, accel, monitor, restart, ready, args',
    ]);
  });

  it('locates a merge key given something other than a mapping', () => {
    const wrong = 'YAML: a merge key (<<) takes a mapping, an alias of one, or a list of them';
    expect(
      problems(
        'x-list: &l [1, 2]\nx-m: &m {cpus: 2}\nvms:\n  a: {<<: 5}\n  b: {<<: *l}\n  c: {<<: [*m, 3]}\n',
      ),
    ).toEqual([`vm.yaml:4:11: ${wrong}`, `vm.yaml:5:11: ${wrong}`, `vm.yaml:6:16: ${wrong}`]);
  });

  it('keeps a quoted "<<" an ordinary key', () => {
    expect(problems('vms:\n  a:\n    "<<": {memory: 1G}\n')).toEqual([
      'vm.yaml:3:5: vms.a["<<"]: is not a known field; known fields: memory, cpus, disk, image, cloudInit, ssh, agent, mounts, disks, display, cdrom, kernel, initrd, append, nic, forwards, snapshot, state, stopTimeout, accel, monitor, restart, ready, args',
    ]);
  });
});

describe('defaults:', () => {
  it('goes under every VM; a VM own field wins and lists are replaced, not merged', () => {
    const { a, b } = vms(
      [
        'defaults:',
        '  memory: 1G',
        '  accel: tcg',
        '  forwards: [tcp::10022-:22]',
        '  ready: {tcp: 10022, timeout: 2m}',
        'vms:',
        '  a: {}',
        '  b:',
        '    memory: 2G',
        '    forwards: [tcp::10023-:22]',
        '    ready: {tcp: 10023}',
        '',
      ].join('\n'),
    );
    expect([a!.memoryMiB, a!.accel, a!.forwards.map((f) => f.hostPort), a!.ready]).toEqual([
      1024,
      'tcg',
      [10022],
      { kind: 'tcp', host: '127.0.0.1', port: 10022, timeoutMs: 120_000 },
    ]);
    // b's ready replaces the default one whole: no timeout from defaults.
    expect([b!.memoryMiB, b!.accel, b!.forwards.map((f) => f.hostPort), b!.ready]).toEqual([
      2048,
      'tcg',
      [10023],
      { kind: 'tcp', host: '127.0.0.1', port: 10023, timeoutMs: 60_000 },
    ]);
  });

  it('reports a bad default once, at its line, and not again for every VM that inherits it', () => {
    expect(
      problems('defaults:\n  memory: lots\n  colour: blue\nvms:\n  a: {}\n  b: {}\n  c: {memory: 1G}\n'),
    ).toEqual([
      'vm.yaml:2:11: defaults.memory: must be a size such as 512M or 2G, or a positive integer in MiB, got "lots"',
      'vm.yaml:3:3: defaults.colour: is not a known field; known fields: memory, cpus, disk, image, cloudInit, ssh, agent, mounts, disks, display, cdrom, kernel, initrd, append, nic, forwards, snapshot, state, stopTimeout, accel, monitor, restart, ready, args',
    ]);
  });

  it('locates what a VM gets wrong with an inherited field in defaults:, naming the VM', () => {
    expect(problems('defaults:\n  initrd: i.gz\nvms:\n  a: {}\n  b: {kernel: vmlinuz}\n')).toEqual([
      'vm.yaml:2:11: vms.a.initrd: needs `kernel` (direct kernel boot)',
    ]);
    // One default forward for two VMs is one port claimed twice.
    expect(problems('defaults:\n  forwards: [tcp::10022-:22]\nvms:\n  a: {}\n  b: {}\n')).toEqual([
      'vm.yaml:2:14: vms.b.forwards[0]: tcp 127.0.0.1:10022 -> :22 claims the same host port as vms.a.forwards[0] (line 2)',
    ]);
  });

  it('is below merge keys: VM, then <<, then defaults', () => {
    const { a } = vms('x-big: &big {memory: 4G}\ndefaults: {memory: 1G, cpus: 2}\nvms:\n  a: {<<: *big}\n');
    expect([a!.memoryMiB, a!.cpus]).toEqual([4096, 2]);
  });

  it('gives the plan the location of an inherited field', () => {
    const result = check('defaults:\n  snapshot: warm\nvms:\n  a: {disk: a.qcow2}\n');
    expect(result.manifest!.locate(['vms', 'a', 'snapshot'])).toEqual({ line: 2, column: 13 });
  });
});
