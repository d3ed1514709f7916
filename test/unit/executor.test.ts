/** The executor against a recording fake of its effects: which calls, in which order, and what failure does. */
import { describe, expect, it } from 'vitest';
import type { Effects } from '../../src/apply/effects.js';
import { applyPlan, type ProgressEvent } from '../../src/apply/executor.js';
import { MonitorCommandError } from '../../src/errors.js';
import { SAVED_STATE_TAG } from '../../src/model/names.js';
import { plan } from '../../src/plan/plan.js';
import {
  disk,
  manifest,
  missingDisk,
  NS,
  observation,
  runningAsSpecified,
  savedState,
  stopped,
} from '../helpers/builders.js';

/** Records every effect; `fail` makes matching monitor commands fail with a QEMU message. */
function recordingEffects(fail: Record<string, string> = {}, snapshotsAfterSave = [SAVED_STATE_TAG]) {
  const calls: string[] = [];
  const effects: Effects = {
    async createDisk(vm, d) {
      calls.push(`${vm}: create disk ${d.path}${d.backing ? ` over ${d.backing} (${d.backingFormat})` : ''}`);
    },
    async launch(vm, launch, bootedFrom) {
      calls.push(
        `${vm}: launch${bootedFrom ? ` from ${bootedFrom.tag}` : ''} (${launch.args.includes('-loadvm') ? 'with' : 'without'} -loadvm)`,
      );
      return 1000;
    },
    async stop(target) {
      calls.push(
        `${target.vm}: stop${target.alreadyPoweredOff ? ' (already powered off)' : ''}${target.adopted ? ' (adopted)' : ''}`,
      );
      return 'powered-off';
    },
    async hmp(socket, command) {
      calls.push(`${socket}: ${command}`);
      const failure = Object.entries(fail).find(([prefix]) => command.startsWith(prefix));
      if (failure) throw new MonitorCommandError(command, failure[1], socket);
      if (command === 'info snapshots') {
        return `List of snapshots present on all disks:\nID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT\n${snapshotsAfterSave.map((t) => `--        ${t}  2 MiB 2026-11-26 07:50:28 00:00:00.577`).join('\n')}\n`;
      }
      return '';
    },
    rememberLiveForwards(vm, added, removed) {
      calls.push(`${vm}: remember +${added.length} -${removed.length}`);
    },
    async waitReady(_vm, ready, socket) {
      calls.push(`${socket}: wait ready ${ready.kind} ${'port' in ready ? ready.port : ''}`);
      return { elapsedMs: 1500 };
    },
    async deleteSnapshotOffline(diskPath, tag) {
      calls.push(`qemu-img snapshot -d ${tag} ${diskPath}`);
    },
    async growDisk(diskPath, format, size) {
      calls.push(`qemu-img resize -f ${format} ${diskPath} ${size}`);
    },
    recordSavedState(vm, saved) {
      calls.push(`${vm}: record saved state ${saved.tag} on ${saved.disk}`);
    },
    forgetSavedState(vm) {
      calls.push(`${vm}: forget saved state`);
    },
    recordSnapshot(vm, tag) {
      calls.push(`${vm}: record snapshot ${tag}`);
    },
    async syncClock(how) {
      calls.push(`${'ssh' in how ? how.ssh.vm : how.agent}: sync clock`);
      return true;
    },
    async guestShares(agent, action) {
      calls.push(`${agent}: ${action} shares`);
    },
    async fetchImage(fetch) {
      calls.push(`fetch ${fetch.url}`);
      return { path: `/cache/${fetch.digest.hex}`, format: 'qcow2' };
    },
  };
  return { calls, effects };
}

const options = { namespace: NS, prune: false };

describe('applyPlan', () => {
  it('creates the disk before launching, and reports done', async () => {
    const m = manifest('vms:\n  web:\n    disk: { path: d.qcow2, size: 1G }\n');
    const p = plan(m, observation([stopped('web', { disk: missingDisk('/srv/vms/d.qcow2') })]), options);
    const { calls, effects } = recordingEffects();
    const events: ProgressEvent[] = [];
    const results = await applyPlan(p, effects, { onProgress: (e) => events.push(e) });
    expect(calls).toEqual(['web: create disk /srv/vms/d.qcow2', 'web: launch (without -loadvm)']);
    expect(results).toMatchObject([{ vm: 'web', ok: true }]);
    expect(events.map((e) => e.type)).toEqual(['begin', 'step', 'step', 'done']);
    expect(events.at(-1)).toMatchObject({ summary: 'started (pid 1000)' });
  });

  it('downloads the image first, then makes the disk an overlay of the cached file', async () => {
    const hex = 'ab'.repeat(32);
    const m = manifest(
      `vms:\n  dev:\n    image: { url: "http://images.test/debian.qcow2", sha256: "${hex}" }\n    disk: { path: dev.qcow2, size: 4G }\n`,
    );
    const p = plan(
      m,
      observation([
        stopped('dev', {
          disk: missingDisk('/srv/vms/dev.qcow2'),
          image: { kind: 'url', remoteSizeBytes: 2 ** 28 },
        }),
      ]),
      options,
    );
    const { calls, effects } = recordingEffects();
    const results = await applyPlan(p, effects);
    expect(results).toMatchObject([{ vm: 'dev', ok: true }]);
    expect(calls).toEqual([
      'fetch http://images.test/debian.qcow2',
      `dev: create disk /srv/vms/dev.qcow2 over /cache/${hex} (qcow2)`,
      'dev: launch (without -loadvm)',
    ]);
  });

  it("removes forwards before adding, tries every forward when one fails, and reports QEMU's message", async () => {
    const m = manifest('vms:\n  db:\n    forwards: ["tcp::15432-:5432", "tcp::15435-:5435"]\n');
    const running = runningAsSpecified(manifest('vms:\n  db:\n    forwards: ["tcp::15433-:5433"]\n'), 'db');
    const p = plan(m, observation([running]), options);
    const { calls, effects } = recordingEffects({
      'hostfwd_add net0 tcp:127.0.0.1:15432':
        "Could not set up host forwarding rule 'tcp:127.0.0.1:15432-:5432'",
    });
    const results = await applyPlan(p, effects);
    expect(calls).toEqual([
      '/run/qvm/ns/db/qmp.sock: hostfwd_remove net0 tcp:127.0.0.1:15433',
      '/run/qvm/ns/db/qmp.sock: hostfwd_add net0 tcp:127.0.0.1:15432-:5432',
      '/run/qvm/ns/db/qmp.sock: hostfwd_add net0 tcp:127.0.0.1:15435-:5435',
      'db: remember +1 -1',
    ]);
    expect(results[0]!.ok).toBe(false);
    expect(results[0]!.error!.message).toBe(
      "db: updating forwards: hostfwd_add tcp:127.0.0.1:15432-:5432: Could not set up host forwarding rule 'tcp:127.0.0.1:15432-:5432'",
    );
  });

  it('hibernates: savevm, checks the snapshot is there, then quits', async () => {
    const m = manifest('vms:\n  web:\n    disk: d.qcow2\n    state: saved\n');
    const p = plan(m, observation([runningAsSpecified(m, 'web')]), options);
    const { calls, effects } = recordingEffects();
    await applyPlan(p, effects);
    expect(calls).toEqual([
      `/run/qvm/ns/web/qmp.sock: savevm ${SAVED_STATE_TAG}`,
      '/run/qvm/ns/web/qmp.sock: info snapshots',
      'web: stop (already powered off)',
      // Only after the process ended: the record is what lets a later start resume the state.
      `web: record saved state ${SAVED_STATE_TAG} on /srv/vms/d.qcow2`,
    ]);
  });

  it('never quits a VM whose state did not reach the disk', async () => {
    const m = manifest('vms:\n  web:\n    disk: d.qcow2\n    state: saved\n');
    const p = plan(m, observation([runningAsSpecified(m, 'web')]), options);
    const { calls, effects } = recordingEffects({}, []);
    const [result] = await applyPlan(p, effects);
    expect(calls.some((c) => c.includes('stop'))).toBe(false);
    expect(result!.error!.message).toBe(
      `web: saving state (savevm ${SAVED_STATE_TAG}): snapshot ${SAVED_STATE_TAG} is not on the disk after savevm; the VM was left running`,
    );
  });

  it('resumes a saved state and then drops it, so a later cold start does not resume stale state', async () => {
    const m = manifest('vms:\n  web:\n    disk: d.qcow2\n');
    const p = plan(
      m,
      observation([
        stopped('web', {
          disk: disk('/srv/vms/d.qcow2', { snapshots: [SAVED_STATE_TAG] }),
          savedState: savedState('web', '/srv/vms/d.qcow2'),
        }),
      ]),
      options,
    );
    const { calls, effects } = recordingEffects();
    await applyPlan(p, effects);
    expect(calls).toEqual([
      `web: launch from ${SAVED_STATE_TAG} (with -loadvm)`,
      `/run/qvm/ns/web/qmp.sock: delvm ${SAVED_STATE_TAG}`,
    ]);
  });

  it('restarts by stopping gracefully, then launching', async () => {
    const before = manifest('vms:\n  web:\n    cpus: 1\n');
    const after = manifest('vms:\n  web:\n    cpus: 2\n');
    const p = plan(after, observation([runningAsSpecified(before, 'web')]), options);
    const { calls, effects } = recordingEffects();
    await applyPlan(p, effects);
    expect(calls).toEqual(['web: stop', 'web: launch (without -loadvm)']);
  });

  it('carries on with the other VMs when one fails', async () => {
    const m = manifest('vms:\n  a: {}\n  b: {}\n');
    const p = plan(m, observation([stopped('a'), stopped('b')]), options);
    const { effects } = recordingEffects();
    effects.launch = async (vm) => {
      if (vm === 'a') throw new MonitorCommandError('launch', 'QEMU did not start: port taken', '');
      return 7;
    };
    const results = await applyPlan(p, effects);
    expect(results.map((r) => [r.vm, r.ok])).toEqual([
      ['a', false],
      ['b', true],
    ]);
    expect(results[0]!.error!.message).toBe('a: starting QEMU: QEMU did not start: port taken');
  });
});

describe('ordering', () => {
  it('starts a change only after the changes it must wait for (a VM leaving the manifest frees its disk)', async () => {
    const old = runningAsSpecified(manifest('vms:\n  old:\n    disk: d.qcow2\n'), 'old');
    const m = manifest('vms:\n  new:\n    disk: d.qcow2\n');
    const p = plan(m, observation([stopped('new', { disk: disk('/srv/vms/d.qcow2') })], [old]), {
      namespace: NS,
      prune: true,
    });
    expect(p.changes.map((c) => [c.action, c.vm, 'after' in c ? c.after : undefined])).toEqual([
      ['start', 'new', ['old']],
      ['stop', 'old', undefined],
    ]);
    const { calls, effects } = recordingEffects();
    const stop = effects.stop;
    effects.stop = async (target) => {
      await new Promise((r) => setTimeout(r, 20));
      return stop(target);
    };
    await applyPlan(p, effects);
    expect(calls).toEqual(['old: stop', 'new: launch (without -loadvm)']);
  });
});

describe('warm starts', () => {
  const warm =
    'vms:\n  web:\n    disk: d.qcow2\n    snapshot: ready\n    forwards: ["tcp::10022-:22"]\n    ready: { tcp: 10022 }\n';

  it('waits for ready, then saves the snapshot and checks it is on the disk', async () => {
    const m = manifest(warm);
    const p = plan(m, observation([stopped('web', { disk: disk('/srv/vms/d.qcow2') })]), {
      namespace: NS,
      prune: false,
    });
    const { calls, effects } = recordingEffects({}, ['ready']);
    const events: ProgressEvent[] = [];
    await applyPlan(p, effects, { onProgress: (e) => events.push(e) });
    expect(calls).toEqual([
      'web: launch (without -loadvm)',
      '/run/qvm/ns/web/qmp.sock: wait ready tcp 10022',
      '/run/qvm/ns/web/qmp.sock: savevm ready',
      '/run/qvm/ns/web/qmp.sock: info snapshots',
      'web: record snapshot ready',
    ]);
    expect(events.at(-1)).toMatchObject({
      type: 'done',
      summary: 'started (pid 1000), ready in 1.5s, saved snapshot ready',
    });
  });

  it('refreshes: stops, deletes the old snapshot offline, cold boots, saves again', async () => {
    const m = manifest(warm);
    const running = runningAsSpecified(m, 'web', {
      disk: disk('/srv/vms/d.qcow2', { snapshots: ['ready'] }),
    });
    const p = plan(m, observation([running]), { namespace: NS, prune: false, refreshSnapshots: true });
    const { calls, effects } = recordingEffects({}, ['ready']);
    await applyPlan(p, effects);
    expect(calls).toEqual([
      'web: stop',
      'qemu-img snapshot -d ready /srv/vms/d.qcow2',
      'web: launch (without -loadvm)',
      '/run/qvm/ns/web/qmp.sock: wait ready tcp 10022',
      '/run/qvm/ns/web/qmp.sock: savevm ready',
      '/run/qvm/ns/web/qmp.sock: info snapshots',
      'web: record snapshot ready',
    ]);
  });
});
