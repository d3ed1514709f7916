import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { formatDiagnostic } from '../../src/errors.js';
import { parseYaml } from '../../src/manifest/load.js';
import { SCHEMA_URL } from '../../src/manifest/schema.js';
import { allFields, CHANGE_KINDS } from '../../src/manifest/schema-fields.js';
import { checkManifest } from '../../src/manifest/validate.js';

/** The located messages `qvm validate` would print for this text, as `vm.yaml`. */
function problems(text: string): string[] {
  return checkManifest(parseYaml(text, 'vm.yaml'), '/srv/vms').diagnostics.map(formatDiagnostic);
}

function valid(text: string) {
  const result = checkManifest(parseYaml(text, 'vm.yaml'), '/srv/vms');
  expect(result.diagnostics.map(formatDiagnostic)).toEqual([]);
  return result.manifest!;
}

const issueExample = `vms:
  web:
    memory: 512M
    cpus: 1
    disk:
      path: disks/web.qcow2
      size: 8G
      backing: images/base.qcow2
    cdrom: iso/debian-12.iso
    kernel: guest/vmlinuz
    initrd: guest/initrd.gz
    append: console=ttyS0
    nic: e1000
    forwards:
      - tcp::10022-:22
      - { host: 8080, guest: 80 }
      - { proto: udp, host: 5353, guest: 53, address: 0.0.0.0 }
    snapshot: ready
    state: running
    stopTimeout: 30s
    accel: auto
    monitor: /run/vm/mon.sock
    args: [-vga, std]
`;

describe('manifest v1', () => {
  it('accepts the full example and applies defaults and paths', () => {
    // monitor and snapshot together are refused (an adopted VM is not booted by qvm), so drop snapshot here.
    const manifest = valid(issueExample.replace('    snapshot: ready\n', ''));
    expect(manifest.vms).toEqual([
      {
        name: 'web',
        memoryMiB: 512,
        cpus: 1,
        disk: {
          path: '/srv/vms/disks/web.qcow2',
          format: 'qcow2',
          sizeBytes: 8 * 2 ** 30,
          backing: '/srv/vms/images/base.qcow2',
          backingFormat: 'qcow2',
        },
        agent: false,
        mounts: [],
        dataDisks: [],
        cdrom: '/srv/vms/iso/debian-12.iso',
        kernel: '/srv/vms/guest/vmlinuz',
        initrd: '/srv/vms/guest/initrd.gz',
        append: 'console=ttyS0',
        nic: 'e1000',
        forwards: [
          {
            proto: 'tcp',
            hostAddress: '127.0.0.1',
            hostPort: 10022,
            guestAddress: '',
            guestPort: 22,
            index: 0,
          },
          {
            proto: 'tcp',
            hostAddress: '127.0.0.1',
            hostPort: 8080,
            guestAddress: '',
            guestPort: 80,
            index: 1,
          },
          { proto: 'udp', hostAddress: '0.0.0.0', hostPort: 5353, guestAddress: '', guestPort: 53, index: 2 },
        ],
        state: 'running',
        stopTimeoutMs: 30_000,
        accel: 'auto',
        monitor: '/run/vm/mon.sock',
        args: ['-vga', 'std'],
        restart: 'on-failure',
        source: 'vm.yaml',
        adoptedIgnores: [
          'memory',
          'cpus',
          'disk',
          'cdrom',
          'kernel',
          'initrd',
          'append',
          'nic',
          'accel',
          'args',
        ],
      },
    ]);
  });

  it('accepts the full example with snapshot when the VM is not adopted', () => {
    const manifest = valid(issueExample.replace('    monitor: /run/vm/mon.sock\n', ''));
    expect(manifest.vms[0]!.snapshot).toBe('ready');
  });

  it('fills defaults for a minimal VM', () => {
    expect(valid('vms:\n  a: {}\n').vms[0]).toEqual({
      name: 'a',
      memoryMiB: 512,
      cpus: 1,
      agent: false,
      mounts: [],
      dataDisks: [],
      nic: 'virtio-net-pci',
      forwards: [],
      state: 'running',
      stopTimeoutMs: 30_000,
      accel: 'auto',
      args: [],
      restart: 'on-failure',
      source: 'vm.yaml',
    });
  });

  it('binds forwards without an address to 127.0.0.1 in both forms', () => {
    const vm = valid(
      'vms:\n  a:\n    forwards: ["tcp::2222-:22", {host: 8080, guest: 80}, "udp:0.0.0.0:53-:53"]\n',
    ).vms[0]!;
    expect(vm.forwards.map((f) => f.hostAddress)).toEqual(['127.0.0.1', '127.0.0.1', '0.0.0.0']);
  });

  it('reads a plain string disk, integer memory and numeric durations', () => {
    const vm = valid('vms:\n  a:\n    disk: d.qcow2\n    memory: 1024\n    stopTimeout: 5\n').vms[0]!;
    expect(vm.disk).toEqual({ path: '/srv/vms/d.qcow2', format: 'qcow2' });
    expect(vm.memoryMiB).toBe(1024);
    expect(vm.stopTimeoutMs).toBe(5000);
  });

  it('accepts a kernel alone', () => {
    valid('vms:\n  a:\n    kernel: vmlinuz\n');
  });
});

describe('located problems', () => {
  it('words the issue example exactly', () => {
    const text = 'vms:\n  web:\n    forwards:\n      - tcp::10022-:22\n      - { host: 80a, guest: 80 }\n';
    expect(problems(text)).toEqual([
      'vm.yaml:5:17: vms.web.forwards[1].host: must be an integer from 1 to 65535, got "80a"',
    ]);
  });

  it('reports every problem at once, in file order', () => {
    const text = [
      'vms:',
      '  web:',
      '    memory: 512X',
      '    cpus: 0',
      '    forwards:',
      '      - tcp::10022-:22',
      '      - tcp::10022-:23',
      '    initrd: x.gz',
      '    stat: running',
      '  Bad_Name: {}',
      '',
    ].join('\n');
    expect(problems(text)).toEqual([
      'vm.yaml:3:13: vms.web.memory: must be a size such as 512M or 2G, or a positive integer in MiB, got "512X"',
      'vm.yaml:4:11: vms.web.cpus: must be an integer from 1 to 255, got 0',
      'vm.yaml:7:9: vms.web.forwards[1]: tcp 127.0.0.1:10022 -> :23 claims the same host port as vms.web.forwards[0] (line 6)',
      'vm.yaml:8:13: vms.web.initrd: needs `kernel` (direct kernel boot)',
      'vm.yaml:9:5: vms.web.stat: is not a known field; did you mean "state"?',
      'vm.yaml:10:3: vms.Bad_Name: must be lowercase letters, digits and \'-\', start with a letter, and be at most 40 characters long, got "Bad_Name"',
    ]);
  });

  it('finds forwards that collide across VMs, including 0.0.0.0 against 127.0.0.1', () => {
    const text =
      'vms:\n  a:\n    forwards: ["tcp::8080-:80"]\n  b:\n    forwards: [{host: 8080, guest: 80, address: 0.0.0.0}]\n';
    expect(problems(text)).toEqual([
      'vm.yaml:5:16: vms.b.forwards[0]: tcp 0.0.0.0:8080 -> :80 claims the same host port as vms.a.forwards[0] (line 3)',
    ]);
  });

  it('counts the SSH and VNC ports among the host ports, in one VM and across VMs', () => {
    const text = [
      'vms:',
      '  a:',
      '    forwards: ["tcp::2222-:80", {host: 5901, guest: 81}]',
      '    ssh: {user: dev, port: 2222}',
      '    display: {vnc: {port: 5901}}',
      '  b:',
      '    ssh: {user: dev, port: 2222}',
      '    display: {vnc: {port: 5902, address: 0.0.0.0}}',
      '  c:',
      '    forwards: [{host: 5902, guest: 80, address: 127.0.0.2}]',
      '    display: {vnc: {port: 5903, address: 127.0.0.2}}',
      '  d:',
      '    ssh: {user: dev, port: 5903}',
      '',
    ].join('\n');
    expect(problems(text)).toEqual([
      'vm.yaml:4:28: vms.a.ssh.port: ssh on 127.0.0.1:2222 claims the same host port as vms.a.forwards[0] (line 3)',
      'vm.yaml:5:27: vms.a.display.vnc.port: VNC on 127.0.0.1:5901 claims the same host port as vms.a.forwards[1] (line 3)',
      'vm.yaml:7:28: vms.b.ssh.port: ssh on 127.0.0.1:2222 claims the same host port as vms.a.forwards[0] (line 3)',
      'vm.yaml:10:16: vms.c.forwards[0]: tcp 127.0.0.2:5902 -> :80 claims the same host port as vms.b.display.vnc.port (line 8)',
    ]);
  });

  it.each([
    [
      'disk: d.qcow2\n    snapshot: "a;quit"',
      "vms.a.snapshot: must be a snapshot tag of letters, digits, '.', '_' and '-', at most 64 characters, got \"a;quit\"",
    ],
    [
      'disk: d.qcow2\n    snapshot: "a\\nquit"',
      "vms.a.snapshot: must be a snapshot tag of letters, digits, '.', '_' and '-', at most 64 characters, got \"a\\nquit\"",
    ],
    [
      'kernel: k\n    append: "quiet\\nquit"',
      'vms.a.append: must be text on one line, without control characters, got "quiet\\nquit"',
    ],
    [
      'cdrom: "x.iso\\r\\ninfo"',
      'vms.a.cdrom: must be a non-empty path on one line, without control characters, got "x.iso\\r\\ninfo"',
    ],
    [
      'nic: "e1000,netdev=evil"',
      'vms.a.nic: must be a NIC model name such as e1000 or virtio-net-pci, got "e1000,netdev=evil"',
    ],
    [
      'forwards: ["tcp::80-:80\\nquit"]',
      'vms.a.forwards[0]: must be a rule [tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport such as tcp::8080-:80, got "tcp::80-:80\\nquit"',
    ],
    [
      'args: ["-daemonize"]',
      'vms.a.args[0]: -daemonize is managed by qvm and cannot be passed in args, got "-daemonize"',
    ],
    [
      'args: ["--qmp", "x"]',
      'vms.a.args[0]: --qmp is managed by qvm and cannot be passed in args, got "--qmp"',
    ],
    ['state: paused', 'vms.a.state: must be one of running, stopped, saved, got "paused"'],
    ['accel: hvf', 'vms.a.accel: must be one of auto, kvm, tcg, got "hvf"'],
    [
      'stopTimeout: 30 seconds',
      'vms.a.stopTimeout: must be a duration such as 500ms, 30s or 2m, or a number of seconds, got "30 seconds"',
    ],
    ['disk: { size: 8G }', 'vms.a.disk.path: is required'],
    ['disk: { path: d.qcow2, size: 8 }', 'vms.a.disk.size: must be a size such as 64M or 8G, got 8'],
    ['forwards: [{ host: 8080 }]', 'vms.a.forwards[0].guest: is required'],
    [
      'forwards: [{ host: 8080, guest: 80, address: "localhost" }]',
      'vms.a.forwards[0].address: must be an IPv4 address such as 127.0.0.1, got "localhost"',
    ],
    [
      'forwards: [8080]',
      'vms.a.forwards[0]: must be a rule such as tcp::8080-:80 or a mapping such as {host: 8080, guest: 80}, got 8080',
    ],
    [
      'forwards: ["tcp:localhost:8080-:80"]',
      'vms.a.forwards[0]: host address "localhost" is not an IPv4 address, got "tcp:localhost:8080-:80"',
    ],
    ['append: quiet', 'vms.a.append: needs `kernel` (direct kernel boot)'],
    [
      'state: saved',
      "vms.a.state: needs a qcow2 `disk`: QEMU saves snapshots (RAM and devices) into the VM's qcow2 disk",
    ],
    [
      'monitor: /m.sock\n    snapshot: s',
      'vms.a.snapshot: cannot be used with `monitor`: qvm does not start an adopted VM, so it cannot boot it from a snapshot',
    ],
  ])('%s', (field, message) => {
    const found = problems(`vms:\n  a:\n    ${field}\n`);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^vm\.yaml:\d+:\d+: /);
    expect(found[0]!.replace(/^vm\.yaml:\d+:\d+: /, '')).toBe(message);
  });

  it('locates YAML syntax errors and duplicate keys', () => {
    expect(problems('vms:\n  a:\n    cpus: 1\n    cpus: 2\n')).toEqual([
      'vm.yaml:4:5: YAML: Map keys must be unique',
    ]);
    expect(problems('vms:\n  a: [1, 2\n')[0]).toMatch(/^vm\.yaml:3:1: YAML: /);
  });

  it('refuses a file that is not a mapping, an empty file, and several documents', () => {
    expect(problems('- a\n- b\n')).toEqual([
      'vm.yaml:1:1: is a list, not a mapping; a manifest is a mapping with a `vms` key',
    ]);
    expect(problems('')).toEqual(['vm.yaml:1:1: is empty; a manifest is a mapping with a `vms` key']);
    expect(problems('# only a comment\n')).toEqual([
      'vm.yaml:1:1: is empty; a manifest is a mapping with a `vms` key',
    ]);
    expect(problems('vms: {}\n---\nvms: {}\n')).toEqual([
      'vm.yaml:2:1: holds 2 YAML documents; a manifest is one document',
    ]);
    expect(problems('hello\n')).toEqual([
      'vm.yaml:1:1: is a string, not a mapping; a manifest is a mapping with a `vms` key',
    ]);
    expect(problems('vms: [a]\n')).toEqual([
      'vm.yaml:1:6: vms: must be a mapping of VM names to VMs, got a list',
    ]);
    expect(problems('vm: {}\n')).toEqual([
      'vm.yaml:1:1: vms: is required',
      'vm.yaml:1:1: vm: is not a known field; did you mean "vms"?',
    ]);
  });
});

describe('the schema', () => {
  const schema = JSON.parse(readFileSync(SCHEMA_URL, 'utf8'));

  it('documents every field, nested ones and $defs included, with a description and an example', () => {
    const fields = allFields(schema);
    expect(fields.length).toBeGreaterThan(60);
    const undocumented = [
      ...fields.map((f) => [f.path, f.node] as const),
      ...Object.entries(schema.$defs as Record<string, Record<string, unknown>>).map(
        ([name, def]) => [`$defs.${name}`, def] as const,
      ),
    ]
      .filter(([, node]) => !node.description || !Array.isArray(node.examples) || node.examples.length === 0)
      .map(([where]) => where);
    expect(undocumented).toEqual([]);
  });

  it('says what changing each field of a VM does (x-change), for qvm explain', () => {
    const vmFields = allFields(schema).filter((f) => f.path.startsWith('vms.<name>.'));
    expect(vmFields.filter((f) => !f.change).map((f) => f.path)).toEqual([]);
    expect(new Set(vmFields.map((f) => f.change))).toEqual(new Set(CHANGE_KINDS));
  });

  it('is draft 2020-12 with a stable $id', () => {
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(schema.$id).toBe('https://github.com/qvm-dev/qvm/schemas/qvm.schema.json');
  });

  it("passes JSON Schema's own meta-validation (ajv's 2020-12 meta-schema)", () => {
    const ajv = new Ajv2020({ strict: false });
    expect(ajv.validateSchema(schema), JSON.stringify(ajv.errors)).toBe(true);
  });

  it('has examples that are valid values of their own field', () => {
    const ajv = new Ajv2020({ strict: true, allErrors: true });
    ajv.addKeyword({ keyword: 'errorMessage', schemaType: 'string' });
    ajv.addKeyword({ keyword: 'x-change', schemaType: 'string' });
    // Digests in examples are placeholders such as "<64 hex digits>": stand in a digest of that length.
    const filled = (value: unknown): unknown =>
      typeof value === 'string'
        ? value.replace(/^<(\d+) hex digits>$/, (_, n: string) => 'a'.repeat(Number(n)))
        : Array.isArray(value)
          ? value.map(filled)
          : typeof value === 'object' && value !== null
            ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, filled(v)]))
            : value;
    const wrong: string[] = [];
    const check = (where: string, node: Record<string, unknown>) => {
      const { $id: _, $schema: __, ...own } = node;
      const validate = ajv.compile({ ...own, $defs: schema.$defs });
      for (const example of (node.examples as unknown[]) ?? []) {
        if (!validate(filled(example))) wrong.push(`${where}: ${JSON.stringify(example)}`);
      }
    };
    for (const field of allFields(schema))
      if (!field.path.startsWith('defaults.')) check(field.path, field.node);
    for (const [name, def] of Object.entries(schema.$defs as Record<string, Record<string, unknown>>))
      check(`$defs.${name}`, def);
    expect(wrong).toEqual([]);
  });
});

describe('readiness and restart policy', () => {
  it('reads ready probes through a forward, probing 0.0.0.0 forwards on loopback', () => {
    const vm = valid(
      'vms:\n  a:\n    forwards: ["tcp:0.0.0.0:8080-:80", "tcp::2222-:22"]\n    ready: { http: { port: 8080, path: /health }, timeout: 90s }\n    restart: always\n',
    ).vms[0]!;
    expect(vm.ready).toEqual({
      kind: 'http',
      host: '127.0.0.1',
      port: 8080,
      path: '/health',
      status: 200,
      timeoutMs: 90_000,
    });
    expect(vm.restart).toBe('always');
    const tcp = valid('vms:\n  a:\n    forwards: ["tcp::2222-:22"]\n    ready: { tcp: 2222 }\n').vms[0]!;
    expect(tcp.ready).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 2222, timeoutMs: 60_000 });
  });

  it.each([
    [
      'ready: { tcp: 2222 }',
      "vms.a.ready.tcp: must be the host port of one of this VM's tcp forwards, got 2222",
    ],
    ['ready: { timeout: 5s }', 'vms.a.ready: needs exactly one of tcp, http, ssh or agent'],
    [
      'ready: { tcp: 8080, http: { port: 8080 } }',
      'vms.a.ready: needs exactly one of tcp, http, ssh or agent',
    ],
    [
      'ready: { http: { port: 8080, path: "x y" } }',
      'vms.a.ready.http.path: must be a path starting with / without spaces or control characters, got "x y"',
    ],
    ['restart: sometimes', 'vms.a.restart: must be one of always, on-failure, never, got "sometimes"'],
  ])('%s', (field, message) => {
    const found = problems(`vms:\n  a:\n    forwards: ["tcp::8080-:80"]\n    ${field}\n`);
    expect(found.map((f) => f.replace(/^vm\.yaml:\d+:\d+: /, ''))).toEqual([message]);
  });
});

describe('snapshot pre-checks on extra drives', () => {
  it('refuses a writable raw pflash drive when the VM uses snapshots', () => {
    const found = problems(
      'vms:\n  a:\n    disk: d.qcow2\n    state: saved\n    args: [-drive, "if=pflash,format=raw,file=vars.fd"]\n',
    );
    expect(found).toEqual([
      'vm.yaml:5:20: vms.a.args[1]: is a writable raw drive, and snapshots (snapshot:, state: saved) need every writable drive to be qcow2: add readonly=on, or use a qcow2 image with format=qcow2',
    ]);
    valid(
      'vms:\n  a:\n    disk: d.qcow2\n    state: saved\n    args: [-drive, "if=pflash,format=raw,readonly=on,file=code.fd"]\n',
    );
    valid('vms:\n  a:\n    args: [-drive, "if=pflash,format=raw,file=vars.fd"]\n');
  });
});

describe('inputs found by the property tests', () => {
  it('a VM named "0" is a key, not a list index', () => {
    expect(problems('vms:\n  "0":\n    ready: null\n')).toEqual([
      'vm.yaml:2:3: vms["0"]: must be lowercase letters, digits and \'-\', start with a letter, and be at most 40 characters long, got "0"',
      'vm.yaml:3:12: vms["0"].ready: must be a mapping with tcp, http, ssh or agent, and optionally timeout, got null',
    ]);
  });

  it('an alias to an anchor that is not set is a located YAML error, not a crash', () => {
    expect(problems('vms:\n  a:\n    cpus: *nowhere\n')).toEqual([
      'vm.yaml:1:1: YAML: Unresolved alias (the anchor must be set before the alias): nowhere',
    ]);
  });

  it('a null VM key (`null:` or `~:`) is located at its own line', () => {
    expect(problems('vms:\n  web: {}\n  null:\n    memory: lots\n')).toEqual([
      'vm.yaml:3:3: vms[""]: must be lowercase letters, digits and \'-\', start with a letter, and be at most 40 characters long, got an empty or null key',
      'vm.yaml:4:13: vms[""].memory: must be a size such as 512M or 2G, or a positive integer in MiB, got "lots"',
    ]);
  });

  it('an item of args that is not a string, after -drive on a VM with snapshots, is a located error, not a crash', () => {
    expect(
      problems('vms:\n  web:\n    disk: d.qcow2\n    snapshot: s\n    args: [-drive, {a: 1}]\n'),
    ).toEqual([
      'vm.yaml:5:20: vms.web.args[1]: must be text on one line, without control characters, got a mapping',
    ]);
  });

  it('an anchor on a VM field (`disk: &a`) that leaves it null is a located error, not a crash', () => {
    expect(problems('vms:\n  web:\n    disk: &a\n    snapshot: s\n')).toEqual([
      'vm.yaml:3:13: vms.web.disk: must be a path, or a mapping with path, and optionally size, format, backing and backingFormat, got null',
    ]);
  });

  it('an image URL Node cannot read (bad percent-encoding, a remote file host, no URL at all) is a located error, not a crash', () => {
    const text = [
      'images:',
      '  remote: {url: "file://host/x.qcow2"}',
      `  broken: {url: "https://[x/y.qcow2", sha256: "${'0'.repeat(64)}"}`,
      '  remote2: {url: "file:///x.qcow2"}',
      'vms:',
      '  a:',
      '    disk: a.qcow2',
      '    image: {url: "file:///srv/images/%"}',
      '  b:',
      '    disk: b.qcow2',
      '    image: remote2',
      '',
    ].join('\n');
    expect(problems(text)).toEqual([
      'vm.yaml:2:17: images.remote.url: is not the URL of a local file (File URL host must be "localhost" or empty on linux), got "file://host/x.qcow2"',
      'vm.yaml:3:17: images.broken.url: is not a valid URL, got "https://[x/y.qcow2"',
      'vm.yaml:8:18: vms.a.image.url: is not the URL of a local file (URI malformed), got "file:///srv/images/%"',
    ]);
  });
});

describe('limits and claims between VMs', () => {
  it('bounds durations, memory and disk sizes, each located', () => {
    expect(
      problems(
        'vms:\n  web:\n    memory: 17T\n    stopTimeout: 25h\n    disk: { path: d.qcow2, size: 1025T }\n    forwards: ["tcp::80-:80"]\n    ready: { tcp: 80, timeout: 90000 }\n',
      ),
    ).toEqual([
      'vm.yaml:3:13: vms.web.memory: must be at most 16T, got "17T"',
      'vm.yaml:4:18: vms.web.stopTimeout: must be at most 24h, got "25h"',
      'vm.yaml:5:34: vms.web.disk.size: must be at most 1024T, got "1025T"',
      'vm.yaml:7:32: vms.web.ready.timeout: must be at most 24h, got 90000',
    ]);
  });

  it('refuses a raw disk as an overlay or with snapshots', () => {
    expect(
      problems('vms:\n  web:\n    disk: { path: d.img, format: raw, backing: b.qcow2 }\n    snapshot: s\n'),
    ).toEqual([
      'vm.yaml:3:48: vms.web.disk.backing: needs format qcow2: qvm creates overlays of a backing image as qcow2',
      'vm.yaml:4:15: vms.web.snapshot: needs a qcow2 disk: QEMU saves snapshots (RAM and devices) into the disk, and this one is raw. Convert it with qemu-img convert -O qcow2, then declare format qcow2',
    ]);
  });

  it('refuses two VMs on one disk and two adopted VMs on one monitor', () => {
    expect(
      problems(
        'vms:\n  a:\n    disk: d.qcow2\n  b:\n    disk: ./d.qcow2\n  c:\n    monitor: /tmp/m.sock\n  d:\n    monitor: /tmp/m.sock\n',
      ),
    ).toEqual([
      'vm.yaml:5:11: vms.b.disk: is also the disk of VM a (vm.yaml:3); two VMs cannot share a disk',
      'vm.yaml:9:14: vms.d.monitor: is also the monitor of VM c (vm.yaml:7); one QEMU can be one VM of the manifest',
    ]);
  });
});
