/**
 * Warm starts with the demo guest, through the real CLI: `snapshot:` plus `ready:` makes the first apply boot
 * cold, wait for the readiness probe and save the snapshot; later starts resume from it. Checked from the host:
 * how soon HTTP answers, and the guest's own clock (/cgi-bin/uptime) carrying on from the snapshot.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qvm } from '../helpers/cli.js';
import { until } from '../helpers/processes.js';
import { removeDir, tempDir } from '../helpers/qemu.js';
import {
  demoVm,
  freePortsDistinct,
  GUEST_HELLO,
  guestBoot,
  httpGet,
  isRunning,
  killQemusUnder,
  killWatches,
  type PolledRun,
  parseUptime,
  privateDir,
  runWhilePolling,
  serialSocket,
  startWatch,
  statusTable,
  toPort80,
  url,
  vmPid,
  type WatchProcess,
  waitForHttp,
  writeVms,
} from '../helpers/watch.js';

const runtime = privateDir('qvmh-');
const root = tempDir('qvmhm-');
const PLAN_ONE_START = 'Plan: 1 to start, 0 to change live, 0 to restart, 0 to stop.\n';

afterAll(async () => {
  await killWatches();
  await killQemusUnder(runtime);
  removeDir(runtime);
  removeDir(root);
});

/** The line of PREFIX... in TEXT (stdout of apply), failing with the whole text when it is missing. */
function lineStarting(text: string, prefix: string): string {
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  if (line === undefined) throw new Error(`no line starting with ${JSON.stringify(prefix)} in:\n${text}`);
  return line;
}

describe('a VM with snapshot: warm and an http readiness probe', () => {
  const dir = path.join(root, 'warm');
  const file = path.join(dir, 'm.yaml');
  const run = (args: string[]) => qvm(args, { cwd: dir, env: { QVM_RUNTIME_DIR: runtime } });
  let port = 0;
  let cold: PolledRun;
  /** From starting apply to the first HTTP answer, cold boot. */
  let coldMs = 0;
  /** The guest's uptime in the last answer before apply began saving the snapshot. */
  let uptimeBeforeSave = 0;
  let pid = 0;
  /** The guest's boot id when the snapshot was saved. */
  let snapshotBoot = '';
  const write = (extra: Record<string, unknown> = {}) =>
    writeVms(file, {
      web: demoVm('web', { snapshot: 'warm', forwards: toPort80(port), ready: { http: { port } }, ...extra }),
    });
  /** `qvm apply` while the guest's uptime page is polled; it must exit 0 and print nothing on stderr. */
  const applyWhilePolling = async (untilMs: number) => {
    const r = await runWhilePolling(['apply', '-f', 'm.yaml'], {
      cwd: dir,
      runtime,
      port,
      page: '/cgi-bin/uptime',
      untilMs,
    });
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    return r;
  };
  const snapshotRows = async () => {
    const r = await run(['snapshot', 'list', '-f', 'm.yaml', 'web']);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    return r.stdout.split('\n').filter((l) => l !== '');
  };

  beforeAll(async () => {
    mkdirSync(dir);
    [port] = (await freePortsDistinct(1)) as [number];
    write();
    // The first qvm command in a runtime root probes KVM (seconds): not part of any timing below.
    expect((await run(['status', '-f', 'm.yaml'])).exitCode).toBe(0);
  });

  it('plan: a cold boot, then the snapshot is saved once ready', async () => {
    const r = await run(['plan', '-f', 'm.yaml']);
    expect(r).toEqual({
      exitCode: 0,
      stdout: `  + web   start (creates disks/web.qcow2, 64M; cold boot, then saves snapshot warm once ready)\n\n${PLAN_ONE_START}`,
      stderr: '',
    });
  });

  it('the first apply boots cold, waits until ready and saves the snapshot', {
    timeout: 90_000,
  }, async () => {
    cold = await applyWhilePolling(60_000);
    const done = lineStarting(cold.stdout, 'web: started');
    expect(done).toMatch(/^web: started \(pid \d+\), ready in \S+, saved snapshot warm in \S+$/);
    pid = Number(/pid (\d+)/.exec(done)![1]);
    expect(vmPid(runtime, 'web')).toBe(pid);
    // The boot the snapshot was taken in: a later start that resumes from the snapshot has this same id.
    snapshotBoot = await guestBoot(serialSocket(runtime, 'web'));
    expect(cold.answers.length).toBeGreaterThan(0);
    coldMs = cold.answers[0]!.at - cold.startedAt;
    const saving = cold.lines.find((l) => l.text === 'web: saving snapshot warm');
    expect(saving, cold.stdout).toBeDefined();
    // The poller usually sees an answer before "saving snapshot" is printed; on a loaded machine the first
    // answer may come a moment after, so its uptime is a slightly late stand-in for the saved one.
    const before = cold.answers.filter((a) => a.at < saving!.at);
    uptimeBeforeSave = parseUptime((before.at(-1) ?? cold.answers[0]!).body) - (before.length ? 0 : 0.5);
    expect(uptimeBeforeSave).toBeGreaterThan(0);
  });

  it('snapshot list marks warm as the snapshot the manifest boots from; status says ready', async () => {
    const rows = await snapshotRows();
    expect(rows[0]).toMatch(/^TAG\s+VM SIZE\s+DATE\s+VM CLOCK$/);
    expect(rows.slice(1)).toHaveLength(1);
    expect(rows[1]).toMatch(
      /^warm\s+[\d.]+ [KMG]iB\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\(the manifest boots from it\)$/,
    );
    const status = await run(['status', '-f', 'm.yaml']);
    expect(status.exitCode).toBe(0);
    expect(statusTable(status.stdout)).toMatchObject([
      { NAME: 'web', STATE: 'running', READY: 'yes', PID: String(pid), SNAPSHOTS: 'warm' },
    ]);
  });

  it('after destroy, apply starts warm: the guest resumes where the snapshot was taken instead of booting', {
    timeout: 90_000,
  }, async ({ annotate }) => {
    const destroyed = await run(['destroy', '-f', 'm.yaml']);
    expect(destroyed.exitCode).toBe(0);
    expect(isRunning(pid)).toBe(false);
    expect(await run(['plan', '-f', 'm.yaml'])).toEqual({
      exitCode: 0,
      stdout: `  + web   start (from snapshot warm)\n\n${PLAN_ONE_START}`,
      stderr: '',
    });

    const warm = await applyWhilePolling(30_000);
    const done = lineStarting(warm.stdout, 'web: started');
    expect(done).toMatch(/^web: started \(pid \d+\), from snapshot warm, ready in \S+ in \S+$/);
    expect(warm.stdout).not.toContain('saving snapshot');
    pid = Number(/pid (\d+)/.exec(done)![1]);
    // How much faster this is, is bench/warm.ts's to measure; here only that it resumed instead of booting.
    const warmMs = warm.answers[0]!.at - warm.startedAt;

    const uptime = parseUptime(warm.answers[0]!.body);
    await annotate(
      `apply -> HTTP: cold ${coldMs} ms, warm ${warmMs} ms (${(coldMs / warmMs).toFixed(1)}x); guest uptime: ${uptimeBeforeSave} s before the save, ${uptime} s after the warm start`,
    );
    // The boot the snapshot holds (a cold boot loads its kernel and PID 1 elsewhere), and its clock carried on.
    expect(await guestBoot(serialSocket(runtime, 'web'))).toBe(snapshotBoot);
    expect(uptime).toBeGreaterThanOrEqual(uptimeBeforeSave);
    expect(uptime).toBeGreaterThanOrEqual(parseUptime(cold.answers[0]!.body));
  });

  it('apply --refresh-snapshot restarts the running VM cold and saves the snapshot anew', {
    timeout: 90_000,
  }, async () => {
    const dateOf = (rows: string[]) => /\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/.exec(rows[1] ?? '')?.[0];
    const dateBefore = dateOf(await snapshotRows());
    const bootBefore = await guestBoot(serialSocket(runtime, 'web'));
    const r = await run(['apply', '-f', 'm.yaml', '--refresh-snapshot']);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('-/+ web   restart: refresh snapshot warm\n');
    expect(r.stdout).toContain('\nweb: deleting snapshot warm\n');
    const done = lineStarting(r.stdout, 'web: restarted');
    expect(done).toMatch(/^web: restarted: started \(pid \d+\), ready in \S+, saved snapshot warm in \S+$/);
    const newPid = Number(/pid (\d+)/.exec(done)![1]);
    expect(newPid).not.toBe(pid);
    expect(isRunning(pid)).toBe(false);
    pid = newPid;
    // Booted cold: a new boot of the guest, and the snapshot is of this boot now.
    snapshotBoot = await guestBoot(serialSocket(runtime, 'web'));
    expect(snapshotBoot).not.toBe(bootBefore);
    const rows = await snapshotRows();
    expect(rows.slice(1)).toHaveLength(1);
    expect(rows[1]).toMatch(/^warm\s.*\(the manifest boots from it\)$/);
    expect(dateOf(rows)).not.toBe(dateBefore);
    expect(await run(['apply', '-f', 'm.yaml'])).toMatchObject({
      exitCode: 0,
      stdout: 'No changes. The VMs match the manifest.\n',
    });
  });

  it('a readiness probe that cannot succeed fails apply, naming what it tried; the VM stays up', {
    timeout: 90_000,
  }, async () => {
    expect((await run(['destroy', '-f', 'm.yaml'])).exitCode).toBe(0);
    write({ ready: { http: { port, status: 418 }, timeout: '5s' } });
    const r = await run(['apply', '-f', 'm.yaml']);
    expect(r.exitCode).toBe(1);
    const target = `http://127.0.0.1:${port}/`;
    const error = lineStarting(r.stderr, 'error: ');
    expect(error).toContain('not ready within 5s');
    expect(error).toContain(`GET ${target} answered 200`);
    expect(error).toMatch(
      new RegExp(
        `^error: web: .*: not ready within 5s \\(\\d+ attempts at GET ${target} answering 418; last: GET ${target} answered 200\\); the VM was left running so it can be inspected$`,
      ),
    );
    const status = await run(['status', '-f', 'm.yaml']);
    expect(statusTable(status.stdout)).toMatchObject([{ NAME: 'web', STATE: 'running', READY: 'no' }]);
    expect((await waitForHttp(url(port), 2000)).body).toContain(GUEST_HELLO);
    write();
  });

  it('deleting the snapshot the manifest boots from needs --force', async () => {
    const line =
      readFileSync(file, 'utf8')
        .split('\n')
        .findIndex((l) => l.includes('snapshot: warm')) + 1;
    const refused = await run(['snapshot', 'delete', '-f', 'm.yaml', 'web', 'warm']);
    expect(refused).toEqual({
      exitCode: 1,
      stdout: '',
      stderr: `error: web boots from snapshot warm (m.yaml:${line}); deleting it makes the next start cold. Add --force to delete it anyway\n`,
    });
    expect((await snapshotRows())[1]).toMatch(/^warm\s/);
    const forced = await run(['snapshot', 'delete', '-f', 'm.yaml', 'web', 'warm', '--force']);
    expect(forced).toEqual({ exitCode: 0, stdout: 'web: deleted snapshot warm\n', stderr: '' });
    expect(await snapshotRows()).toEqual(['web has no snapshots.']);
  });
});

describe('a tcp readiness probe', () => {
  const dir = path.join(root, 'tcp');
  const run = (args: string[]) => qvm(args, { cwd: dir, env: { QVM_RUNTIME_DIR: runtime } });

  it('is ready only once the guest accepts, not when slirp does', { timeout: 90_000 }, async () => {
    mkdirSync(dir);
    const [port] = (await freePortsDistinct(1)) as [number];
    writeVms(path.join(dir, 'm.yaml'), {
      tcpweb: demoVm('tcpweb', { forwards: toPort80(port), ready: { tcp: port } }),
    });
    const r = await run(['apply', '-f', 'm.yaml']);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    const done = lineStarting(r.stdout, 'tcpweb: started');
    expect(done).toMatch(/^tcpweb: started \(pid \d+\), ready in \S+ in \S+$/);
    // Probing began while the guest was still booting: slirp accepted those connections on the host side,
    // and they were not taken for ready. Then the guest accepted one.
    const attempts = r.stdout
      .split('\n')
      .filter((l) => l.startsWith(`tcpweb: waiting for ready: tcp 127.0.0.1:${port}: `))
      .map((l) => l.slice(l.lastIndexOf(': ') + 2));
    expect(attempts.at(-1)).toBe('the guest accepted a connection');
    expect(attempts.slice(0, -1).length, r.stdout).toBeGreaterThan(0);
    for (const attempt of attempts.slice(0, -1))
      expect(attempt).toMatch(
        /has not accepted the connection yet|closed the connection|no connection within/,
      );
    // Ready means serving: the very first request after apply is answered, no retry.
    const { status, body } = await httpGet(url(port), 30_000);
    expect(status).toBe(200);
    expect(body).toContain(GUEST_HELLO);
  });
});

describe('warm resume after a crash', () => {
  const dir = path.join(root, 'crash');
  const file = path.join(dir, 'm.yaml');
  const run = (args: string[]) => qvm(args, { cwd: dir, env: { QVM_RUNTIME_DIR: runtime } });
  let port = 0;
  /** The boot of the guest its warm snapshot holds. */
  let snapshotBoot = '';
  let w: WatchProcess | undefined;

  afterAll(async () => {
    await w?.stop('SIGKILL');
  });

  it('apply starts a VM whose QEMU was SIGKILLed from its warm snapshot, not with a cold boot', {
    timeout: 120_000,
  }, async () => {
    mkdirSync(dir);
    [port] = (await freePortsDistinct(1)) as [number];
    writeVms(file, {
      crash: demoVm('crash', { snapshot: 'warm', forwards: toPort80(port), ready: { http: { port } } }),
    });
    const first = await run(['apply', '-f', 'm.yaml']);
    expect(first.exitCode, first.stderr).toBe(0);
    expect(lineStarting(first.stdout, 'crash: started')).toMatch(/saved snapshot warm in \S+$/);
    snapshotBoot = await guestBoot(serialSocket(runtime, 'crash'));
    const pid = vmPid(runtime, 'crash')!;
    process.kill(pid, 'SIGKILL');
    await until(`pid ${pid} gone`, () => !isRunning(pid));

    const plan = await run(['plan', '-f', 'm.yaml']);
    expect(plan.stdout).toBe(
      `  + crash   start: its QEMU exited (process ${pid} has exited; its pidfile is stale) (from snapshot warm)\n\n${PLAN_ONE_START}`,
    );
    const r = await run(['apply', '-f', 'm.yaml']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain('\ncrash: starting QEMU from snapshot warm\n');
    expect(lineStarting(r.stdout, 'crash: started')).toMatch(
      /^crash: started \(pid \d+\), from snapshot warm, ready in \S+ in \S+$/,
    );
    expect(r.stdout).not.toContain('saving snapshot');
    // The guest is the boot the snapshot holds: it resumed there.
    expect(await guestBoot(serialSocket(runtime, 'crash'))).toBe(snapshotBoot);
  });

  it('watch does the same on its own: the exit triggers a start from the snapshot', {
    timeout: 120_000,
  }, async () => {
    w = startWatch(['-f', 'm.yaml', '--json', '--interval', '60'], { cwd: dir, runtime });
    expect(await w.waitForPassEnd(1, 30_000)).toMatchObject({ changes: 0, failed: 0 });
    const pid = vmPid(runtime, 'crash')!;
    const from = w.mark();
    process.kill(pid, 'SIGKILL');
    const plan = await w.waitForEvent((e) => e.event === 'plan' && e.vm === 'crash', 30_000, from, 'a plan');
    expect(plan.change).toMatch(/^start: its QEMU exited .* \(from snapshot warm\)$/);
    const applied = await w.waitForEvent(
      (e) => (e.event === 'action-applied' || e.event === 'action-failed') && e.vm === 'crash',
      60_000,
      from,
      'the start',
    );
    expect(applied.event).toBe('action-applied');
    expect(applied.summary).toMatch(/^started \(pid \d+\), from snapshot warm, ready in \S+$/);
    expect(await guestBoot(serialSocket(runtime, 'crash'))).toBe(snapshotBoot);
    expect((await waitForHttp(url(port), 30_000)).body).toContain(GUEST_HELLO);
    expect(await w.stop('SIGTERM')).toMatchObject({ code: 0 });
  });
});
