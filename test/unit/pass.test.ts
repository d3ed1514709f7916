/**
 * The one reconcile pass behind apply, watch and destroy, and watch's selection of what to apply, with a
 * recording fake of the effects and of observation: which calls, in which order, under which lock.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Effects } from '../../src/apply/effects.js';
import { LockBusyError, ManifestError, UsageError } from '../../src/errors.js';
import type { Manifest } from '../../src/manifest/types.js';
import type { Observation, ObservedVm } from '../../src/observe/types.js';
import { plan } from '../../src/plan/plan.js';
import { runPass } from '../../src/reconcile/pass.js';
import { acquireLock, lockToken } from '../../src/runtime/lock.js';
import { namespaceFor } from '../../src/runtime/paths.js';
import { Backoff } from '../../src/watch/backoff.js';
import { selectChanges } from '../../src/watch/select.js';
import { manifest, NS, observation, runningAsSpecified, stopped } from '../helpers/builders.js';
import { removeDir, tempDir } from '../helpers/qemu.js';

const root = tempDir('qvmp-');
// Each run gets its own runtime and state roots, as every test does: never the user's own.
process.env.QVM_RUNTIME_DIR = path.join(root, 'run');
process.env.QVM_STATE_DIR = path.join(root, 'state');
afterAll(() => removeDir(root));

function recordingEffects(calls: string[]): Effects {
  return {
    createDisk: async (vm, d) => void calls.push(`${vm}: create ${path.basename(d.path)}`),
    launch: async (vm, launch) => {
      calls.push(`${vm}: launch -m ${launch.spec.memoryMiB}`);
      return 1000;
    },
    stop: async (t) => {
      calls.push(`${t.vm}: stop (timeout ${t.stopTimeoutMs} ms)`);
      return 'powered-off';
    },
    hmp: async (_socket, command) => {
      calls.push(`hmp ${command}`);
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

/** A manifest file in its own folder, and an observer that reports the VMs as `observed` says. */
function setup(
  name: string,
  yaml: string,
  observed: (m: Manifest) => ObservedVm[],
  orphans: ObservedVm[] = [],
) {
  const dir = path.join(root, name);
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'qvm.yaml');
  writeFileSync(file, yaml);
  const observer = async (m: Manifest): Promise<Observation> => observation(observed(m), orphans);
  return { file, observer };
}

describe('runPass', () => {
  it('apply: loads, plans and applies everything, and tells the plan first', async () => {
    const { file, observer } = setup('apply', 'vms:\n  web:\n    memory: 256M\n  db: {}\n', () => [
      stopped('web'),
      stopped('db'),
    ]);
    const calls: string[] = [];
    const seen: string[] = [];
    const result = await runPass({
      source: file,
      command: 'apply',
      wait: false,
      timeoutMs: 1000,
      planOptions: { prune: false },
      onPlan: (p) => seen.push(`plan with ${p.changes.length} changes`),
      effects: () => recordingEffects(calls),
      observer,
    });
    expect(seen).toEqual(['plan with 2 changes']);
    expect(calls.sort()).toEqual(['db: launch -m 512', 'web: launch -m 256']);
    expect(result.results.map((r) => [r.vm, r.ok])).toEqual([
      ['web', true],
      ['db', true],
    ]);
  });

  it('plan (dry run): applies nothing and takes no lock', async () => {
    const { file, observer } = setup('dry', 'vms:\n  web: {}\n', () => [stopped('web')]);
    const lock = await acquireLock(namespaceFor(file), 'test', { wait: false });
    try {
      const calls: string[] = [];
      const result = await runPass({
        source: file,
        command: 'plan',
        wait: false,
        timeoutMs: 1000,
        planOptions: { prune: false },
        dryRun: true,
        effects: () => recordingEffects(calls),
        observer,
      });
      expect(result.plan.changes).toHaveLength(1);
      expect(result.applied.changes).toEqual([]);
      expect(calls).toEqual([]);
    } finally {
      await lock.release();
    }
  });

  it('holds the namespace lock: without waiting, a busy lock fails before observing', async () => {
    const { file } = setup('locked', 'vms:\n  web: {}\n', () => [stopped('web')]);
    const lock = await acquireLock(namespaceFor(file), 'apply', { wait: false });
    let observed = false;
    try {
      await expect(
        runPass({
          source: file,
          command: 'apply',
          wait: false,
          timeoutMs: 1000,
          planOptions: { prune: false },
          effects: () => recordingEffects([]),
          observer: async () => {
            observed = true;
            return observation([]);
          },
        }),
      ).rejects.toThrow(LockBusyError);
    } finally {
      await lock.release();
    }
    expect(observed).toBe(false);
  });

  it('a watch pass: select decides what is applied, the rest is only planned', async () => {
    const before = manifest('vms:\n  web:\n    memory: 256M\n    forwards: ["tcp::8080-:80"]\n');
    const { file, observer } = setup(
      'watch',
      'vms:\n  web:\n    memory: 320M\n    forwards: ["tcp::8080-:80", "tcp::8081-:80"]\n',
      () => [runningAsSpecified(before, 'web')],
    );
    const calls: string[] = [];
    const result = await runPass({
      source: file,
      command: 'watch',
      wait: true,
      timeoutMs: 1000,
      planOptions: { prune: false, restartPolicy: true },
      select: (p) => selectChanges(p, true, new Backoff(), 0).plan,
      effects: () => recordingEffects(calls),
      observer,
    });
    expect(result.plan.changes.map((c) => c.action)).toEqual(['restart']);
    expect(result.applied.changes.map((c) => c.action)).toEqual(['update']);
    expect(calls).toEqual(['hmp hostfwd_add net0 tcp:127.0.0.1:8081-:80']);
  });

  it('destroy: stops the VMs named through the planner, with the stop timeout the launch record kept', async () => {
    const old = runningAsSpecified(manifest('vms:\n  old:\n    stopTimeout: 7s\n'), 'old');
    const { file, observer } = setup(
      'destroy',
      'vms:\n  web:\n    stopTimeout: 3s\n  legacy:\n    monitor: /tmp/x.sock\n',
      (m) => [runningAsSpecified(m, 'web'), { name: 'legacy', adopted: true, state: 'stopped' }],
      [old],
    );
    const calls: string[] = [];
    const after: string[] = [];
    const result = await runPass({
      source: file,
      command: 'destroy',
      wait: false,
      timeoutMs: 1000,
      planOptions: () => ({ prune: false, destroy: ['web', 'old', 'legacy'] }),
      effects: () => recordingEffects(calls),
      observer,
      afterApply: (_context, applied, results) => {
        after.push(`${applied.changes.length} stops, ${results.filter((r) => r.ok).length} ok`);
      },
    });
    expect(calls.sort()).toEqual(['old: stop (timeout 7000 ms)', 'web: stop (timeout 3000 ms)']);
    expect(result.plan.notes).toEqual([
      {
        vm: 'legacy',
        message: 'skipped: adopted VMs (monitor:) are not destroyed by qvm; set state: stopped to quit one',
      },
    ]);
    expect(after).toEqual(['2 stops, 2 ok']);
  });

  it('an invalid manifest throws its located errors before any lock or observation', async () => {
    const { file } = setup('invalid', 'vms:\n  web:\n    memory: lots\n', () => []);
    await expect(
      runPass({
        source: file,
        command: 'watch',
        wait: false,
        timeoutMs: 1000,
        planOptions: { prune: false },
        effects: () => recordingEffects([]),
        observer: async () => {
          throw new Error('must not observe');
        },
      }),
    ).rejects.toThrow(ManifestError);
  });

  it('plan options that refuse the manifest (destroy of an unknown VM) throw before the lock', async () => {
    const { file, observer } = setup('unknown', 'vms:\n  web: {}\n', () => [stopped('web')]);
    await expect(
      runPass({
        source: file,
        command: 'destroy',
        wait: false,
        timeoutMs: 1000,
        planOptions: () => {
          throw new UsageError('no VM named "nope"');
        },
        observer,
      }),
    ).rejects.toThrow('no VM named "nope"');
  });
});

describe('runPass with lockOnlyForChanges (apply)', () => {
  const request = (file: string, observer: (m: Manifest) => Promise<Observation>, calls: string[]) => ({
    source: file,
    command: 'apply',
    wait: false,
    lockOnlyForChanges: true,
    timeoutMs: 1000,
    planOptions: { prune: false },
    effects: () => recordingEffects(calls),
    observer,
  });

  it('with nothing to do, plans once and takes no lock', async () => {
    const m = manifest('vms:\n  web: {}\n');
    const { file } = setup('nolock', 'vms:\n  web: {}\n', () => []);
    const namespace = namespaceFor(file);
    const before = lockToken(namespace);
    expect(before).toBe('none'); // no qvm ever took this namespace's lock
    let observed = 0;
    const seen: string[] = [];
    const result = await runPass({
      ...request(file, async () => {
        observed++;
        return observation([runningAsSpecified(m, 'web', {}, namespace)]);
      }, []),
      onPlan: (p) => seen.push(`plan with ${p.changes.length} changes`),
    });
    expect(result.plan.changes).toEqual([]);
    expect(observed).toBe(1);
    expect(seen).toEqual(['plan with 0 changes']);
    expect(lockToken(namespace)).toBe(before);
  });

  it('with changes, takes the lock and carries out the plan it made, when no qvm held the lock since', async () => {
    const { file } = setup('relock', 'vms:\n  web: {}\n', () => []);
    const namespace = namespaceFor(file);
    const tokens: (string | undefined)[] = [];
    const calls: string[] = [];
    const seen: string[] = [];
    const result = await runPass({
      ...request(
        file,
        async () => {
          tokens.push(lockToken(namespace));
          return observation([stopped('web')]);
        },
        calls,
      ),
      effects: () => ({
        ...recordingEffects(calls),
        launch: async () => {
          // Carried out under the lock: the token is undefined while a live holder has it.
          calls.push(`launch, lock token ${String(lockToken(namespace))}`);
          return 1000;
        },
      }),
      onPlan: (p) => seen.push(`plan with ${p.changes.length} changes`),
    });
    // One look, without the lock; nobody took the lock before this pass did, so its plan stands.
    expect(tokens).toEqual(['none']);
    expect(seen).toEqual(['plan with 1 changes']);
    expect(calls).toEqual(['launch, lock token undefined']);
    expect(result.results.map((r) => r.ok)).toEqual([true]);
    // Released, and marked so: the token is a new one, and not "held".
    expect(lockToken(namespace)).toEqual(expect.any(String));
    expect(lockToken(namespace)).not.toBe('none');
  });

  it('when another qvm took the lock while it looked, looks again under the lock', async () => {
    const m = manifest('vms:\n  web: {}\n');
    const { file } = setup('raced', 'vms:\n  web: {}\n', () => []);
    const namespace = namespaceFor(file);
    let observed = 0;
    const result = await runPass(
      request(file, async () => {
        observed++;
        if (observed === 1) {
          // Another apply runs start to end meanwhile (it started the VM): what was seen may be half of it.
          const other = await acquireLock(namespace, 'apply', { wait: false });
          await other.release();
          return observation([stopped('web')]);
        }
        return observation([runningAsSpecified(m, 'web', {}, namespace)]);
      }, []),
    );
    expect(observed).toBe(2);
    expect(result.plan.changes).toEqual([]);
  });

  it('when a holder is at work, waits for the lock as without (and, not waiting, fails before observing)', async () => {
    const { file } = setup('held', 'vms:\n  web: {}\n', () => []);
    const namespace = namespaceFor(file);
    const lock = await acquireLock(namespace, 'watch', { wait: false });
    let observed = 0;
    try {
      expect(lockToken(namespace)).toBeUndefined();
      await expect(
        runPass(
          request(file, async () => {
            observed++;
            return observation([]);
          }, []),
        ),
      ).rejects.toThrow(LockBusyError);
    } finally {
      await lock.release();
    }
    expect(observed).toBe(0);
  });
});

describe('selectChanges (watch)', () => {
  const crashed = observation([stopped('web', { stale: 'process 9 has exited; its pidfile is stale' })]);
  const m = manifest('vms:\n  web: {}\n');
  const recoveryPlan = plan(m, crashed, { namespace: NS, prune: false, restartPolicy: true });

  it('applies a recovery start at once, then backs off the next ones', () => {
    const backoff = new Backoff();
    const first = selectChanges(recoveryPlan, false, backoff, 0);
    expect(first.plan.changes.map((c) => c.action)).toEqual(['start']);
    expect(first.backedOff).toEqual([]);
    const second = selectChanges(recoveryPlan, false, backoff, 200);
    expect(second.plan.changes).toEqual([]);
    expect(second.backedOff).toEqual([{ vm: 'web', restarts: 1, delayMs: 800 }]);
    const later = selectChanges(recoveryPlan, false, backoff, 1000);
    expect(later.plan.changes.map((c) => c.action)).toEqual(['start']);
  });

  it('forgets deaths once a VM is started on purpose', () => {
    const backoff = new Backoff();
    backoff.recordRestart('web', 0);
    const fresh = plan(m, observation([stopped('web')]), { namespace: NS, prune: false });
    expect(selectChanges(fresh, false, backoff, 10).plan.changes).toHaveLength(1);
    expect(backoff.delayMs('web', 10)).toBe(0);
  });

  it('--live-only holds stops and restarts as pending, and applies the live part of a restart', () => {
    const before = manifest('vms:\n  web:\n    memory: 256M\n  db: {}\n');
    const after = manifest(
      'vms:\n  web:\n    memory: 320M\n    forwards: ["tcp::8081-:80"]\n  db:\n    state: stopped\n',
    );
    const p = plan(
      after,
      observation([runningAsSpecified(before, 'web'), runningAsSpecified(before, 'db')]),
      {
        namespace: NS,
        prune: false,
      },
    );
    const s = selectChanges(p, true, new Backoff(), 0);
    expect(s.pending.map((x) => [x.change.vm, x.change.action, x.liveInstead?.action])).toEqual([
      ['web', 'restart', 'update'],
      ['db', 'stop', undefined],
    ]);
    expect(s.plan.changes.map((c) => [c.vm, c.action])).toEqual([['web', 'update']]);
  });
});
