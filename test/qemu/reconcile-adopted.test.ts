/**
 * An adopted VM: a QEMU someone started by hand (the classic recipe: an HMP socket and a hostfwd on the command
 * line) that a manifest takes over with `monitor: SOCKET`. qvm reconciles its forwards live and can quit it,
 * but never restarts or starts it.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cmdline,
  freePorts,
  isRunning,
  killQemusUnder,
  listeningAddresses,
  normalize,
  positionOf,
  qemusUnder,
  qvmIn,
  runtimeDir,
  statusOf,
  statusTable,
  tcpConnect,
  until,
  writeManifest,
} from '../helpers/env.js';
import { registerPid, removeDir, tempDir } from '../helpers/qemu.js';

describe('a VM started outside qvm and adopted through its monitor socket', () => {
  const runtime = runtimeDir();
  const dir = tempDir('qvma-');
  const socket = path.join(dir, 'mon.sock');
  const run = qvmIn(runtime, dir);
  let before = 0;
  let wanted = 0;
  let pid = 0;
  /** The VM as the manifest declares it: its monitor, the forward it should have, and whatever else. */
  const write = (extra: Record<string, unknown> = {}) =>
    writeManifest(dir, {
      old: { monitor: 'mon.sock', forwards: [{ host: wanted, guest: 22 }], stopTimeout: '1s', ...extra },
    });
  const note = 'Note: old memory not applied: this VM was started outside qvm, which cannot restart it.\n';

  beforeAll(async () => {
    [before, wanted] = (await freePorts(2)) as [number, number];
    const pidfile = path.join(dir, 'qemu.pid');
    // No guest OS; the NIC's boot ROM is left out so the BIOS idles instead of trying a network boot.
    await execa('qemu-system-x86_64', [
      '-accel',
      'tcg',
      '-m',
      '64',
      '-display',
      'none',
      '-daemonize',
      '-pidfile',
      pidfile,
      '-monitor',
      `unix:${socket},server,nowait`,
      '-netdev',
      `user,id=net0,hostfwd=tcp::${before}-:22`,
      '-device',
      'e1000,netdev=net0',
      '-global',
      'e1000.romfile=',
    ]);
    pid = Number.parseInt(readFileSync(pidfile, 'utf8'), 10);
    registerPid(pid);
    write();
  });

  afterAll(async () => {
    await killQemusUnder(dir);
    await killQemusUnder(runtime);
    removeDir(dir);
    removeDir(runtime);
  });

  it.sequential('plan shows the difference in forwards, to be made live', async () => {
    const planText =
      '  ~ old   forwards, live\n' +
      `            - tcp 0.0.0.0:${before} -> 10.0.2.15:22 (exposed on every interface)\n` +
      `            + tcp 127.0.0.1:${wanted} -> :22\n\n` +
      'Plan: 0 to start, 1 to change live, 0 to restart, 0 to stop.\n';
    expect(await run(['plan', '-f', 'm.yaml'])).toEqual({ exitCode: 0, stdout: planText, stderr: '' });
    expect((await run(['plan', '-f', 'm.yaml', '--detailed-exitcode'])).exitCode).toBe(2);
    const status = await run(['status', '-f', 'm.yaml']);
    expect(status.exitCode).toBe(0);
    expect(statusTable(status.stdout)).toMatchObject([
      {
        NAME: 'old (adopted)',
        STATE: 'running',
        PID: '-',
        FORWARDS: `tcp 0.0.0.0:${before}->22!`,
        UPTIME: '-',
      },
    ]);
    expect(status.stdout).toContain('\n! marks a forward exposed beyond this machine (not on 127.0.0.1).\n');
  });

  it.sequential('apply makes its forwards match through its own monitor', async () => {
    const r = await run(['apply', '-f', 'm.yaml']);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(normalize(r.stdout)).toContain(
      `\nold: removing forward tcp:0.0.0.0:${before}\nold: adding forward tcp:127.0.0.1:${wanted}-:22\n` +
        'old: updated live: 1 forward added, 1 removed in T\n\nApply: 1 of 1 done in T.\n',
    );
    const usernet = await run(['monitor', '--socket', socket, 'info', 'usernet']);
    expect(usernet.exitCode).toBe(0);
    const forwards = usernet.stdout.split('\n').filter((line) => line.includes('HOST_FORWARD'));
    expect(forwards).toHaveLength(1);
    expect(forwards[0]).toMatch(
      new RegExp(`^ +TCP\\[HOST_FORWARD\\] +\\d+ +127\\.0\\.0\\.1 +${wanted} +10\\.0\\.2\\.15 +22 `),
    );
    expect(await tcpConnect(before)).toBe('refused');
    expect(listeningAddresses(wanted)).toEqual(['0100007F']);
    expect(await run(['plan', '-f', 'm.yaml', '--detailed-exitcode'])).toEqual({
      exitCode: 0,
      stdout: 'No changes. The VMs match the manifest.\n',
      stderr: '',
    });
    expect(isRunning(pid)).toBe(true);
  });

  it.sequential('a restart-class field (memory) is not applied, and the plan says so', async () => {
    write({ memory: '1G' });
    const expected = { exitCode: 0, stdout: `No changes. The VMs match the manifest.\n${note}`, stderr: '' };
    expect(await run(['plan', '-f', 'm.yaml', '--detailed-exitcode'])).toEqual(expected);
    expect(await run(['apply', '-f', 'm.yaml'])).toEqual(expected);
    const argv = cmdline(pid);
    expect(argv[argv.indexOf('-m') + 1]).toBe('64');
  });

  it.sequential('state: stopped makes apply quit it through its monitor', async () => {
    write({ memory: '1G', state: 'stopped' });
    const planText =
      '  - old   stop: state is stopped (quit through its monitor; it was started outside qvm)\n\n' +
      `Plan: 0 to start, 0 to change live, 0 to restart, 1 to stop.\n${note}`;
    expect(await run(['plan', '-f', 'm.yaml'])).toEqual({ exitCode: 0, stdout: planText, stderr: '' });
    const r = await run(['apply', '-f', 'm.yaml']);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(normalize(r.stdout)).toBe(
      `${planText}\nold: stopping\nold: powering off (ACPI)\nold: quitting\n` +
        'old: stopped (no power-off within the stop timeout; quit) in T\n\nApply: 1 of 1 done in T.\n',
    );
    await until(`the adopted QEMU (pid ${pid}) to exit`, () => !isRunning(pid), 5000);
    expect((await statusOf(run, 'm.yaml', 'old')).state).toBe('stopped');
    expect(await run(['plan', '-f', 'm.yaml', '--detailed-exitcode'])).toEqual({
      exitCode: 0,
      stdout: `No changes. The VMs match the manifest.\n${note}`,
      stderr: '',
    });
  });

  it.sequential('once it is gone, state: running is an error: qvm does not start a VM it did not start', async () => {
    const file = write({ state: 'running' });
    const error =
      `  ! old   error: m.yaml:${positionOf(file, 'mon.sock')}: vms.old.monitor: is not running (no QEMU answers on ${socket}); ` +
      'qvm does not start a VM it did not start\n';
    const plan = await run(['plan', '-f', 'm.yaml']);
    expect(plan.exitCode).toBe(1);
    expect(
      plan.stdout.startsWith(`${error}\nPlan: 0 to start, 0 to change live, 0 to restart, 0 to stop.\n`),
    ).toBe(true);
    const apply = await run(['apply', '-f', 'm.yaml']);
    expect(apply.exitCode).toBe(1);
    expect(apply.stdout.startsWith(error)).toBe(true);
    expect(qemusUnder(runtime)).toEqual([]);
    expect(qemusUnder(dir)).toEqual([]);
  });
});
