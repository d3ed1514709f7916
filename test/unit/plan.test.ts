import { describe, expect, it } from 'vitest';
import { SAVED_STATE_TAG } from '../../src/model/names.js';
import { launchSpec } from '../../src/plan/launch.js';
import { plan } from '../../src/plan/plan.js';
import { planJson, renderPlan } from '../../src/plan/render.js';
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

const options = { namespace: NS, prune: false };

describe('plan', () => {
  it('starts a missing VM and creates its disk', () => {
    const m = manifest(
      'vms:\n  web:\n    disk: { path: disks/web.qcow2, size: 8G }\n    forwards: ["tcp::8080-:80"]\n',
    );
    const p = plan(
      m,
      observation([stopped('web', { disk: missingDisk('/srv/vms/disks/web.qcow2') })]),
      options,
    );
    expect(p.changes).toMatchObject([
      {
        action: 'start',
        vm: 'web',
        reason: 'new',
        createDisk: { path: '/srv/vms/disks/web.qcow2', sizeBytes: 8 * 2 ** 30 },
        socket: '/run/qvm/ns/web/qmp.sock',
      },
    ]);
    const args = p.changes[0]!.action === 'start' ? p.changes[0]!.launch.args : [];
    expect(args).toContain('user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80');
    expect(args).toContain('file=/srv/vms/disks/web.qcow2,format=qcow2,if=virtio,id=disk0');
    expect(renderPlan(p)).toBe(
      [
        '  + web   start (creates disks/web.qcow2, 8G)',
        '',
        'Plan: 1 to start, 0 to change live, 0 to restart, 0 to stop.',
        '',
      ].join('\n'),
    );
  });

  it('is idempotent: a VM running as specified needs nothing', () => {
    const m = manifest(
      'vms:\n  web:\n    memory: 1G\n    forwards: ["tcp::8080-:80", {host: 2222, guest: 22}]\n',
    );
    const p = plan(m, observation([runningAsSpecified(m, 'web')]), options);
    expect(p.changes).toEqual([]);
    expect(p.unchanged).toEqual(['web']);
    expect(renderPlan(p)).toBe('No changes. The VMs match the manifest.\n');
  });

  it('changes forwards live, telling drift from forwards qvm added', () => {
    const m = manifest('vms:\n  db:\n    forwards: ["tcp::15432-:5432"]\n');
    const running = runningAsSpecified(m, 'db');
    running.forwards = [
      {
        netdev: 'net0',
        proto: 'tcp',
        hostAddress: '127.0.0.1',
        hostPort: 15433,
        guestAddress: '10.0.2.15',
        guestPort: 5433,
      },
      {
        netdev: 'net0',
        proto: 'tcp',
        hostAddress: '127.0.0.1',
        hostPort: 15434,
        guestAddress: '10.0.2.15',
        guestPort: 5434,
      },
    ];
    running.launch!.liveForwards = [
      { proto: 'tcp', hostAddress: '127.0.0.1', hostPort: 15433, guestAddress: '', guestPort: 5433 },
    ];
    const p = plan(m, observation([running]), options);
    expect(renderPlan(p)).toBe(
      [
        '  ~ db   forwards, live',
        '           - tcp 127.0.0.1:15433 -> 10.0.2.15:5433',
        '           - tcp 127.0.0.1:15434 -> 10.0.2.15:5434 (drift: added outside qvm)',
        '           + tcp 127.0.0.1:15432 -> :5432',
        '',
        'Plan: 0 to start, 1 to change live, 0 to restart, 0 to stop.',
        '',
      ].join('\n'),
    );
  });

  it('restarts for memory, showing the field and the command-line diff', () => {
    const before = manifest('vms:\n  cache:\n    memory: 512M\n');
    const after = manifest('vms:\n  cache:\n    memory: 1G\n');
    const p = plan(after, observation([runningAsSpecified(before, 'cache')]), options);
    expect(p.changes).toMatchObject([
      { action: 'restart', fields: [{ field: 'memory', from: '512M', to: '1G' }], pid: 4242 },
    ]);
    expect(renderPlan(p)).toBe(
      [
        '-/+ cache   restart: memory 512M -> 1G',
        '              qemu-system-x86_64 command line:',
        '                -accel tcg',
        '              - -m 512',
        '              + -m 1024',
        '                -smp 1',
        '',
        'Plan: 0 to start, 0 to change live, 1 to restart, 0 to stop.',
        '',
      ].join('\n'),
    );
  });

  it('renders the four kinds of change together, as in the README', () => {
    const m = manifest(
      [
        'vms:',
        '  web:',
        '    disk: { path: disks/web.qcow2, size: 8G }',
        '  db:',
        '    forwards: ["tcp::15432-:5432"]',
        '  cache:',
        '    memory: 1G',
        '',
      ].join('\n'),
    );
    const db = runningAsSpecified(manifest('vms:\n  db:\n    forwards: ["tcp::15433-:5433"]\n'), 'db');
    const cache = runningAsSpecified(manifest('vms:\n  cache:\n    memory: 512M\n'), 'cache');
    const old = runningAsSpecified(manifest('vms:\n  old: {}\n'), 'old');
    const p = plan(
      m,
      observation([stopped('web', { disk: missingDisk('/srv/vms/disks/web.qcow2') }), db, cache], [old]),
      { namespace: NS, prune: true },
    );
    const text = renderPlan(p);
    expect(
      text.split('\n').filter((l) => /^( {2}[-+~!]|-\/\+) /.test(l) || /^ {14}[-+] tcp/.test(l)),
    ).toEqual([
      '  + web     start (creates disks/web.qcow2, 8G)',
      '  ~ db      forwards, live',
      '              - tcp 127.0.0.1:15433 -> 10.0.2.15:5433',
      '              + tcp 127.0.0.1:15432 -> :5432',
      '-/+ cache   restart: memory 512M -> 1G',
      '  - old     stop: not in the manifest (apply --prune)',
    ]);
    expect(text.endsWith('Plan: 1 to start, 1 to change live, 1 to restart, 1 to stop.\n')).toBe(true);
    expect(planJson(p)).toMatchObject({
      apiVersion: 'qvm/v1',
      kind: 'Plan',
      summary: { start: 1, live: 1, restart: 1, stop: 1, save: 0 },
    });
  });

  it('leaves orphans running without --prune and says so', () => {
    const m = manifest('vms:\n  web: {}\n');
    const old = runningAsSpecified(manifest('vms:\n  old: {}\n'), 'old');
    const p = plan(m, observation([runningAsSpecified(m, 'web')], [old]), options);
    expect(p.changes).toEqual([]);
    expect(renderPlan(p)).toBe(
      'No changes. The VMs match the manifest.\nNote: old is running but not in the manifest; `apply --prune` stops it.\n',
    );
  });

  it('boots from the manifest snapshot when the disk has it, and refuses a missing one with its location', () => {
    const m = manifest('vms:\n  web:\n    disk: d.qcow2\n    snapshot: ready\n');
    const withTag = plan(
      m,
      observation([stopped('web', { disk: disk('/srv/vms/d.qcow2', { snapshots: ['ready'] }) })]),
      options,
    );
    expect(withTag.changes).toMatchObject([
      { action: 'start', bootFrom: { tag: 'ready', kind: 'snapshot' } },
    ]);
    const args = withTag.changes[0]!.action === 'start' ? withTag.changes[0]!.launch.args : [];
    expect(args.slice(-2)).toEqual(['-loadvm', 'ready']);

    const without = plan(
      m,
      observation([stopped('web', { disk: disk('/srv/vms/d.qcow2', { snapshots: ['other'] }) })]),
      options,
    );
    expect(without.changes).toEqual([]);
    expect(renderPlan(without)).toBe(
      [
        '  ! web   error: qvm.yaml:4:15: vms.web.snapshot: snapshot "ready" does not exist on d.qcow2 (it has: other)',
        '',
        'Plan: 0 to start, 0 to change live, 0 to restart, 0 to stop.',
        '1 error: the VM marked ! is left as it is.',
        '',
      ].join('\n'),
    );
  });

  it('resumes a hibernated VM only with the record qvm wrote after saving it', () => {
    const m = manifest('vms:\n  web:\n    disk: d.qcow2\n    snapshot: ready\n');
    const tagged = disk('/srv/vms/d.qcow2', { snapshots: ['ready', SAVED_STATE_TAG] });
    const p = plan(
      m,
      observation([stopped('web', { disk: tagged, savedState: savedState('web', '/srv/vms/d.qcow2') })]),
      options,
    );
    expect(p.changes).toMatchObject([
      { action: 'start', reason: 'resume', bootFrom: { tag: SAVED_STATE_TAG, kind: 'saved-state' } },
    ]);
    expect(renderPlan(p).split('\n')[0]).toBe('  + web   start: resume the saved state');
  });

  it('never loads a hibernation tag qvm has no record of: a problem, or dropped with --discard-saved-state', () => {
    const m = manifest('vms:\n  web:\n    disk: d.qcow2\n');
    const tagged = observation([
      stopped('web', { disk: disk('/srv/vms/d.qcow2', { snapshots: [SAVED_STATE_TAG] }) }),
    ]);
    const p = plan(m, tagged, options);
    expect(p.changes).toEqual([]);
    expect(p.problems.map((x) => x.message)).toEqual([
      `has a hibernation snapshot (${SAVED_STATE_TAG}) on its disk, but qvm has no record of saving it (a save that was interrupted, or a VM hibernated by a qvm older than 0.2). It is not loaded: it may be older than what the disk holds now, and loading it would revert the disk. \`qvm apply --discard-saved-state\` drops it and boots cold`,
    ]);
    const discarded = plan(m, tagged, { ...options, discardSavedState: true });
    expect(discarded.changes).toMatchObject([
      { action: 'start', reason: 'new', dropSnapshots: [{ disk: '/srv/vms/d.qcow2', tag: SAVED_STATE_TAG }] },
    ]);
    expect(discarded.changes[0]).not.toHaveProperty('bootFrom');
    expect(renderPlan(discarded).split('\n')[0]).toBe('  + web   start (drops the saved state)');
    // A record for another file at that path (the disk was replaced) is no record of this disk.
    const replaced = plan(
      m,
      observation([
        stopped('web', {
          disk: disk('/srv/vms/d.qcow2', { snapshots: [SAVED_STATE_TAG], identity: { dev: 1, ino: 99 } }),
          savedState: savedState('web', '/srv/vms/d.qcow2'),
        }),
      ]),
      options,
    );
    expect(replaced.problems[0]!.message).toContain('its record names another file at /srv/vms/d.qcow2');
  });

  it("restarts a VM that a qvm using QEMU's default devices started, naming the device set", () => {
    const m = manifest('vms:\n  web: {}\n');
    const lean = runningAsSpecified(m, 'web');
    const { devices: _devices, ...olderLaunch } = lean.launch!.launch;
    const olderArgv = lean
      .argv!.filter((a, i, all) => a !== '-nodefaults' && a !== '-vga' && all[i - 1] !== '-vga')
      .map((a) => a.replace(',romfile=', ''));
    const older = {
      ...lean,
      argv: olderArgv,
      launch: { ...lean.launch!, argv: olderArgv, launch: olderLaunch },
    };
    expect(plan(m, observation([lean]), options).changes).toEqual([]);
    expect(plan(m, observation([older]), options).changes).toMatchObject([
      {
        action: 'restart',
        fields: [{ field: 'devices', from: "QEMU's defaults", to: 'lean (-nodefaults)' }],
      },
    ]);
  });

  it('never resumes a saved state into another device set than the one it was saved with', () => {
    const m = manifest('vms:\n  web:\n    disk: d.qcow2\n');
    const { devices: _devices, ...older } = runningAsSpecified(m, 'web').launch!.launch;
    const obs = observation([
      stopped('web', {
        disk: disk('/srv/vms/d.qcow2', { snapshots: [SAVED_STATE_TAG] }),
        savedState: savedState('web', '/srv/vms/d.qcow2', older),
      }),
    ]);
    const p = plan(m, obs, options);
    expect(p.changes).toEqual([]);
    expect(p.problems[0]!.message).toContain('by an older qvm, which started QEMU with its default devices');
    expect(p.problems[0]!.message).toContain('`qvm apply --discard-saved-state` drops the saved state');
  });

  it('says a saved state cannot resume with a changed configuration, and what to do', () => {
    const before = manifest('vms:\n  web:\n    disk: d.qcow2\n    memory: 512M\n');
    const after = manifest('vms:\n  web:\n    disk: d.qcow2\n    memory: 1G\n');
    const recorded = runningAsSpecified(before, 'web').launch!.launch;
    const obs = observation([
      stopped('web', {
        disk: disk('/srv/vms/d.qcow2', { snapshots: [SAVED_STATE_TAG] }),
        savedState: savedState('web', '/srv/vms/d.qcow2', recorded),
      }),
    ]);
    expect(plan(before, obs, options).changes).toMatchObject([{ action: 'start', reason: 'resume' }]);
    const p = plan(after, obs, options);
    expect(p.changes).toEqual([]);
    expect(p.problems[0]!.message).toBe(
      "was hibernated (2026-11-26T00:00:00.000Z) with another configuration than the manifest's now (memory 512M -> 1G), and QEMU resumes a saved state only with the configuration it was saved with. Set those fields back and apply to resume it, or `qvm apply --discard-saved-state` to drop the saved state and boot cold",
    );
    expect(plan(after, obs, { ...options, discardSavedState: true }).changes).toMatchObject([
      { action: 'start', forgetSavedState: true, dropSnapshots: [{ tag: SAVED_STATE_TAG }] },
    ]);
  });

  it('removes a hibernation tag left on a running VM, live, and never loads it', () => {
    const m = manifest('vms:\n  web:\n    disk: d.qcow2\n');
    const running = runningAsSpecified(m, 'web', {
      snapshots: [SAVED_STATE_TAG],
      disk: disk('/srv/vms/d.qcow2', { snapshots: [SAVED_STATE_TAG] }),
    });
    const p = plan(m, observation([running]), options);
    expect(p.changes).toMatchObject([
      { action: 'update', dropStraySnapshot: SAVED_STATE_TAG, forgetSavedState: true, add: [], remove: [] },
    ]);
    expect(renderPlan(p).split('\n')[0]).toBe(
      `  ~ web   delete the left-over saved state ${SAVED_STATE_TAG} (never loaded), live`,
    );
    // A restart of it boots cold and drops the tag while the disk is free.
    const bigger = manifest('vms:\n  web:\n    disk: d.qcow2\n    memory: 1G\n');
    expect(plan(bigger, observation([running]), options).changes).toMatchObject([
      { action: 'restart', dropSnapshots: [{ tag: SAVED_STATE_TAG }] },
    ]);
  });

  it('hibernates on state: saved, keeping what the record needs', () => {
    const saved = manifest('vms:\n  web:\n    disk: d.qcow2\n    state: saved\n');
    const running = runningAsSpecified(saved, 'web');
    const q = plan(saved, observation([running]), options);
    expect(q.changes).toEqual([
      {
        action: 'save',
        vm: 'web',
        pid: 4242,
        socket: '/run/qvm/ns/web/qmp.sock',
        tag: SAVED_STATE_TAG,
        disk: '/srv/vms/d.qcow2',
        launch: running.launch!.launch,
      },
    ]);
    expect(renderPlan(q)).toContain(
      '  - web   save: hibernate (savevm qvm-saved-state), then stop; the next start resumes there',
    );
  });

  it('needs a size to create a missing disk', () => {
    const m = manifest('vms:\n  web:\n    disk: d.qcow2\n');
    const p = plan(m, observation([stopped('web', { disk: missingDisk('/srv/vms/d.qcow2') })]), options);
    expect(p.problems).toEqual([
      {
        vm: 'web',
        message: 'd.qcow2 does not exist; set disk.size (or disk.backing) so qvm can create it',
        location: { file: 'qvm.yaml', line: 3, column: 11, path: 'vms.web.disk' },
      },
    ]);
  });

  it('never plans a second QEMU for a VM whose monitor does not answer', () => {
    const m = manifest('vms:\n  web: {}\n');
    const p = plan(
      m,
      observation([{ name: 'web', adopted: false, state: 'unknown', pid: 77, error: 'QEMU did not answer' }]),
      options,
    );
    expect(p.changes).toEqual([]);
    expect(p.problems[0]!.message).toBe(
      'does not answer on its monitor (pid 77): QEMU did not answer. Left alone: qvm never starts a second QEMU on the same disk',
    );
  });

  it('restarts a VM stuck in restore-vm, and replaces a guest that powered off', () => {
    const m = manifest('vms:\n  web: {}\n');
    const stuck = plan(m, observation([runningAsSpecified(m, 'web', { runstate: 'restore-vm' })]), options);
    expect(stuck.changes).toMatchObject([{ action: 'restart', stuckIn: 'restore-vm', fields: [] }]);
    const off = plan(m, observation([runningAsSpecified(m, 'web', { runstate: 'shutdown' })]), options);
    expect(off.changes).toMatchObject([{ action: 'start', reason: 'guest-powered-off', replacesPid: 4242 }]);
    expect(renderPlan(off).split('\n')[0]).toBe('  + web   start: the guest powered off');
  });

  it('resumes a paused VM live', () => {
    const m = manifest('vms:\n  web: {}\n');
    const p = plan(m, observation([runningAsSpecified(m, 'web', { runstate: 'paused' })]), options);
    expect(renderPlan(p).split('\n')[0]).toBe('  ~ web   resume (it was paused), live');
  });

  it('stops for state: stopped, and says when a stale pidfile explains a start', () => {
    const m = manifest('vms:\n  web:\n    state: stopped\n');
    expect(plan(m, observation([runningAsSpecified(m, 'web')]), options).changes).toMatchObject([
      { action: 'stop', reason: 'state-stopped', pid: 4242, stopTimeoutMs: 30_000 },
    ]);
    const n = manifest('vms:\n  web: {}\n');
    const p = plan(
      n,
      observation([stopped('web', { stale: 'process 9 has exited; its pidfile is stale' })]),
      options,
    );
    expect(renderPlan(p).split('\n')[0]).toBe(
      '  + web   start: its QEMU exited (process 9 has exited; its pidfile is stale)',
    );
  });

  it('picks kvm for accel auto only when the probe says KVM runs guests', () => {
    const m = manifest('vms:\n  web: {}\n');
    const args = (kvm: boolean) => {
      const change = plan(m, observation([stopped('web')], [], kvm), options).changes[0]!;
      return change.action === 'start'
        ? change.launch.args[change.launch.args.indexOf('-accel') + 1]
        : undefined;
    };
    expect(args(true)).toBe('kvm');
    expect(args(false)).toBe('tcg');
  });

  it('marks forwards exposed beyond loopback', () => {
    const m = manifest('vms:\n  web:\n    forwards: [{host: 8080, guest: 80, address: 0.0.0.0}]\n');
    const p = plan(m, observation([runningAsSpecified(manifest('vms:\n  web: {}\n'), 'web')]), options);
    expect(renderPlan(p).split('\n')[1]).toBe(
      '            + tcp 0.0.0.0:8080 -> :80 (exposed on every interface)',
    );
  });
});

describe('adopted VMs', () => {
  const running = (forwards: { hostAddress: string; hostPort: number; guestPort: number }[]) => ({
    name: 'legacy',
    adopted: true,
    state: 'running' as const,
    runstate: 'running',
    forwards: forwards.map((f) => ({
      ...f,
      netdev: 'net0',
      proto: 'tcp' as const,
      guestAddress: '10.0.2.15',
    })),
    snapshots: [],
  });

  it('reconciles forwards live through its own socket and notes the fields it cannot apply', () => {
    const m = manifest(
      'vms:\n  legacy:\n    monitor: /tmp/t/mon.sock\n    memory: 1G\n    forwards: ["tcp::10080-:80"]\n',
    );
    const p = plan(
      m,
      observation([running([{ hostAddress: '0.0.0.0', hostPort: 10022, guestPort: 22 }])]),
      options,
    );
    expect(p.changes).toMatchObject([
      { action: 'update', adopted: true, socket: '/tmp/t/mon.sock', netdev: 'net0' },
    ]);
    expect(renderPlan(p)).toBe(
      [
        '  ~ legacy   forwards, live',
        '               - tcp 0.0.0.0:10022 -> 10.0.2.15:22 (exposed on every interface)',
        '               + tcp 127.0.0.1:10080 -> :80',
        '',
        'Plan: 0 to start, 1 to change live, 0 to restart, 0 to stop.',
        'Note: legacy memory not applied: this VM was started outside qvm, which cannot restart it.',
        '',
      ].join('\n'),
    );
  });

  it('quits it for state: stopped, without a pid to signal', () => {
    const m = manifest('vms:\n  legacy:\n    monitor: /tmp/t/mon.sock\n    state: stopped\n');
    const p = plan(m, observation([running([])]), options);
    expect(p.changes).toEqual([
      {
        action: 'stop',
        vm: 'legacy',
        reason: 'state-stopped',
        adopted: true,
        socket: '/tmp/t/mon.sock',
        stopTimeoutMs: 30_000,
        alreadyPoweredOff: false,
      },
    ]);
  });

  it('does not start one that is not running', () => {
    const m = manifest('vms:\n  legacy:\n    monitor: /tmp/t/mon.sock\n');
    const p = plan(m, observation([{ name: 'legacy', adopted: true, state: 'stopped' }]), options);
    expect(p.problems[0]!.message).toBe(
      'is not running (no QEMU answers on /tmp/t/mon.sock); qvm does not start a VM it did not start',
    );
  });
});

describe('warm starts and restart policy', () => {
  const warm =
    'vms:\n  web:\n    disk: d.qcow2\n    snapshot: ready\n    forwards: ["tcp::8080-:80"]\n    ready: { http: { port: 8080 } }\n';

  it('cold boots a warm VM whose snapshot does not exist yet, and saves it once ready', () => {
    const m = manifest(warm);
    const p = plan(m, observation([stopped('web', { disk: disk('/srv/vms/d.qcow2') })]), options);
    expect(p.changes).toMatchObject([
      {
        action: 'start',
        saveSnapshot: 'ready',
        ready: { kind: 'http', host: '127.0.0.1', port: 8080, path: '/', status: 200, timeoutMs: 60_000 },
      },
    ]);
    expect(p.changes[0]).not.toHaveProperty('bootFrom');
    expect(renderPlan(p).split('\n')[0]).toBe(
      '  + web   start (cold boot, then saves snapshot ready once ready)',
    );
  });

  it('resumes a warm VM from its snapshot once it exists', () => {
    const m = manifest(warm);
    const p = plan(
      m,
      observation([stopped('web', { disk: disk('/srv/vms/d.qcow2', { snapshots: ['ready'] }) })]),
      options,
    );
    expect(p.changes).toMatchObject([{ action: 'start', bootFrom: { tag: 'ready', kind: 'snapshot' } }]);
    expect(p.changes[0]).not.toHaveProperty('saveSnapshot');
  });

  it('never resumes a warm snapshot saved under another configuration: drops it, cold boots, saves anew', () => {
    const before = manifest(warm.replace('disk: d.qcow2', 'disk: d.qcow2\n    memory: 256M'));
    const { name: _n, loadvm: _l, ...launch } = launchSpec(before.vms[0]!, 'tcg', [], { format: 'qcow2' });
    const snapshotRecords = { ready: { tag: 'ready', savedAt: '2026-11-26T10:00:00Z', launch } };
    const observed = stopped('web', {
      disk: disk('/srv/vms/d.qcow2', { snapshots: ['ready'] }),
      snapshotRecords,
    });
    const m = manifest(warm.replace('disk: d.qcow2', 'disk: d.qcow2\n    memory: 512M'));
    const p = plan(m, observation([observed]), options);
    expect(p.changes).toMatchObject([
      {
        action: 'start',
        dropSnapshots: [{ disk: '/srv/vms/d.qcow2', tag: 'ready' }],
        staleSnapshot: { tag: 'ready', why: 'memory 256M -> 512M' },
        saveSnapshot: 'ready',
      },
    ]);
    expect(p.changes[0]).not.toHaveProperty('bootFrom');
    expect(renderPlan(p).split('\n')[0]).toBe(
      '  + web   start (snapshot ready is stale: memory 256M -> 512M; cold boot, then saves snapshot ready once ready)',
    );
    // The same configuration resumes it.
    expect(plan(before, observation([observed]), options).changes).toMatchObject([
      { action: 'start', bootFrom: { tag: 'ready', kind: 'snapshot' } },
    ]);
    // Without ready: qvm cannot make it anew, so it is an error, never a load.
    const plain = manifest('vms:\n  web:\n    disk: d.qcow2\n    memory: 512M\n    snapshot: ready\n');
    const refused = plan(plain, observation([observed]), options);
    expect(refused.changes).toEqual([]);
    expect(refused.problems[0]!.message).toBe(
      'snapshot "ready" was saved by qvm while the VM ran with another configuration (memory 256M -> 512M); qvm does not load it into this one. Delete it (qvm snapshot delete web ready --force) or set the configuration back',
    );
  });

  it('refreshes the snapshot of a running warm VM with a cold restart', () => {
    const m = manifest(warm);
    const running = runningAsSpecified(m, 'web', {
      snapshots: ['ready'],
      disk: disk('/srv/vms/d.qcow2', { snapshots: ['ready'] }),
    });
    expect(plan(m, observation([running]), options).changes).toEqual([]);
    const p = plan(m, observation([running]), { ...options, refreshSnapshots: true });
    expect(p.changes).toMatchObject([
      {
        action: 'restart',
        refreshSnapshot: true,
        dropSnapshots: [{ disk: '/srv/vms/d.qcow2', tag: 'ready' }],
        saveSnapshot: 'ready',
      },
    ]);
    const change = p.changes[0]!;
    expect(change.action === 'restart' && change.launch.args.includes('-loadvm')).toBe(false);
    expect(renderPlan(p).split('\n')[0]).toBe('-/+ web   restart: refresh snapshot ready');
  });

  it('under watch, leaves a guest-powered-off VM down unless restart: always', () => {
    const m = manifest('vms:\n  web: {}\n');
    const off = observation([runningAsSpecified(m, 'web', { runstate: 'shutdown' })]);
    const watched = plan(m, off, { ...options, restartPolicy: true });
    expect(watched.changes).toEqual([]);
    expect(renderPlan(watched)).toBe(
      'No changes. The VMs match the manifest.\nNote: web was powered off by its guest; restart: on-failure leaves it down (`qvm apply` starts it).\n',
    );
    const always = manifest('vms:\n  web:\n    restart: always\n');
    expect(plan(always, off, { ...options, restartPolicy: true }).changes).toMatchObject([
      { action: 'start', reason: 'guest-powered-off' },
    ]);
    expect(plan(m, off, options).changes).toMatchObject([{ action: 'start' }]);
  });

  it('under watch, brings back a VM whose QEMU died, unless restart: never', () => {
    const crashed = observation([stopped('web', { stale: 'process 9 has exited; its pidfile is stale' })]);
    expect(
      plan(manifest('vms:\n  web: {}\n'), crashed, { ...options, restartPolicy: true }).changes,
    ).toMatchObject([{ action: 'start', reason: 'exited' }]);
    const never = plan(manifest('vms:\n  web:\n    restart: never\n'), crashed, {
      ...options,
      restartPolicy: true,
    });
    expect(never.changes).toEqual([]);
    expect(never.notes).toEqual([
      { vm: 'web', message: 'died (its QEMU exited); restart: never leaves it down' },
    ]);
  });
});

describe('safety checks in the plan', () => {
  it('names the holder of a port a start needs, at the forward, and starts nothing', () => {
    const m = manifest('vms:\n  web:\n    forwards: ["tcp::8080-:80", "tcp::8081-:81"]\n');
    const p = plan(
      m,
      observation([stopped('web')], [], false, [
        { vm: 'web', index: 1, holder: 'pid 77 (nc -l 127.0.0.1 8081)' },
      ]),
      options,
    );
    expect(p.changes).toEqual([]);
    expect(renderPlan(p).split('\n')[0]).toBe(
      '  ! web   error: qvm.yaml:3:33: vms.web.forwards[1]: host port tcp 127.0.0.1:8081 is in use by pid 77 (nc -l 127.0.0.1 8081)',
    );
  });

  it('still applies the other forwards live when one port is taken', () => {
    const m = manifest('vms:\n  web:\n    forwards: ["tcp::8080-:80", "tcp::8081-:81"]\n');
    const running = runningAsSpecified(manifest('vms:\n  web: {}\n'), 'web');
    const p = plan(
      m,
      observation([running], [], false, [
        { vm: 'web', index: 0, holder: 'VM api of /srv/other/qvm.yaml (pid 5)' },
      ]),
      options,
    );
    expect(p.changes).toMatchObject([{ action: 'update', add: [{ hostPort: 8081 }], remove: [] }]);
    expect(p.problems[0]!.message).toBe(
      'host port tcp 127.0.0.1:8080 is in use by VM api of /srv/other/qvm.yaml (pid 5)',
    );
  });

  it('refuses to shrink a disk, and grows one with a restart', () => {
    const small = manifest('vms:\n  web:\n    disk: { path: d.qcow2, size: 1G }\n');
    const p = plan(
      small,
      observation([stopped('web', { disk: disk('/srv/vms/d.qcow2', { virtualSizeBytes: 2 * 2 ** 30 }) })]),
      options,
    );
    expect(p.changes).toEqual([]);
    expect(p.problems[0]!.message).toBe(
      'is 1G but d.qcow2 is already 2G; qvm never shrinks a disk (it would cut off data). Set size to 2G or more',
    );
    expect(p.problems[0]!.location).toMatchObject({ line: 3, path: 'vms.web.disk.size' });

    const big = manifest('vms:\n  web:\n    disk: { path: d.qcow2, size: 4G }\n');
    const running = runningAsSpecified(big, 'web', {
      disk: disk('/srv/vms/d.qcow2', { virtualSizeBytes: 2 * 2 ** 30 }),
    });
    const q = plan(big, observation([running]), options);
    expect(q.changes).toMatchObject([
      {
        action: 'restart',
        fields: [{ field: 'disk size', from: '2G', to: '4G' }],
        resizeDisk: { toBytes: 4 * 2 ** 30 },
      },
    ]);
    expect(renderPlan(q).split('\n')[0]).toBe('-/+ web   restart: disk size 2G -> 4G');
  });

  it('opens a disk only as its declared format: content that is not that format is refused, never guessed', () => {
    const m = manifest('vms:\n  web:\n    disk: d.img\n');
    const p = plan(
      m,
      observation([
        stopped('web', {
          disk: disk('/srv/vms/d.img', {
            error: 'it is not a qcow2 image (qemu-img: Image is not in qcow2 format)',
          }),
        }),
      ]),
      options,
    );
    expect(p.changes).toEqual([]);
    expect(p.problems[0]!.message).toBe(
      'cannot use d.img: it is not a qcow2 image (qemu-img: Image is not in qcow2 format)',
    );
  });

  it('refuses to reopen a disk as another format than the one qvm first opened it as', () => {
    const m = manifest('vms:\n  web:\n    disk: d.img\n');
    const known = { path: '/srv/vms/d.img', dev: 1, ino: 2, format: 'raw', created: false, at: '2026-11-26' };
    const p = plan(m, observation([stopped('web', { disk: disk('/srv/vms/d.img', { known }) })]), options);
    expect(p.changes).toEqual([]);
    expect(p.problems[0]!.message).toBe(
      'd.img was first opened by qvm as a raw image, and the manifest now says qcow2; qvm never reopens a disk as another format (a guest can write any header into a raw disk). Convert it with qemu-img convert into a new file instead',
    );
    const raw = manifest('vms:\n  web:\n    disk: { path: d.img, format: raw }\n');
    const ok = plan(
      raw,
      observation([stopped('web', { disk: disk('/srv/vms/d.img', { format: 'raw', known }) })]),
      options,
    );
    expect(ok.changes).toHaveLength(1);
    const args = ok.changes[0]!.action === 'start' ? ok.changes[0]!.launch.args : [];
    expect(args).toContain('file=/srv/vms/d.img,format=raw,if=virtio,id=disk0');
  });
});

describe('restart held back by watch --live-only', () => {
  it('carries the forward changes that can still be made live', () => {
    const before = manifest('vms:\n  web:\n    memory: 256M\n    forwards: ["tcp::8080-:80"]\n');
    const after = manifest(
      'vms:\n  web:\n    memory: 320M\n    forwards: ["tcp::8080-:80", "tcp::8081-:80"]\n',
    );
    const p = plan(after, observation([runningAsSpecified(before, 'web')]), options);
    expect(p.changes).toMatchObject([
      { action: 'restart', liveForwards: { action: 'update', add: [{ hostPort: 8081 }], remove: [] } },
    ]);
  });
});
