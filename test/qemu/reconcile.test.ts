/**
 * The reconciler as a user meets it: `qvm plan`, `apply`, `status`, `destroy`, `monitor` through the real CLI
 * against real QEMU running the demo guest, checked from the host (HTTP, ports, /proc). Each story runs its own
 * VMs in its own folder; the stories run side by side, the steps of a story in order.
 */

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bareVm,
  cmdline,
  demoVm,
  freePorts,
  GUEST_HELLO,
  guestUptime,
  isRunning,
  killQemusUnder,
  listeningAddresses,
  mode,
  normalize,
  positionOf,
  qemusUnder,
  qvmIn,
  runtimeDir,
  statusOf,
  statusRows,
  statusTable,
  tcpConnect,
  until,
  url,
  vmDirOf,
  waitForHttp,
  writeManifest,
} from '../helpers/env.js';
import { removeDir, tempDir } from '../helpers/qemu.js';
import { guestBoot } from '../helpers/watch.js';

const runtime = runtimeDir();
const root = tempDir('qvmr-');
const NO_CHANGES = 'No changes. The VMs match the manifest.\n';
const planSummary = (start: number, live: number, restart: number, stop: number) =>
  `Plan: ${start} to start, ${live} to change live, ${restart} to restart, ${stop} to stop.\n`;

beforeAll(async () => {
  // The first command in a runtime root probes KVM (a few seconds); do it once, not in every story at once.
  const warm = writeManifest(path.join(root, 'warm'), {});
  const r = await qvmIn(runtime, path.dirname(warm))(['status', '-f', 'm.yaml']);
  expect(r.exitCode).toBe(0);
});

afterAll(async () => {
  await killQemusUnder(runtime);
  removeDir(runtime);
  removeDir(root);
});

// Each story is a `describe.concurrent` whose steps are `it.sequential`: vitest runs sibling concurrent suites
// together (at most maxConcurrency, 5, at once) while the steps of one story stay in order on its own VMs.
describe.concurrent('one VM, from a clean state through live changes, a restart, hibernation and a crash', () => {
  const dir = path.join(root, 'life');
  const run = qvmIn(runtime, dir);
  let web = 0;
  let extra = 0;
  let drift = 0;
  let exposed = 0;
  let pid = 0;
  const write = (vm: Record<string, unknown> = {}) =>
    writeManifest(dir, { web: demoVm('web', { forwards: [{ host: web, guest: 80 }], ...vm }) });
  const currentPid = async () => (await statusOf(run, 'm.yaml', 'web')).pid;

  beforeAll(async () => {
    [web, extra, drift, exposed] = (await freePorts(4)) as [number, number, number, number];
    write();
  });

  it.sequential('apply starts it from a clean state and the guest answers HTTP', {
    timeout: 90_000,
  }, async () => {
    const r = await run(['apply', '-f', 'm.yaml']);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    pid = (await currentPid())!;
    expect(isRunning(pid)).toBe(true);
    expect((await waitForHttp(url(web), 30_000)).body).toContain(GUEST_HELLO);
    expect(normalize(r.stdout)).toBe(
      `  + web   start (creates disks/web.qcow2, 64M)\n\n${planSummary(1, 0, 0, 0)}\n` +
        'web: creating disks/web.qcow2\nweb: starting QEMU\nweb: started (pid N) in T\n\n' +
        'Apply: 1 of 1 done in T.\n',
    );
  });

  it.sequential('a second apply changes nothing and keeps the same process', async () => {
    const r = await run(['apply', '-f', 'm.yaml']);
    expect(r).toEqual({ exitCode: 0, stdout: NO_CHANGES, stderr: '' });
    expect(await currentPid()).toBe(pid);
    const plan = await run(['plan', '-f', 'm.yaml', '--detailed-exitcode']);
    expect(plan).toEqual({ exitCode: 0, stdout: NO_CHANGES, stderr: '' });
  });

  it.sequential('a forward added to the manifest is added live', async () => {
    write({
      forwards: [
        { host: web, guest: 80 },
        { host: extra, guest: 80 },
      ],
    });
    const planText = `  ~ web   forwards, live\n            + tcp 127.0.0.1:${extra} -> :80\n\n${planSummary(0, 1, 0, 0)}`;
    expect(await run(['plan', '-f', 'm.yaml'])).toEqual({ exitCode: 0, stdout: planText, stderr: '' });
    expect((await run(['plan', '-f', 'm.yaml', '--detailed-exitcode'])).exitCode).toBe(2);
    const r = await run(['apply', '-f', 'm.yaml']);
    expect(r.exitCode).toBe(0);
    expect(normalize(r.stdout)).toBe(
      `${planText}\nweb: adding forward tcp:127.0.0.1:${extra}-:80\nweb: updated live: 1 forward added in T\n\n` +
        'Apply: 1 of 1 done in T.\n',
    );
    expect((await waitForHttp(url(extra), 10_000)).body).toContain(GUEST_HELLO);
    expect(await currentPid()).toBe(pid);
  });

  it.sequential('a forward removed from the manifest is removed live: its port refuses connections', async () => {
    write();
    const r = await run(['apply', '-f', 'm.yaml']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain(`            - tcp 127.0.0.1:${extra} -> 10.0.2.15:80\n`);
    expect(r.stdout).not.toContain('drift');
    expect(await tcpConnect(extra)).toBe('refused');
    expect((await waitForHttp(url(web), 5000)).body).toContain(GUEST_HELLO);
    expect(await currentPid()).toBe(pid);
  });

  it.sequential('a forward added by hand through the monitor is drift: plan shows it, apply removes it', async () => {
    const added = await run(['monitor', '-f', 'm.yaml', 'web', 'hostfwd_add', `tcp:127.0.0.1:${drift}-:80`]);
    expect(added).toEqual({ exitCode: 0, stdout: '', stderr: '' });
    expect((await waitForHttp(url(drift), 10_000)).body).toContain(GUEST_HELLO);
    const planText =
      `  ~ web   forwards, live\n            - tcp 127.0.0.1:${drift} -> 10.0.2.15:80 (drift: added outside qvm)\n\n` +
      planSummary(0, 1, 0, 0);
    expect(await run(['plan', '-f', 'm.yaml'])).toEqual({ exitCode: 0, stdout: planText, stderr: '' });
    const r = await run(['apply', '-f', 'm.yaml']);
    expect(r.exitCode).toBe(0);
    expect(normalize(r.stdout)).toBe(
      `${planText}\nweb: removing forward tcp:127.0.0.1:${drift}\nweb: updated live: 1 removed in T\n\n` +
        'Apply: 1 of 1 done in T.\n',
    );
    expect(await tcpConnect(drift)).toBe('refused');
    const usernet = await run(['monitor', '-f', 'm.yaml', 'web', 'info', 'usernet']);
    expect(usernet.exitCode).toBe(0);
    expect(usernet.stdout).toMatch(
      new RegExp(`TCP\\[HOST_FORWARD\\] +\\d+ +127\\.0\\.0\\.1 +${web} +10\\.0\\.2\\.15 +80 `),
    );
    expect(usernet.stdout).not.toMatch(new RegExp(`HOST_FORWARD.* ${drift} `));
    expect(await currentPid()).toBe(pid);
  });

  it.sequential('forwards bind to 127.0.0.1 unless an address is given; status marks exposed ones with !', async () => {
    write({
      forwards: [
        { host: web, guest: 80 },
        { host: exposed, guest: 80, address: '0.0.0.0' },
      ],
    });
    const plan = await run(['plan', '-f', 'm.yaml']);
    expect(plan.stdout).toContain(
      `            + tcp 0.0.0.0:${exposed} -> :80 (exposed on every interface)\n`,
    );
    expect((await run(['apply', '-f', 'm.yaml'])).exitCode).toBe(0);
    // /proc/net/tcp: local address in hex, state 0A = LISTEN. 0100007F is 127.0.0.1.
    expect(listeningAddresses(web)).toEqual(['0100007F']);
    expect(listeningAddresses(exposed)).toEqual(['00000000']);
    expect((await waitForHttp(url(exposed), 10_000)).body).toContain(GUEST_HELLO);
    const status = await run(['status', '-f', 'm.yaml']);
    expect(status.exitCode).toBe(0);
    expect(statusTable(status.stdout)).toMatchObject([
      { NAME: 'web', STATE: 'running', FORWARDS: `tcp 0.0.0.0:${exposed}->80!, tcp 127.0.0.1:${web}->80` },
    ]);
    expect(status.stdout).toContain('\n! marks a forward exposed beyond this machine (not on 127.0.0.1).\n');
    expect((await statusOf(run, 'm.yaml', 'web')).exposed).toEqual([`tcp 0.0.0.0:${exposed}->80`]);
    // Back to the plain manifest, so the next steps start from the command line the VM was started with.
    write();
    expect((await run(['apply', '-f', 'm.yaml'])).exitCode).toBe(0);
    expect(listeningAddresses(exposed)).toEqual([]);
    expect(await currentPid()).toBe(pid);
  });

  it.sequential('runtime folders are 0700 and monitor and serial sockets 0600', () => {
    const vmDir = vmDirOf(pid);
    const namespaceDir = path.dirname(vmDir);
    expect(path.dirname(namespaceDir)).toBe(runtime);
    expect([runtime, namespaceDir, vmDir].map(mode)).toEqual(['0700', '0700', '0700']);
    const sockets = ['qmp.sock', 'hmp.sock', 'events.sock', 'serial.sock'].map((s) => path.join(vmDir, s));
    expect(Object.fromEntries(sockets.map((s) => [path.basename(s), mode(s)]))).toEqual({
      'qmp.sock': '0600',
      'hmp.sock': '0600',
      'events.sock': '0600',
      'serial.sock': '0600',
    });
  });

  it.sequential('a memory change restarts the VM with the new memory', { timeout: 90_000 }, async () => {
    write({ memory: '320M' });
    const plan = await run(['plan', '-f', 'm.yaml']);
    expect(plan).toEqual({
      exitCode: 0,
      stdout:
        '-/+ web   restart: memory 256M -> 320M\n' +
        '            qemu-system-x86_64 command line:\n' +
        '              -accel tcg\n' +
        '            - -m 256\n' +
        '            + -m 320\n' +
        '              -smp 1\n' +
        `\n${planSummary(0, 0, 1, 0)}`,
      stderr: '',
    });
    const r = await run(['apply', '-f', 'm.yaml']);
    expect(r.exitCode).toBe(0);
    expect(normalize(r.stdout)).toContain(
      '\nweb: stopping\nweb: powering off (ACPI)\nweb: quitting\nweb: starting QEMU\nweb: restarted: started (pid N) in T\n',
    );
    expect(isRunning(pid)).toBe(false);
    const newPid = (await currentPid())!;
    expect(newPid).not.toBe(pid);
    pid = newPid;
    const memory = await run(['monitor', '-f', 'm.yaml', 'web', 'info', 'memory_size_summary']);
    expect(memory).toEqual({
      exitCode: 0,
      stdout: `base memory: ${320 * 2 ** 20}\nplugged memory: 0\n`,
      stderr: '',
    });
    expect((await waitForHttp(url(web), 30_000)).body).toContain(GUEST_HELLO);
  });

  it.sequential('state: saved hibernates it; state: running resumes the guest where it was', {
    timeout: 120_000,
  }, async () => {
    const before = await guestUptime(web);
    const boot = await guestBoot(path.join(vmDirOf(pid), 'serial.sock'));
    write({ memory: '320M', state: 'saved' });
    const plan = await run(['plan', '-f', 'm.yaml']);
    expect(plan.stdout).toBe(
      '  - web   save: hibernate (savevm qvm-saved-state), then stop; the next start resumes there\n\n' +
        'Plan: 0 to start, 0 to change live, 0 to restart, 0 to stop, 1 to save.\n',
    );
    const vmDir = vmDirOf(pid);
    const saved = await run(['apply', '-f', 'm.yaml']);
    expect(saved.exitCode).toBe(0);
    expect(normalize(saved.stdout)).toContain(
      '\nweb: saving state (savevm qvm-saved-state)\nweb: quitting\nweb: recording the saved state\nweb: saved (snapshot qvm-saved-state) and stopped in T\n',
    );
    expect(isRunning(pid)).toBe(false);
    expect(qemusUnder(vmDir)).toEqual([]);
    const status = await run(['status', '-f', 'm.yaml']);
    expect(status.exitCode).toBe(0);
    expect(statusTable(status.stdout)).toMatchObject([
      { NAME: 'web', STATE: 'saved', PID: '-', FORWARDS: '-', SNAPSHOTS: '-', UPTIME: '-' },
    ]);

    write({ memory: '320M', state: 'running' });
    expect((await run(['plan', '-f', 'm.yaml'])).stdout).toBe(
      `  + web   start: resume the saved state\n\n${planSummary(1, 0, 0, 0)}`,
    );
    const resumed = await run(['apply', '-f', 'm.yaml']);
    expect(resumed.exitCode).toBe(0);
    expect(normalize(resumed.stdout)).toContain(
      '\nweb: starting QEMU from the saved state\nweb: dropping the used saved state\n' +
        'web: started (pid N), resumed from the saved state in T\n',
    );
    expect((await waitForHttp(url(web), 30_000)).body).toContain(GUEST_HELLO);
    pid = (await currentPid())!;
    // The same boot of the guest (a new boot loads its kernel and PID 1 elsewhere), and its clock carried on.
    expect(await guestBoot(path.join(vmDirOf(pid), 'serial.sock'))).toBe(boot);
    expect(await guestUptime(web)).toBeGreaterThanOrEqual(before);
    const snapshots = await run(['monitor', '-f', 'm.yaml', 'web', 'info', 'snapshots']);
    expect(snapshots.stdout).not.toContain('qvm-saved-state');
    expect(await run(['plan', '-f', 'm.yaml', '--detailed-exitcode'])).toEqual({
      exitCode: 0,
      stdout: NO_CHANGES,
      stderr: '',
    });
  });

  it.sequential('after kill -9 the plan starts it again and apply does', { timeout: 90_000 }, async () => {
    // Never kill(0) or kill(1): a pid lost to an earlier failing step must not take the test runner down.
    expect(cmdline(pid)[0]).toContain('qemu-system');
    process.kill(pid, 'SIGKILL');
    await until(`pid ${pid} to end`, () => !isRunning(pid));
    const plan = await run(['plan', '-f', 'm.yaml']);
    expect(plan).toEqual({
      exitCode: 0,
      stdout: `  + web   start: its QEMU exited (process ${pid} has exited; its pidfile is stale)\n\n${planSummary(1, 0, 0, 0)}`,
      stderr: '',
    });
    expect((await statusOf(run, 'm.yaml', 'web')).state).toBe('stopped (crashed)');
    const r = await run(['apply', '-f', 'm.yaml']);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    const newPid = (await currentPid())!;
    expect(newPid).not.toBe(pid);
    expect(isRunning(newPid)).toBe(true);
    pid = newPid;
    expect((await waitForHttp(url(web), 30_000)).body).toContain(GUEST_HELLO);
  });

  it.sequential('destroy stops it, removes its runtime files and keeps its disk', {
    timeout: 90_000,
  }, async () => {
    const vmDir = vmDirOf(pid);
    const r = await run(['destroy', '-f', 'm.yaml']);
    expect(r).toEqual({
      exitCode: 0,
      stdout: expect.any(String),
      stderr: '',
    });
    expect(normalize(r.stdout)).toBe(
      'web: stopping\nweb: powering off (ACPI)\nweb: quitting\nweb: stopped (guest powered off) in T\n' +
        'web: destroyed; kept disks/web.qcow2\n',
    );
    expect(isRunning(pid)).toBe(false);
    expect(existsSync(path.join(dir, 'disks/web.qcow2'))).toBe(true);
    for (const file of ['qmp.sock', 'hmp.sock', 'events.sock', 'serial.sock', 'qemu.pid', 'launch.json']) {
      expect(existsSync(path.join(vmDir, file)), file).toBe(false);
    }
    expect((await statusOf(run, 'm.yaml', 'web')).state).toBe('stopped');
  });
});

describe.concurrent('booting from a snapshot named in the manifest', () => {
  const dir = path.join(root, 'snap');
  const run = qvmIn(runtime, dir);
  let port = 0;
  let vmDir = '';
  /** Guest uptime read just before and just after `savevm X`: the saved uptime is between them. */
  let savedAt = { low: 0, high: 0 };
  const write = (vm: Record<string, unknown> = {}) =>
    writeManifest(dir, { snap: demoVm('snap', { forwards: [{ host: port, guest: 80 }], ...vm }) });

  beforeAll(async () => {
    [port] = (await freePorts(1)) as [number];
    write();
  });

  /** destroy, then apply: the VM boots from snapshot X; its uptime proves it resumed there. */
  const destroyAndApplyFromX = async () => {
    expect((await run(['destroy', '-f', 'm.yaml'])).exitCode).toBe(0);
    expect(qemusUnder(vmDir)).toEqual([]);
    expect(await run(['plan', '-f', 'm.yaml'])).toEqual({
      exitCode: 0,
      stdout: `  + snap   start (from snapshot X)\n\n${planSummary(1, 0, 0, 0)}`,
      stderr: '',
    });
    const started = Date.now();
    const r = await run(['apply', '-f', 'm.yaml']);
    expect(r.exitCode).toBe(0);
    expect(normalize(r.stdout)).toContain(
      '\nsnap: starting QEMU from snapshot X\nsnap: started (pid N), from snapshot X in T\n',
    );
    expect((await waitForHttp(url(port), 10_000)).body).toContain(GUEST_HELLO);
    const uptime = await guestUptime(port);
    const sinceApply = (Date.now() - started) / 1000;
    expect(uptime).toBeGreaterThanOrEqual(savedAt.low);
    // No more guest time has passed since X than wall time since this apply began: it resumed at X.
    expect(uptime).toBeLessThan(savedAt.high + sinceApply + 0.5);
  };

  it.sequential('a snapshot taken through the monitor while running', { timeout: 90_000 }, async () => {
    expect((await run(['apply', '-f', 'm.yaml'])).exitCode).toBe(0);
    expect((await waitForHttp(url(port), 30_000)).body).toContain(GUEST_HELLO);
    vmDir = vmDirOf((await statusOf(run, 'm.yaml', 'snap')).pid!);
    const low = await guestUptime(port);
    const saved = await run(['monitor', '-f', 'm.yaml', 'snap', 'savevm', 'X']);
    const high = await guestUptime(port);
    expect(saved).toEqual({ exitCode: 0, stdout: '', stderr: '' });
    savedAt = { low, high };
    expect((await statusOf(run, 'm.yaml', 'snap')).snapshots).toEqual(['X']);
  });

  it.sequential('snapshot: X makes destroy + apply resume from X', { timeout: 90_000 }, async () => {
    write({ snapshot: 'X' });
    // Only a start boots from a snapshot: the running VM matches the manifest.
    expect((await run(['plan', '-f', 'm.yaml', '--detailed-exitcode'])).exitCode).toBe(0);
    await destroyAndApplyFromX();
  });

  it.sequential('and again from X after another destroy + apply', { timeout: 90_000 }, async () => {
    await destroyAndApplyFromX();
  });

  it.sequential('a snapshot that is not on the disk is a located plan error, and nothing is started', {
    timeout: 90_000,
  }, async () => {
    const file = write({ snapshot: 'missing' });
    expect((await run(['destroy', '-f', 'm.yaml'])).exitCode).toBe(0);
    const error = `  ! snap   error: m.yaml:${positionOf(file, 'missing')}: vms.snap.snapshot: snapshot "missing" does not exist on disks/snap.qcow2 (it has: X)\n`;
    const plan = await run(['plan', '-f', 'm.yaml']);
    expect(plan.exitCode).toBe(1);
    expect(plan.stdout.startsWith(`${error}\n${planSummary(0, 0, 0, 0)}`)).toBe(true);
    expect(qemusUnder(vmDir)).toEqual([]);
    const apply = await run(['apply', '-f', 'm.yaml']);
    expect(apply.exitCode).toBe(1);
    expect(apply.stdout.startsWith(error)).toBe(true);
    // Never a QEMU left paused in restore-vm by a failed -loadvm.
    expect(qemusUnder(vmDir)).toEqual([]);
    expect((await statusOf(run, 'm.yaml', 'snap')).state).toBe('stopped');
  });
});

describe.concurrent('two manifests in different folders, each with a VM named web', () => {
  const short = path.join(root, 'two');
  const long = path.join(root, 'a-folder-with-a-long-name'.repeat(3), 'and-a-subfolder-with-a-long-name-too');
  const runShort = qvmIn(runtime, short);
  const runLong = qvmIn(runtime, long);
  let shortPort = 0;
  let longPort = 0;
  let longPid = 0;
  let shortPid = 0;
  const vm = (port: number) =>
    bareVm({ forwards: [{ host: port, guest: 80 }], disk: { path: 'disks/web.qcow2', size: '16M' } });

  beforeAll(async () => {
    [shortPort, longPort] = (await freePorts(2)) as [number, number];
    writeManifest(short, { web: vm(shortPort) });
    writeManifest(long, { web: vm(longPort) });
  });

  it.sequential('a manifest in a folder whose path is longer than 120 characters works', async () => {
    expect(long.length).toBeGreaterThan(120);
    const r = await runLong(['apply', '-f', 'm.yaml']);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    const row = await statusOf(runLong, 'm.yaml', 'web');
    expect(row).toMatchObject({ state: 'running', forwards: [`tcp 127.0.0.1:${longPort}->80`] });
    longPid = row.pid!;
    expect(isRunning(longPid)).toBe(true);
    expect(existsSync(path.join(long, 'disks/web.qcow2'))).toBe(true);
  });

  it.sequential('both run at once, and each status shows its own VM', async () => {
    const r = await runShort(['apply', '-f', 'm.yaml']);
    expect(r.exitCode).toBe(0);
    const [shortRow, longRow] = await Promise.all([
      statusOf(runShort, 'm.yaml', 'web'),
      statusOf(runLong, 'm.yaml', 'web'),
    ]);
    shortPid = shortRow.pid!;
    expect(shortRow).toMatchObject({ state: 'running', forwards: [`tcp 127.0.0.1:${shortPort}->80`] });
    expect(longRow).toMatchObject({
      state: 'running',
      pid: longPid,
      forwards: [`tcp 127.0.0.1:${longPort}->80`],
    });
    expect(shortPid).not.toBe(longPid);
    expect(isRunning(shortPid) && isRunning(longPid)).toBe(true);
    // Each pid is the QEMU of its own folder's disk.
    const disk = (pid: number) =>
      readFileSync(`/proc/${pid}/cmdline`, 'utf8')
        .split('\0')
        .find((a) => a.startsWith('file='));
    expect(disk(shortPid)).toContain(path.join(short, 'disks/web.qcow2'));
    expect(disk(longPid)).toContain(path.join(long, 'disks/web.qcow2'));
    expect(path.dirname(vmDirOf(shortPid))).not.toBe(path.dirname(vmDirOf(longPid)));
  });

  it.sequential('destroying one leaves the other running', async () => {
    expect((await runShort(['destroy', '-f', 'm.yaml'])).exitCode).toBe(0);
    expect(isRunning(shortPid)).toBe(false);
    expect(isRunning(longPid)).toBe(true);
    expect((await statusOf(runLong, 'm.yaml', 'web')).pid).toBe(longPid);
    expect((await runLong(['destroy', '-f', 'm.yaml'])).exitCode).toBe(0);
    expect(isRunning(longPid)).toBe(false);
  });
});

describe.concurrent('a failure on one VM does not stop the others', () => {
  const dir = path.join(root, 'fail');
  const run = qvmIn(runtime, dir);
  let takenPort = 0;
  let finePort = 0;
  let blocker: net.Server | undefined;
  let apply = { exitCode: -1, stdout: '', stderr: '' };
  // blocked: the host port of its forward is held by another program. typo: a QEMU option QEMU refuses, so its
  // QEMU exits at start whatever qvm checks beforehand. fine: the demo guest, with nothing wrong.
  const write = (broken: boolean) =>
    writeManifest(dir, {
      blocked: bareVm({ forwards: [{ host: takenPort, guest: 80 }] }),
      typo: broken ? bareVm({ args: ['-device', 'no-such-nic'] }) : bareVm(),
      fine: demoVm('fine', { forwards: [{ host: finePort, guest: 80 }] }),
    });

  beforeAll(async () => {
    [takenPort, finePort] = (await freePorts(2)) as [number, number];
    blocker = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => blocker!.listen(takenPort, '127.0.0.1', resolve));
    write(true);
    apply = await run(['apply', '-f', 'm.yaml']);
  });
  afterAll(async () => {
    await new Promise((resolve) => (blocker?.listening ? blocker.close(resolve) : resolve(undefined)));
  });

  it.sequential('apply exits 1 and names the VM whose port is taken, with the port', () => {
    expect(apply.exitCode).toBe(1);
    // Either the plan's own check of the port or QEMU's "Could not set up host forwarding rule": one line
    // that names the VM and the port.
    const output = `${apply.stdout}${apply.stderr}`;
    expect(output).toMatch(new RegExp(`^.*\\bblocked\\b.*127\\.0\\.0\\.1:${takenPort}\\b.*$`, 'm'));
  });

  it.sequential("apply passes on QEMU's own message when QEMU refuses to start a VM", () => {
    expect(apply.stdout).toMatch(/^typo: starting QEMU$/m);
    expect(apply.stderr).toMatch(
      /^error: typo: starting QEMU: QEMU did not start: .*'no-such-nic' is not a valid device model name$/m,
    );
  });

  it.sequential('the other VM started and serves', { timeout: 90_000 }, async () => {
    expect(normalize(apply.stdout)).toContain('\nfine: started (pid N) in T\n');
    expect((await waitForHttp(url(finePort), 30_000)).body).toContain(GUEST_HELLO);
    const rows = await statusRows(run, 'm.yaml');
    expect(rows.map((r) => [r.name, r.state === 'running', r.pid !== null])).toEqual([
      ['blocked', false, false],
      ['typo', false, false],
      ['fine', true, true],
    ]);
  });

  it.sequential('a VM whose QEMU refused to start is stopped, not crashed, and the next plan simply starts it', async () => {
    // Both at once, so a failure shows both: it never ran, so nothing crashed and nothing "exited".
    write(false);
    const plan = await run(['plan', '-f', 'm.yaml']);
    expect({
      state: (await statusOf(run, 'm.yaml', 'typo')).state,
      plan: plan.stdout.split('\n').find((line) => line.startsWith('  + typo')),
    }).toEqual({ state: 'stopped', plan: '  + typo      start' });
  });

  it.sequential('once the port is free and the option fixed, apply starts both', async () => {
    write(false);
    await new Promise((resolve) => blocker!.close(resolve));
    const r = await run(['apply', '-f', 'm.yaml']);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    const rows = await statusRows(run, 'm.yaml');
    expect(rows.map((row) => [row.name, row.state])).toEqual([
      ['blocked', 'running'],
      ['typo', 'running'],
      ['fine', 'running'],
    ]);
    expect(listeningAddresses(takenPort)).toEqual(['0100007F']);
  });
});

describe.concurrent('a running VM removed from the manifest (an orphan)', () => {
  const dir = path.join(root, 'orphan');
  const run = qvmIn(runtime, dir);
  let gonePid = 0;
  const note = 'Note: gone is running but not in the manifest; `apply --prune` stops it.\n';

  beforeAll(() => {
    writeManifest(dir, { keep: bareVm(), gone: bareVm() });
  });

  it.sequential('is not a change: plan exits 0 with a note', { timeout: 90_000 }, async () => {
    expect((await run(['apply', '-f', 'm.yaml'])).exitCode).toBe(0);
    gonePid = (await statusOf(run, 'm.yaml', 'gone')).pid!;
    expect(isRunning(gonePid)).toBe(true);
    writeManifest(dir, { keep: bareVm() });
    const expected = { exitCode: 0, stdout: `${NO_CHANGES}${note}`, stderr: '' };
    expect(await run(['plan', '-f', 'm.yaml'])).toEqual(expected);
    expect(await run(['plan', '-f', 'm.yaml', '--detailed-exitcode'])).toEqual(expected);
    expect(await run(['apply', '-f', 'm.yaml'])).toEqual(expected);
    expect(isRunning(gonePid)).toBe(true);
  });

  it.sequential('status lists it as not in the manifest', async () => {
    const status = await run(['status', '-f', 'm.yaml']);
    expect(status.exitCode).toBe(0);
    expect(statusTable(status.stdout)).toMatchObject([
      { NAME: 'keep', STATE: 'running' },
      { NAME: 'gone (not in manifest)', STATE: 'running', PID: String(gonePid) },
    ]);
    expect((await statusOf(run, 'm.yaml', 'gone')).inManifest).toBe(false);
  });

  it.sequential('apply --prune stops it', async () => {
    const r = await run(['apply', '--prune', '-f', 'm.yaml']);
    expect(r.exitCode).toBe(0);
    expect(normalize(r.stdout)).toBe(
      `  - gone   stop: not in the manifest (apply --prune)\n\n${planSummary(0, 0, 0, 1)}\n` +
        'gone: stopping\ngone: powering off (ACPI)\ngone: quitting\n' +
        'gone: stopped (no power-off within the stop timeout; quit) in T\n\nApply: 1 of 1 done in T.\n',
    );
    expect(isRunning(gonePid)).toBe(false);
    expect((await statusRows(run, 'm.yaml')).map((row) => row.name)).toEqual(['keep']);
    expect(await run(['plan', '-f', 'm.yaml', '--prune', '--detailed-exitcode'])).toEqual({
      exitCode: 0,
      stdout: NO_CHANGES,
      stderr: '',
    });
  });
});

describe.concurrent('destroy --delete-disks deletes only the disks qvm created', () => {
  const dir = path.join(root, 'disks');
  const run = qvmIn(runtime, dir);
  const mine = path.join(dir, 'disks/mine.qcow2');
  const made = path.join(dir, 'disks/made.qcow2');
  const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
  let mineHash = '';
  let pids: number[] = [];

  beforeAll(() => {
    writeManifest(dir, {
      mine: bareVm({ disk: 'disks/mine.qcow2' }),
      made: bareVm({ disk: { path: 'disks/made.qcow2', size: '16M' } }),
    });
    mkdirSync(path.dirname(mine), { recursive: true });
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', mine, '16M']);
    mineHash = sha256(mine);
  });

  it.sequential('apply creates only the disk that is missing', async () => {
    const r = await run(['apply', '-f', 'm.yaml']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout.startsWith(`  + mine   start\n  + made   start (creates disks/made.qcow2, 16M)\n`)).toBe(
      true,
    );
    pids = (await statusRows(run, 'm.yaml')).map((row) => row.pid!);
    expect(pids.every(isRunning)).toBe(true);
    expect(existsSync(made)).toBe(true);
  });

  it.sequential('destroy stops the VMs and keeps both disks', async () => {
    const r = await run(['destroy', '-f', 'm.yaml']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('\nmine: destroyed; kept disks/mine.qcow2\n');
    expect(r.stdout).toContain('\nmade: destroyed; kept disks/made.qcow2\n');
    expect(pids.some(isRunning)).toBe(false);
    expect(existsSync(made)).toBe(true);
    expect(sha256(mine)).toBe(mineHash);
  });

  it.sequential('--delete-disks deletes the disk qvm created and leaves the one that was there before', async () => {
    const r = await run(['destroy', '-f', 'm.yaml', '--delete-disks']);
    expect(r).toEqual({
      exitCode: 0,
      stdout:
        'mine: destroyed; kept disks/mine.qcow2 (qvm did not create it)\nmade: deleted disks/made.qcow2 (created by qvm)\nmade: destroyed\n',
      stderr: '',
    });
    expect(existsSync(made)).toBe(false);
    expect(sha256(mine)).toBe(mineHash);
  });
});
