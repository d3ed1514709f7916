/**
 * Hostile input, property-based (fast-check): thousands of generated and mutated manifests through validate
 * and plan. Nothing crashes, every rejection is located, and whatever a valid manifest says, what reaches
 * QEMU's monitor is one validated command per call and what reaches qemu-system is an argv (no shell).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { Effects } from '../../src/apply/effects.js';
import { applyPlan } from '../../src/apply/executor.js';
import { parseYaml } from '../../src/manifest/load.js';
import { checkManifest } from '../../src/manifest/validate.js';
import type { DiskState, ObservedVm } from '../../src/observe/types.js';
import { plan } from '../../src/plan/plan.js';
import { renderPlan } from '../../src/plan/render.js';
import { NS, observation } from '../helpers/builders.js';

/** How many manifests each property sees (docs/reliability.md quotes these). */
const MUTATED_MANIFESTS = 2000;
const GENERATED_MANIFESTS = 2000;
const PLANNED_MANIFESTS = 1000;

const VALID = `vms:
  web:
    memory: 512M
    cpus: 2
    disk: { path: disks/web.qcow2, size: 8G }
    kernel: guest/vmlinuz
    initrd: guest/initrd.gz
    append: console=ttyS0
    nic: virtio-net-pci
    forwards:
      - tcp::10022-:22
      - { host: 8080, guest: 80 }
      - { proto: udp, host: 5353, guest: 53, address: 0.0.0.0 }
    snapshot: ready
    ready: { http: { port: 8080 } }
    state: running
    stopTimeout: 30s
    restart: on-failure
  db:
    disk: disks/db.qcow2
    forwards: ["tcp::15432-:5432"]
    args: [-vga, std]
`;

/** Strings users could type, hostile ones included: newlines, `;`, quotes, spaces, traversal, commas. */
const hostileString = fc.oneof(
  fc.string(),
  fc.constantFrom(
    'quit',
    'a\nquit',
    'x;quit',
    '"; quit; "',
    "' || rm -rf / #",
    '../../etc/passwd',
    'a b',
    'file.qcow2,if=none,file=/etc/shadow',
    '\u001b[2J',
    '\r\ninfo',
    '$(reboot)',
    '`id`',
    '',
  ),
);

function check(text: string) {
  return checkManifest(parseYaml(text, 'fuzz.yaml'), '/srv/vms');
}

function allLocated(diagnostics: { line?: number; message: string }[]): boolean {
  return diagnostics.every((d) => typeof d.line === 'number' && d.line >= 1 && d.message.length > 0);
}

describe('validate on hostile input', () => {
  it(`never crashes on ${MUTATED_MANIFESTS} mutations of a valid manifest, and locates every rejection`, () => {
    const mutation = fc.record({
      at: fc.nat(VALID.length),
      deleteCount: fc.nat(8),
      insert: fc.oneof(
        hostileString,
        fc.constantFrom(
          ':',
          '-',
          '[',
          '{',
          '}',
          ']',
          '\n  ',
          '\t',
          '&a',
          '*a',
          '!!binary',
          '---\n',
          '? ',
          '|',
          '>',
        ),
      ),
    });
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (mutations) => {
        let text = VALID;
        for (const m of mutations) text = text.slice(0, m.at) + m.insert + text.slice(m.at + m.deleteCount);
        const result = check(text);
        if (result.manifest) return result.diagnostics.length === 0;
        return result.diagnostics.length > 0 && allLocated(result.diagnostics);
      }),
      { numRuns: MUTATED_MANIFESTS },
    );
  });

  it(`never crashes on ${GENERATED_MANIFESTS} generated documents, and locates every rejection`, () => {
    const vm = fc.dictionary(
      fc.constantFrom(
        'memory',
        'cpus',
        'disk',
        'cdrom',
        'kernel',
        'initrd',
        'append',
        'nic',
        'forwards',
        'snapshot',
        'state',
        'stopTimeout',
        'accel',
        'monitor',
        'args',
        'restart',
        'ready',
        'bogus',
      ),
      fc.oneof(
        hostileString,
        fc.integer(),
        fc.double(),
        fc.boolean(),
        fc.constant(null),
        fc.array(fc.oneof(hostileString, fc.integer())),
        fc.dictionary(hostileString, fc.oneof(hostileString, fc.integer())),
      ),
    );
    const document = fc.oneof(fc.record({ vms: fc.dictionary(hostileString, vm) }), fc.anything());
    fc.assert(
      fc.property(document, (doc) => {
        const result = check(stringify(doc));
        return result.manifest !== undefined
          ? result.diagnostics.length === 0
          : allLocated(result.diagnostics);
      }),
      { numRuns: GENERATED_MANIFESTS },
    );
  });

  it('keeps VM names inside the runtime folder: traversal and odd names are refused', () => {
    fc.assert(
      fc.property(hostileString, (name) => {
        const result = check(stringify({ vms: { [name]: {} } }));
        return result.manifest ? /^[a-z][a-z0-9-]{0,39}$/.test(name) : allLocated(result.diagnostics);
      }),
      { numRuns: 500 },
    );
  });
});

/** What the schema accepts as a value on one line: no control characters. */
function isOneLine(text: string): boolean {
  return ![...text].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f);
}

/** Valid manifests with hostile values wherever the schema allows free text: paths, append, args. */
const validVm = fc.record({
  memory: fc.constantFrom('256M', '1G', 768),
  cpus: fc.integer({ min: 1, max: 8 }),
  disk: fc.record({
    path: fc.constantFrom('d.qcow2', 'a,b.qcow2', 'dir with space/d.qcow2', "quote'd.qcow2"),
    size: fc.constantFrom('1G', '8G'),
  }),
  append: fc.string().filter(isOneLine),
  args: fc.array(fc.string().filter((s) => isOneLine(s) && !/^--?[a-z]/.test(s))),
  forwards: fc
    .uniqueArray(fc.integer({ min: 1024, max: 65535 }), { maxLength: 4 })
    .map((ports) => ports.map((p) => ({ host: p, guest: 80 }))),
  snapshot: fc.option(fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/), { nil: undefined }),
  state: fc.constantFrom('running', 'stopped', 'saved'),
});

function observedFor(name: string, kind: number, snapshots: string[]): ObservedVm {
  const disk: DiskState = {
    path: '/srv/vms/d.qcow2',
    exists: kind % 2 === 0,
    format: 'qcow2',
    virtualSizeBytes: 2 ** 30,
    snapshots,
  };
  if (kind < 2) return { name, adopted: false, state: 'stopped', disk };
  if (kind === 2) return { name, adopted: false, state: 'unknown', error: 'frozen' };
  return {
    name,
    adopted: false,
    state: 'running',
    pid: 4242,
    runstate: ['running', 'paused', 'shutdown', 'restore-vm'][kind % 4]!,
    argv: ['qemu-system-x86_64', '-m', '1'],
    forwards: [
      {
        netdev: 'net0',
        proto: 'tcp',
        hostAddress: '127.0.0.1',
        hostPort: 2000 + kind,
        guestAddress: '10.0.2.15',
        guestPort: 22,
      },
    ],
    snapshots,
    disk,
  };
}

/** Every monitor command qvm sends has this shape: a known command and validated words, on one line. */
const SAFE_MONITOR_COMMAND =
  /^(hostfwd_add|hostfwd_remove|savevm|delvm|cont|info usernet|info snapshots|info status)( [A-Za-z0-9._:-]+)*$/;

describe('plan and apply on hostile but valid manifests', () => {
  it(`plans ${PLANNED_MANIFESTS} of them without crashing; monitor commands stay single validated lines and argv stays argv`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.stringMatching(/^[a-z][a-z0-9-]{0,9}$/), { minLength: 1, maxLength: 3 }),
        fc.array(validVm, { minLength: 3, maxLength: 3 }),
        fc.array(fc.integer({ min: 0, max: 7 }), { minLength: 3, maxLength: 3 }),
        async (names, vms, kinds) => {
          const used = new Set<number>();
          const doc = {
            vms: Object.fromEntries(
              names.map((name, i) => {
                const v = vms[i]!;
                // Forwards must not collide across VMs: keep each port once.
                const forwards = v.forwards.filter((f) => !used.has(f.host) && used.add(f.host));
                return [
                  name,
                  { ...v, forwards, ...(v.snapshot === undefined ? {} : { snapshot: v.snapshot }) },
                ];
              }),
            ),
          };
          const result = check(stringify(doc));
          if (!result.manifest) return allLocated(result.diagnostics);
          const obs = observation(
            names.map((n, i) => observedFor(n, kinds[i]!, vms[i]!.snapshot ? [vms[i]!.snapshot!] : [])),
          );
          const p = plan(result.manifest, obs, {
            namespace: NS,
            prune: true,
            restartPolicy: kinds[0]! % 2 === 0,
          });
          renderPlan(p);
          for (const change of p.changes) {
            const args = change.action === 'start' || change.action === 'restart' ? change.launch.args : [];
            const spec = result.manifest.vms.find((v) => v.name === change.vm)!;
            // append and args arrive as whole argv items, exactly as written.
            if (args.length && spec.append !== undefined)
              expect(args[args.indexOf('-append') + 1]).toBe(spec.append);
            if (args.length && spec.args.length)
              expect(
                args
                  .slice(args.length - spec.args.length - (args.includes('-loadvm') ? 2 : 0))
                  .slice(0, spec.args.length),
              ).toEqual(spec.args);
          }
          const sent: string[] = [];
          const effects: Effects = {
            createDisk: async () => {},
            launch: async () => 1,
            stop: async () => 'powered-off',
            hmp: async (_socket, command) => {
              sent.push(command);
              return command === 'info snapshots'
                ? 'List of snapshots present on all disks:\nID TAG VM SIZE DATE VM CLOCK ICOUNT\n'
                : '';
            },
            rememberLiveForwards: () => {},
            waitReady: async () => ({ elapsedMs: 1 }),
            deleteSnapshotOffline: async () => {},
            growDisk: async () => {},
            recordSavedState: () => {},
            forgetSavedState: () => {},
            recordSnapshot: () => {},
            syncClock: async () => true,
            guestShares: async () => {},
            fetchImage: async () => ({ path: '/cache/image', format: 'qcow2' }),
          };
          await applyPlan(p, effects);
          return sent.every((command) => SAFE_MONITOR_COMMAND.test(command));
        },
      ),
      { numRuns: PLANNED_MANIFESTS },
    );
  });
});
