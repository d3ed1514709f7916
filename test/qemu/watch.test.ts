/**
 * `qvm watch --json` as a user runs it: a real watch process over real QEMU (the demo guest), driven by editing
 * the manifest on disk and by killing or powering off the VM, and checked from the host (HTTP, /proc, qvm
 * status) and through watch's own NDJSON events. One VM goes through one story; a folder of manifests and a
 * VM that keeps dying get their own.
 */
import { mkdirSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qvm } from '../helpers/cli.js';
import { removeDir, tempDir } from '../helpers/qemu.js';
import {
  bareVm,
  demoVm,
  freePortsDistinct,
  GUEST_HELLO,
  isRunning,
  killQemusUnder,
  killWatches,
  manifestText,
  privateDir,
  serialSocket,
  sleep,
  startWatch,
  statusTable,
  toPort80,
  typeOnSerial,
  url,
  usernetHostPorts,
  vmPid,
  type WatchEventRecord,
  type WatchProcess,
  waitForHttp,
  writeVms,
  writeVmsByRename,
} from '../helpers/watch.js';

const runtime = privateDir('qvmw-');
const root = tempDir('qvmwm-');
const run = (cwd: string, args: string[]) => qvm(args, { cwd, env: { QVM_RUNTIME_DIR: runtime } });
const WATCH_ARGS = ['--json', '--interval', '3'];

beforeAll(async () => {
  // The first qvm command in a runtime root probes KVM (seconds); do it before any watch pass is timed.
  const dir = path.join(root, 'probe');
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'm.yaml'), 'vms: {}\n');
  const r = await run(dir, ['status', '-f', 'm.yaml']);
  expect(r.stderr).toBe('');
});

afterAll(async () => {
  await killWatches();
  await killQemusUnder(runtime);
  removeDir(runtime);
  removeDir(root);
});

const isPassStart = (e: WatchEventRecord) => e.event === 'pass-started';
const passStartOf = (w: WatchProcess, pass: number) =>
  w.events.find((e) => e.event === 'pass-started' && e.pass === pass);
/** Plans and actions for VM among EVENTS. */
const changesFor = (events: WatchEventRecord[], vm: string) =>
  events.filter((e) => ['plan', 'action-applied', 'action-failed'].includes(e.event) && e.vm === vm);

describe('one VM under watch: live edits, invalid saves, crashes, guest power-off, bursts', () => {
  const dir = path.join(root, 'story');
  const file = path.join(dir, 'm.yaml');
  let w: WatchProcess;
  let pid = 0;
  let main = 0;
  let p2 = 0;
  let p3 = 0;
  let p4 = 0;
  let p5 = 0;
  let burst: number[] = [];
  let spec: Record<string, unknown> = {};
  /** Changes fields of the VM and saves the manifest in place. */
  const save = (fields: Record<string, unknown>) => {
    spec = { ...spec, ...fields };
    writeVms(file, { web: spec });
  };
  const statusPid = async () => {
    const r = await run(dir, ['status', '-f', 'm.yaml', '-o', 'json']);
    expect(r.exitCode).toBe(0);
    const list = JSON.parse(r.stdout) as { items: { name: string; pid: number | null }[] };
    return list.items.find((row) => row.name === 'web')?.pid;
  };
  /** Saves, then polls PORT until the guest answers through it; returns the milliseconds in between. */
  const saveAndTimeUntilAnswered = async (write: () => void, port: number) => {
    write();
    const written = Date.now();
    const { body, at } = await waitForHttp(url(port), 10_000, 10);
    expect(body).toContain(GUEST_HELLO);
    return at - written;
  };

  beforeAll(async () => {
    mkdirSync(dir);
    const ports = await freePortsDistinct(25);
    [main, p2, p3, p4, p5] = ports as [number, number, number, number, number];
    burst = ports.slice(5);
    spec = demoVm('web', { forwards: toPort80(main) });
    writeVms(file, { web: spec });
  });

  it('the first pass starts the VM, which then serves HTTP', { timeout: 90_000 }, async () => {
    w = startWatch(['-f', 'm.yaml', ...WATCH_ARGS], { cwd: dir, runtime });
    const started = await w.waitForEvent((e) => e.event === 'watch-started', 10_000);
    expect(started).toMatchObject({ manifest: 'm.yaml', intervalMs: 3000, liveOnly: false, prune: false });
    const first = await w.waitForEvent(isPassStart, 10_000);
    expect(first).toMatchObject({ pass: 1, triggers: ['watch started'] });
    const plan = await w.waitForEvent((e) => e.event === 'plan', 30_000);
    expect(plan).toMatchObject({ pass: 1, vm: 'web', change: 'start (creates disks/web.qcow2, 64M)' });
    const applied = await w.waitForEvent((e) => e.event === 'action-applied', 30_000);
    expect(applied).toMatchObject({ pass: 1, vm: 'web' });
    expect(applied.summary).toMatch(/^started \(pid \d+\)$/);
    pid = Number(/pid (\d+)/.exec(applied.summary)![1]);
    expect(vmPid(runtime, 'web')).toBe(pid);
    expect(await w.waitForPassEnd(1, 10_000)).toMatchObject({ changes: 1, failed: 0 });
    expect((await waitForHttp(url(main), 30_000)).body).toContain(GUEST_HELLO);
    expect(w.garbage).toEqual([]);
  });

  it('a forward added to the file answers within a second of the save; the process stays', async ({
    annotate,
  }) => {
    const from = w.mark();
    const ms = await saveAndTimeUntilAnswered(() => save({ forwards: toPort80(main, p2) }), p2);
    await annotate(`the new forward answered ${ms} ms after the save`);
    expect(ms).toBeLessThan(1500);
    const applied = await w.waitForEvent((e) => e.event === 'action-applied', 5000, from);
    expect(applied).toMatchObject({ vm: 'web', summary: 'updated live: 1 forward added' });
    expect(changesFor(w.since(from), 'web')).toMatchObject([
      { event: 'plan', change: 'forwards, live' },
      { event: 'action-applied' },
    ]);
    expect(passStartOf(w, applied.pass)?.triggers).toContain('manifest changed');
    expect(await statusPid()).toBe(pid);
    expect(vmPid(runtime, 'web')).toBe(pid);
  });

  it('a broken save is reported with located diagnostics and changes nothing; the next save applies', async () => {
    const from = w.mark();
    writeFileSync(file, `${manifestText({ web: spec })}    cpus: [2\n`);
    const error = await w.waitForEvent((e) => e.event === 'error', 5000, from, 'error event');
    expect(error.message).toBe(
      'm.yaml is not a valid manifest; nothing was changed, waiting for the next save',
    );
    expect(error.diagnostics.length).toBeGreaterThan(0);
    for (const d of error.diagnostics) expect(d).toMatch(/^m\.yaml:\d+:\d+: YAML: \S/);
    // A resync while the file is still broken changes nothing either.
    await w.waitForPassEnd(error.pass + 1, 10_000);
    expect(changesFor(w.since(from), 'web')).toEqual([]);
    expect((await waitForHttp(url(main), 2000)).body).toContain(GUEST_HELLO);
    expect(vmPid(runtime, 'web')).toBe(pid);

    const ms = await saveAndTimeUntilAnswered(() => save({ forwards: toPort80(main, p2, p3) }), p3);
    expect(ms).toBeLessThan(1500);
    expect(vmPid(runtime, 'web')).toBe(pid);
  });

  it('a save by rename (temporary file renamed over the manifest) is seen and applied', async () => {
    const from = w.mark();
    spec = { ...spec, forwards: toPort80(main, p2, p3, p4) };
    const ms = await saveAndTimeUntilAnswered(() => writeVmsByRename(file, { web: spec }), p4);
    expect(ms).toBeLessThan(1500);
    const applied = await w.waitForEvent((e) => e.event === 'action-applied', 5000, from);
    expect(applied.summary).toBe('updated live: 1 forward added');
    expect(passStartOf(w, applied.pass)?.triggers).toContain('manifest changed');
    expect(vmPid(runtime, 'web')).toBe(pid);
  });

  it('kill -9 of QEMU: vm-exited comes at once from the event stream, and a pass starts it again', {
    timeout: 60_000,
  }, async () => {
    const from = w.mark();
    const killedAt = Date.now();
    process.kill(pid, 'SIGKILL');
    const exited = await w.waitForEvent((e) => e.event === 'vm-exited', 5000, from, 'vm-exited');
    expect(exited).toMatchObject({ vm: 'web', detail: 'its QEMU process ended' });
    expect(exited.receivedAt - killedAt).toBeLessThan(1000);

    const plan = await w.waitForEvent((e) => e.event === 'plan', 10_000, from, 'a plan to start it');
    expect(plan.vm).toBe('web');
    expect(plan.change).toMatch(/^start: its QEMU exited \(process \d+ has exited; its pidfile is stale\)$/);
    const pass = passStartOf(w, plan.pass)!;
    expect(pass.triggers).toContain('web exited');
    // Started by the event, not by the resync (every 3 s).
    expect(pass.receivedAt - killedAt).toBeLessThan(1500);
    const applied = await w.waitForEvent((e) => e.event === 'action-applied', 30_000, from);
    expect(applied.summary).toMatch(/^started \(pid \d+\)$/);
    const newPid = Number(/pid (\d+)/.exec(applied.summary)![1]);
    expect(newPid).not.toBe(pid);
    expect(isRunning(pid)).toBe(false);
    pid = newPid;
    expect(vmPid(runtime, 'web')).toBe(pid);
    // The restarted VM has every forward of the manifest on its command line.
    for (const port of [main, p2, p3, p4])
      expect((await waitForHttp(url(port), 30_000)).body).toContain(GUEST_HELLO);
    expect(w.since(from).filter((e) => e.event === 'backoff')).toEqual([]);
  });

  it('poweroff inside the guest: restart: on-failure leaves it down; restart: always starts it again', {
    timeout: 90_000,
  }, async () => {
    const from = w.mark();
    await typeOnSerial(serialSocket(runtime, 'web'), 'poweroff');
    const shutdown = await w.waitForEvent(
      (e) => e.event === 'vm-event' && e.qmpEvent === 'SHUTDOWN',
      30_000,
      from,
      'SHUTDOWN vm-event',
    );
    expect(shutdown.vm).toBe('web');
    expect(shutdown.detail).toMatch(/^by the guest, /);
    const note = await w.waitForEvent(
      (e) => e.event === 'note' && e.vm === 'web',
      10_000,
      from,
      'a note that the guest powered off',
    );
    expect(note.message).toBe(
      'was powered off by its guest; restart: on-failure leaves it down (`qvm apply` starts it)',
    );
    const status = await run(dir, ['status', '-f', 'm.yaml']);
    expect(status.exitCode).toBe(0);
    expect(statusTable(status.stdout)).toMatchObject([
      { NAME: 'web', STATE: 'stopped (guest powered off)', PID: String(pid) },
    ]);
    // Two more passes (resyncs) find it powered off and leave it so.
    await w.waitForPassEnd(note.pass + 2, 15_000);
    expect(changesFor(w.since(from), 'web')).toEqual([]);
    expect(w.since(from).filter((e) => e.event === 'vm-exited')).toEqual([]);
    expect(isRunning(pid)).toBe(true);

    const again = w.mark();
    save({ restart: 'always' });
    const plan = await w.waitForEvent((e) => e.event === 'plan', 10_000, again, 'a plan to start it');
    expect(plan).toMatchObject({ vm: 'web', change: 'start: the guest powered off' });
    const applied = await w.waitForEvent(
      (e) => e.event === 'action-applied' || e.event === 'action-failed',
      30_000,
      again,
    );
    expect(applied).toMatchObject({ event: 'action-applied', vm: 'web' });
    const newPid = Number(/started \(pid (\d+)\)/.exec(applied.summary)![1]);
    expect(newPid).not.toBe(pid);
    expect(isRunning(pid)).toBe(false);
    pid = newPid;
    expect((await waitForHttp(url(main), 30_000)).body).toContain(GUEST_HELLO);
    // watch quit the powered-off QEMU itself: that exit is not news.
    expect(w.since(again).filter((e) => e.event === 'vm-exited')).toEqual([]);
  });

  it('a deleted manifest is an error that stops nothing; writing it back changes nothing', async () => {
    const from = w.mark();
    unlinkSync(file);
    const error = await w.waitForEvent((e) => e.event === 'error', 5000, from, 'error event');
    expect(error.message).toBe(
      'm.yaml is not a valid manifest; nothing was changed, waiting for the next save',
    );
    expect(error.diagnostics).toEqual(['m.yaml: cannot read the manifest: no such file']);
    await w.waitForPassEnd(error.pass + 1, 10_000); // a resync without the file
    expect(changesFor(w.since(from), 'web')).toEqual([]);
    expect(vmPid(runtime, 'web')).toBe(pid);
    expect((await waitForHttp(url(main), 2000)).body).toContain(GUEST_HELLO);

    const back = w.mark();
    save({});
    const pass = await w.waitForEvent(
      (e) => isPassStart(e) && e.triggers.includes('manifest changed'),
      5000,
      back,
      'a pass for the file written back',
    );
    expect(await w.waitForPassEnd(pass.pass, 10_000)).toMatchObject({ changes: 0, failed: 0 });
    expect(w.since(back).filter((e) => e.event === 'error')).toEqual([]);
    expect(vmPid(runtime, 'web')).toBe(pid);
  });

  it('twenty saves within a second are coalesced into a few passes and end in the last save', {
    timeout: 60_000,
  }, async ({ annotate }) => {
    const from = w.mark();
    const began = Date.now();
    for (const [i, port] of burst.entries()) {
      save({ forwards: toPort80(main, port) });
      if (i < burst.length - 1) await sleep(40); // pacing of the saves, not a wait for qvm
    }
    expect(Date.now() - began).toBeLessThan(1000);
    const last = burst.at(-1)!;
    expect((await waitForHttp(url(last), 10_000)).body).toContain(GUEST_HELLO);
    // Settled: a pass that started after the last save found nothing left to do.
    const lastSaveIndex = w.mark();
    const quiet = await w.waitForEvent(
      (e) => e.event === 'pass-finished' && e.changes === 0 && e.failed === 0,
      15_000,
      lastSaveIndex,
      'a pass with nothing to do',
    );
    const caused = w
      .since(from)
      .filter((e) => isPassStart(e) && e.triggers.includes('manifest changed') && e.pass <= quiet.pass);
    await annotate(`${caused.length} passes for ${burst.length} saves`);
    expect(caused.length).toBeGreaterThanOrEqual(1);
    expect(caused.length).toBeLessThanOrEqual(6);
    const usernet = await run(dir, ['monitor', '-f', 'm.yaml', 'web', 'info', 'usernet']);
    expect(usernet.exitCode).toBe(0);
    expect(usernetHostPorts(usernet.stdout)).toEqual([main, last].sort((a, b) => a - b));
    expect(vmPid(runtime, 'web')).toBe(pid);
  });

  it('SIGTERM ends watch within a second with exit code 0 and watch-stopped; the VM keeps running', async () => {
    const from = w.mark();
    const sent = Date.now();
    const exit = await w.stop('SIGTERM');
    expect(exit.at - sent).toBeLessThan(1000);
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(w.since(from).filter((e) => e.event === 'watch-stopped')).toMatchObject([{ signal: 'SIGTERM' }]);
    expect(w.events.at(-1)?.event).toBe('watch-stopped');
    expect(w.stderr).toBe('');
    expect(isRunning(pid)).toBe(true);
    expect((await waitForHttp(url(main), 2000)).body).toContain(GUEST_HELLO);
  });

  it('--live-only holds a restart back as pending, and still applies forward changes live', {
    timeout: 60_000,
  }, async () => {
    w = startWatch(['-f', 'm.yaml', '--live-only', ...WATCH_ARGS], { cwd: dir, runtime });
    expect(await w.waitForEvent((e) => e.event === 'watch-started', 10_000)).toMatchObject({
      liveOnly: true,
    });
    expect(await w.waitForPassEnd(1, 15_000)).toMatchObject({ changes: 0, failed: 0 });

    const from = w.mark();
    save({ memory: '320M' });
    const pending = await w.waitForEvent((e) => e.event === 'pending', 5000, from, 'pending event');
    expect(pending).toMatchObject({
      vm: 'web',
      reason: '--live-only; `qvm apply` or watch without --live-only applies it',
    });
    expect(pending.change).toMatch(/^restart: memory 256M -> 320M/);
    expect(await w.waitForPassEnd(pending.pass + 1, 10_000)).toMatchObject({ changes: 0 });
    expect(changesFor(w.since(from), 'web')).toEqual([]);
    expect(vmPid(runtime, 'web')).toBe(pid);

    // memory stays changed (pending) while a forward is added: the forward is a live change.
    const fwd = w.mark();
    save({ forwards: toPort80(main, p5) });
    // A pass may still be running for an earlier change event of the same file: wait for the one that sees
    // the new forward, which plans it live next to the pending restart.
    const live = await w.waitForEvent(
      (e) => e.event === 'plan' && e.vm === 'web' && /forwards, live/.test(String(e.change)),
      8000,
      fwd,
      'the live forward change',
    );
    await w.waitForPassEnd(Number(live.pass), 10_000);
    const usernet = await run(dir, ['monitor', '-f', 'm.yaml', 'web', 'info', 'usernet']);
    expect(
      usernetHostPorts(usernet.stdout),
      `forwards after the save; watch said: ${JSON.stringify(w.since(fwd).map(({ time: _t, receivedAt: _r, ...e }) => e))}`,
    ).toEqual([main, p5].sort((a, b) => a - b));
    expect((await waitForHttp(url(p5), 3000)).body).toContain(GUEST_HELLO);
    expect(vmPid(runtime, 'web')).toBe(pid);
  });

  afterAll(async () => {
    await w?.stop('SIGKILL');
  });
});

describe('a folder of manifests under watch', () => {
  const fleet = path.join(root, 'fleet');
  let w: WatchProcess;

  afterAll(async () => {
    await w?.stop('SIGKILL');
  });

  it('starts the VMs of every file; a name declared twice is a located error and changes nothing', {
    timeout: 60_000,
  }, async () => {
    mkdirSync(fleet);
    writeVms(path.join(fleet, 'a.yaml'), { alpha: bareVm() });
    writeVms(path.join(fleet, 'b.yml'), { beta: bareVm() });
    w = startWatch(['-f', 'fleet', ...WATCH_ARGS], { cwd: root, runtime });
    await w.waitForPassEnd(1, 30_000);
    const applied = w.events.filter((e) => e.event === 'action-applied');
    expect(applied.map((e) => e.vm).sort()).toEqual(['alpha', 'beta']);
    for (const e of applied) expect(e.summary).toMatch(/^started \(pid \d+\)$/);
    const alpha = vmPid(runtime, 'alpha')!;
    const beta = vmPid(runtime, 'beta')!;
    expect(alpha).toBeGreaterThan(0);
    expect(beta).toBeGreaterThan(0);

    const from = w.mark();
    writeVms(path.join(fleet, 'b.yml'), { beta: bareVm(), alpha: bareVm({ memory: '48M' }) });
    const error = await w.waitForEvent((e) => e.event === 'error', 5000, from, 'error event');
    expect(error.message).toBe(
      'fleet is not a valid manifest; nothing was changed, waiting for the next save',
    );
    expect(error.diagnostics).toHaveLength(1);
    expect(error.diagnostics[0]).toMatch(
      /^fleet\/b\.yml:\d+:\d+: vms\.alpha: is also declared in fleet\/a\.yaml:\d+; a VM name must be unique across the folder$/,
    );
    await w.waitForPassEnd(error.pass + 1, 10_000);
    expect(w.since(from).filter((e) => ['plan', 'action-applied', 'pending'].includes(e.event))).toEqual([]);
    expect([vmPid(runtime, 'alpha'), vmPid(runtime, 'beta')]).toEqual([alpha, beta]);

    const exit = await w.stop('SIGTERM');
    expect(exit.code).toBe(0);
    expect([isRunning(alpha), isRunning(beta)]).toEqual([true, true]);
  });
});

describe('a VM that keeps dying', () => {
  const dir = path.join(root, 'flaky');
  let w: WatchProcess;

  afterAll(async () => {
    await w?.stop('SIGKILL');
  });

  it('is restarted at once the first time, then backed off', { timeout: 60_000 }, async () => {
    mkdirSync(dir);
    writeVms(path.join(dir, 'm.yaml'), { flaky: bareVm() });
    w = startWatch(['-f', 'm.yaml', ...WATCH_ARGS], { cwd: dir, runtime });
    await w.waitForPassEnd(1, 30_000);
    let pid = vmPid(runtime, 'flaky')!;
    expect(pid).toBeGreaterThan(0);
    let backoff: WatchEventRecord | undefined;
    for (let death = 1; death <= 3 && !backoff; death++) {
      const from = w.mark();
      process.kill(pid, 'SIGKILL');
      await w.waitForEvent((e) => e.event === 'vm-exited' && e.vm === 'flaky', 5000, from, 'vm-exited');
      const next = await w.waitForEvent(
        (e) => (e.event === 'backoff' || e.event === 'action-applied') && e.vm === 'flaky',
        10_000,
        from,
        `a restart or a back-off after death ${death}`,
      );
      if (next.event === 'backoff') {
        backoff = next;
        expect(death).toBeGreaterThan(1); // the first death is restarted at once
        break;
      }
      pid = Number(/started \(pid (\d+)\)/.exec(next.summary)![1]);
      // Back: once its pass is over, watch holds the new QEMU's event stream, so the next death is news.
      await w.waitForPassEnd(next.pass, 10_000);
    }
    expect(backoff, 'a backoff event by the third death').toBeDefined();
    expect(backoff!.restarts).toBeGreaterThanOrEqual(1);
    expect(backoff!.delayMs).toBeGreaterThan(0);
    expect(backoff!.delayMs).toBeLessThanOrEqual(4000);
    // When the back-off is over (its own timer, or a resync that comes first), it is started again.
    const applied = await w.waitForEvent(
      (e) => e.event === 'action-applied' && e.vm === 'flaky',
      backoff!.delayMs + 5000,
      w.events.indexOf(backoff!),
      'a start after the back-off',
    );
    expect(applied.summary).toMatch(/^started \(pid \d+\)$/);
    const restartPass = passStartOf(w, applied.pass)!;
    expect(restartPass.receivedAt).toBeGreaterThanOrEqual(backoff!.receivedAt + backoff!.delayMs - 250);
    expect(vmPid(runtime, 'flaky')).toBe(Number(/pid (\d+)/.exec(applied.summary)![1]));
  });
});
