/**
 * The planner and the executor, property-based (fast-check), counting what they reached. Manifests valid by
 * construction are planned against an observed world built for them (each VM absent, crashed, running as
 * specified, drifted, paused, started from another manifest, stuck, powered off, paused on a full disk that has
 * room again, carrying a stray hibernation tag, hibernated; and now and then in a state the planner must
 * refuse), with and without --prune, the restart policy, --refresh-snapshot and --discard-saved-state; each
 * plan is rendered and carried out by applyPlan with a recording fake of the effects.
 *
 * The properties: nothing throws; a VM in a state the planner must refuse gets a problem and no change; what
 * reaches a QEMU command line is the manifest's text as whole argv items (commas doubled inside -drive); every
 * monitor command the executor sends is one known command with validated words; with effects that succeed,
 * every change succeeds. Floors at the end: most VMs planned without a problem, every kind of change
 * produced, both --prune values exercised, every monitor command checked.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { Effects } from '../../src/apply/effects.js';
import { applyPlan } from '../../src/apply/executor.js';
import { formatDiagnostic } from '../../src/errors.js';
import { type GuestKeys, preparedGuest } from '../../src/guest/prepare.js';
import { parseYaml } from '../../src/manifest/load.js';
import type { Manifest, VmSpec } from '../../src/manifest/types.js';
import { checkManifest } from '../../src/manifest/validate.js';
import { plan } from '../../src/plan/plan.js';
import { planJson, renderPlan } from '../../src/plan/render.js';
import type { Launch, VmChange } from '../../src/plan/types.js';
import { NS, observation } from '../helpers/builders.js';
import {
  orphans,
  PROPERTY_TIMEOUT_MS,
  REFUSED,
  RUNS,
  type Situation,
  situation,
  tooBigForHost,
  validManifest,
  world,
} from './manifest-arbitraries.js';

/**
 * Every monitor command qvm sends has this shape: a known command and words of ports, addresses, netdev ids
 * and snapshot tags, on one line.
 */
const SAFE_MONITOR_COMMAND =
  /^(hostfwd_add|hostfwd_remove|savevm|delvm|cont|info usernet|info snapshots|info status)( [A-Za-z0-9._:-]+)*$/;

/** A recording fake of the effects that always succeeds; `info snapshots` lists what savevm saved. */
function fakeEffects(sent: string[]): Effects {
  // Each VM's snapshots, by its monitor socket: VMs are applied in parallel.
  const snapshots = new Map<string, Set<string>>();
  return {
    createDisk: async () => {},
    launch: async () => 1000,
    stop: async () => 'powered-off',
    hmp: async (socket, command) => {
      sent.push(command);
      const tags = snapshots.get(socket) ?? new Set<string>();
      snapshots.set(socket, tags);
      const [verb, tag] = command.split(' ');
      if (verb === 'savevm' && tag) tags.add(tag);
      if (verb === 'delvm' && tag) tags.delete(tag);
      if (command === 'info snapshots')
        return `List of snapshots present on all disks:\nID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT\n${[...tags].map((t) => `--        ${t}  2 MiB 2026-11-26 07:50:28 00:00:00.577`).join('\n')}\n`;
      return '';
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
}

/** The parts of a QEMU option (`key=value,key=value`), split on single commas (`,,` is an escaped comma). */
function optionParts(option: string): string[] {
  return option.split(/(?<!,),(?!,)/).map((p) => p.replace(/,,/g, ','));
}

/**
 * The folder the manifests are read from: the planner checks that share folders exist, so each run makes
 * its VMs' share folders here (hostile names included, one level below the VM's folder: see the generator).
 */
const BASE = mkdtempSync(path.join(tmpdir(), 'qvm-fuzz-plan-'));

/** Keys as `qvm apply` would have made them; the port the manifest's, else one qvm picked. */
function keysFor(spec: VmSpec): GuestKeys {
  return {
    port: spec.ssh?.port ?? 2222,
    userPublicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFuzzUserKeyOnlyForThePropertyTest qvm@test',
    hostKey: {
      privateKey: '-----BEGIN OPENSSH PRIVATE KEY-----\nfuzz\n-----END OPENSSH PRIVATE KEY-----\n',
      publicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFuzzHostKeyOnlyForThePropertyTest qvm-vm',
    },
  };
}

/** The manifest as `apply` plans it: guests prepared (SSH access and forward, the seed), share folders made. */
function prepared(m: Manifest): Manifest {
  for (const spec of m.vms) for (const mount of spec.mounts) mkdirSync(mount.host, { recursive: true });
  return {
    ...m,
    vms: m.vms.map((spec) =>
      spec.ssh || spec.cloudInit
        ? preparedGuest(spec, NS, spec.ssh ? keysFor(spec) : undefined).prepared
        : spec,
    ),
  };
}

/** What the manifest says reaches the command line exactly as written, and nothing can add options. */
function checkLaunch(launch: Launch, spec: VmSpec): void {
  const args = launch.args;
  for (const arg of args) expect(arg, 'an argv item on one line').not.toMatch(/[\n\r]/);
  if (spec.append !== undefined) expect(args[args.indexOf('-append') + 1]).toBe(spec.append);
  if (spec.kernel !== undefined) expect(args[args.indexOf('-kernel') + 1]).toBe(spec.kernel);
  // The manifest's args come last, before -loadvm, each one whole.
  const loadvm = args.includes('-loadvm') ? 2 : 0;
  expect(args.slice(args.length - loadvm - spec.args.length, args.length - loadvm)).toEqual(spec.args);
  const drives = args.flatMap((a, i) =>
    a === '-drive' && i < args.length - spec.args.length ? [args[i + 1]!] : [],
  );
  if (spec.disk) {
    const disk = drives.find((d) => d.endsWith(',id=disk0'))!;
    expect(optionParts(disk)).toEqual([
      `file=${spec.disk.path}`,
      `format=${spec.disk.format}`,
      // With data disks every disk is if=none plus a -device, so the OS disk stays first (argv.ts).
      spec.dataDisks.length ? 'if=none' : 'if=virtio',
      'id=disk0',
    ]);
  }
  spec.dataDisks.forEach((d, i) => {
    const drive = drives.find((x) => x.endsWith(`,id=data${i}`))!;
    expect(optionParts(drive)).toEqual([`file=${d.path}`, `format=${d.format}`, 'if=none', `id=data${i}`]);
    expect(args).toContain(`virtio-blk-pci,drive=data${i},serial=${d.serial}`);
    reached.guest.dataDisks++;
  });
  const shares = args.flatMap((a, i) => (a === '-fsdev' ? [args[i + 1]!] : []));
  expect(shares).toHaveLength(spec.mounts.length);
  spec.mounts.forEach((m, i) => {
    expect(optionParts(shares[i]!)).toEqual([
      'local',
      `id=fs${i}`,
      `path=${m.host}`,
      'security_model=none',
      ...(m.writable ? [] : ['readonly=on']),
    ]);
    reached.guest.mounts++;
  });
  if (spec.seed) {
    const seed = drives.find((d) => d.endsWith(',id=seed0'))!;
    expect(optionParts(seed)).toContain(`file.dir=${spec.seed.dir}`);
    expect(optionParts(seed)).toContain('readonly=on');
    reached.guest.seeds++;
  }
  if (spec.agent) {
    expect(args).toContain('virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0');
    reached.guest.agents++;
  }
  if (spec.display) {
    const vnc = args[args.indexOf('-vnc') + 1]!;
    if (spec.display.kind === 'vnc-tcp')
      expect(vnc).toBe(`${spec.display.address}:${spec.display.port - 5900}`);
    else expect(vnc).toMatch(/^unix:/);
    reached.guest.displays++;
  }
  if (spec.ssh?.port !== undefined) {
    const netdev = args[args.indexOf('-netdev') + 1]!;
    expect(optionParts(netdev)).toContain(`hostfwd=tcp:127.0.0.1:${spec.ssh.port}-:22`);
    reached.guest.sshForwards++;
  }
  if (spec.cdrom) {
    const cdrom = drives.find((d) => d.endsWith(',id=cdrom0'))!;
    expect(optionParts(cdrom)[0]).toBe(`file=${spec.cdrom}`);
    expect(optionParts(cdrom)).toHaveLength(6);
  }
}

/** What the property reached: printed at the end and asserted as floors. */
const reached = {
  runs: 0,
  vms: 0,
  /** VMs in an ordinary situation, and how many of them were planned without a problem. */
  ordinary: 0,
  plannedClean: 0,
  refused: 0,
  /** Problems of VMs in ordinary situations other than memory the host does not have (shown, at most 20). */
  otherProblems: [] as string[],
  changes: { start: 0, restart: 0, update: 0, stop: 0, save: 0 } as Record<VmChange['action'], number>,
  unchanged: 0,
  situations: {} as Record<string, number>,
  prune: { true: 0, false: 0 },
  orphansStopped: 0,
  orphansNoted: 0,
  monitorCommands: {} as Record<string, number>,
  monitorCommandsChecked: 0,
  launchesChecked: 0,
  /** Guest devices checked on the command lines of starts and restarts. */
  guest: { dataDisks: 0, mounts: 0, seeds: 0, agents: 0, displays: 0, sshForwards: 0, images: 0 },
};

// No shrinking: shrinking a generated manifest and world ran for minutes (see fuzz-validate.test.ts). A
// failure prints the failing case whole.
fc.configureGlobal({ endOnFailure: true });

afterAll(() => {
  rmSync(BASE, { recursive: true, force: true });
  const shown = { ...reached, otherProblems: reached.otherProblems.slice(0, 20) };
  console.log(`property test of plan and apply, ${RUNS} runs:\n${JSON.stringify(shown, null, 2)}`);
});

describe('plan and apply on manifests valid by construction', () => {
  it(`plans, renders and applies ${RUNS} of them against generated worlds`, {
    timeout: PROPERTY_TIMEOUT_MS,
  }, async () => {
    const options = fc.record({
      prune: fc.boolean(),
      restartPolicy: fc.boolean(),
      refreshSnapshots: fc.boolean(),
      discardSavedState: fc.boolean(),
      kvm: fc.boolean(),
      orphans: fc.nat(2),
    });
    await fc.assert(
      fc.asyncProperty(
        validManifest,
        fc.array(situation, { minLength: 4, maxLength: 4 }),
        options,
        async (doc, situations, o) => {
          const text = stringify(doc);
          const checked = checkManifest(parseYaml(text, 'qvm.yaml'), BASE);
          expect(checked.diagnostics.map(formatDiagnostic), text).toEqual([]);
          const m = prepared(checked.manifest!);
          const w = world(m, situations, o.kvm);
          const gone = orphans(m, o.orphans);
          const obs = observation(w.observed, gone, o.kvm, w.portConflicts);
          const p = plan(m, obs, {
            namespace: NS,
            prune: o.prune,
            restartPolicy: o.restartPolicy,
            refreshSnapshots: o.refreshSnapshots,
            discardSavedState: o.discardSavedState,
          });
          expect(renderPlan(p).length).toBeGreaterThan(0);
          expect(planJson(p)).toMatchObject({ apiVersion: 'qvm/v1', kind: 'Plan' });
          reached.runs++;
          reached.prune[o.prune ? 'true' : 'false']++;

          for (const spec of m.vms) {
            const as = w.situations.get(spec.name) as Situation;
            reached.vms++;
            reached.situations[as] = (reached.situations[as] ?? 0) + 1;
            const problems = p.problems.filter((x) => x.vm === spec.name);
            const changes = p.changes.filter((c) => c.vm === spec.name);
            // The planner plans at most one change per VM.
            expect(changes.length).toBeLessThanOrEqual(1);
            // A stray hibernation tag with no record is dropped, not refused, when told to discard it.
            const mustRefuse = REFUSED.has(as) && !(as === 'tag-without-record' && o.discardSavedState);
            if (mustRefuse) {
              // Never a start, restart, stop or live change of a VM the planner cannot see clearly.
              expect(problems.length, `${spec.name} (${as})\n${renderPlan(p)}`).toBeGreaterThan(0);
              expect(changes, `${spec.name} (${as})`).toEqual([]);
              reached.refused++;
            } else {
              reached.ordinary++;
              if (problems.length === 0) reached.plannedClean++;
              // The one ordinary reason for a problem the generator allows: more memory than the host has.
              else if (!tooBigForHost(spec))
                reached.otherProblems.push(`${spec.name} (${as}): ${problems[0]!.message}`);
            }
            if (changes.length === 0 && problems.length === 0) reached.unchanged++;
          }
          for (const change of p.changes) {
            reached.changes[change.action]++;
            if (change.action === 'start' || change.action === 'restart') {
              checkLaunch(change.launch, m.vms.find((v) => v.name === change.vm)!);
              reached.launchesChecked++;
              if (change.fetchImage || change.createDisk?.image) reached.guest.images++;
            }
          }
          const orphanStops = p.changes.filter((c) => c.action === 'stop' && c.reason === 'not-in-manifest');
          if (o.prune) {
            expect(orphanStops.map((c) => c.vm)).toEqual(gone.map((g) => g.name));
            reached.orphansStopped += orphanStops.length;
          } else {
            expect(orphanStops).toEqual([]);
            const noted = p.notes.filter((n) => n.message.includes('not in the manifest'));
            expect(noted.map((n) => n.vm)).toEqual(gone.map((g) => g.name));
            reached.orphansNoted += noted.length;
          }

          const sent: string[] = [];
          const results = await applyPlan(p, fakeEffects(sent));
          // Effects that succeed make every change succeed.
          expect(
            results.filter((r) => !r.ok).map((r) => r.error?.message),
            renderPlan(p),
          ).toEqual([]);
          expect(results.map((r) => r.vm)).toEqual(p.changes.map((c) => c.vm));
          for (const command of sent) {
            expect(command, 'a monitor command of a known shape').toMatch(SAFE_MONITOR_COMMAND);
            const verb = /^(info \w+|\S+)/.exec(command)![1]!;
            reached.monitorCommands[verb] = (reached.monitorCommands[verb] ?? 0) + 1;
            reached.monitorCommandsChecked++;
          }
        },
      ),
      { numRuns: RUNS },
    );

    // Floors: what the property must have reached for its passing to mean something.
    expect(reached.runs).toBe(RUNS);
    expect(
      reached.plannedClean / reached.ordinary,
      'VMs in ordinary situations planned without a problem',
    ).toBeGreaterThanOrEqual(0.9);
    for (const action of ['start', 'restart', 'update', 'stop', 'save'] as const)
      expect(reached.changes[action], `${action} changes`).toBeGreaterThan(0);
    expect(reached.unchanged, 'VMs that already matched').toBeGreaterThan(0);
    expect(reached.refused, 'VMs the planner had to refuse').toBeGreaterThan(0);
    expect(reached.prune.true).toBeGreaterThan(0);
    expect(reached.prune.false).toBeGreaterThan(0);
    expect(reached.orphansStopped, 'VMs left out of the manifest, stopped with --prune').toBeGreaterThan(0);
    expect(reached.orphansNoted, 'VMs left out of the manifest, noted without --prune').toBeGreaterThan(0);
    for (const verb of ['hostfwd_add', 'hostfwd_remove', 'savevm', 'delvm', 'cont', 'info snapshots'])
      expect(reached.monitorCommands[verb] ?? 0, `${verb} commands sent and checked`).toBeGreaterThan(0);
    expect(reached.launchesChecked).toBeGreaterThan(0);
    for (const [device, count] of Object.entries(reached.guest))
      expect(count, `${device} on command lines checked`).toBeGreaterThan(0);
    for (const s of [
      'absent',
      'crashed',
      'as-specified',
      'drifted',
      'paused',
      'changed',
      'stuck',
      'powered-off',
    ])
      expect(reached.situations[s] ?? 0, `VMs ${s}`).toBeGreaterThan(0);
  });
});
