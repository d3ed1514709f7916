/**
 * Faults qvm must survive without making things worse: a frozen QEMU, a crashed one, a pidfile whose pid now
 * belongs to another program, a QEMU dying while apply waits for it, full and read-only folders, and qvm
 * itself killed halfway through an apply. Real QEMU (bare VMs), real signals, real tmpfs mounts.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bareVm,
  freshPort,
  hasStackTrace,
  isRunning,
  killHard,
  killQemusUnder,
  mountTmpfs,
  procState,
  QVM_BIN,
  qemusWithPidfile,
  remount,
  sandbox,
  spawnHelper,
  statusJson,
  statusTable,
  until,
  warmUp,
  writeManifest,
} from './support.js';

/** How many times a VM's QEMU is SIGKILLed and brought back by apply. */
const CRASH_ROUNDS = 3;
/**
 * When qvm is killed: this many ms after it has printed its plan, i.e. while it creates the disks and starts
 * the QEMUs (qvm's own startup takes longer than 300 ms here, so a delay counted from the process start would
 * kill it before it does anything). One round per delay.
 */
const KILL_DELAYS_MS = [0, 20, 40, 60, 90, 120, 160];
/** How many times qvm itself is SIGKILLed in the middle of an apply. */
const KILL_ROUNDS = KILL_DELAYS_MS.length;
/** `qvm status --timeout` with a frozen VM: the monitor deadline the unresponsive VM is reported after. */
const FROZEN_TIMEOUT = '1s';
/**
 * The readiness timeout of the VM whose QEMU is killed while apply waits. Longer than the test may run: apply
 * can only end by noticing that QEMU exited, never by the probe's deadline.
 */
const READY_TIMEOUT = '2h';

const box = sandbox('qrf');

beforeAll(() => warmUp(box));
afterAll(() => box.cleanup());

describe('a frozen QEMU (SIGSTOP)', () => {
  it('is reported unresponsive and left alone; the other VMs converge; after SIGCONT it is back', {
    timeout: 90_000,
  }, async () => {
    const dir = path.join(box.root, 'frozen');
    const file = path.join(dir, 'm.yaml');
    writeManifest(file, { frozen: bareVm(), other: bareVm() });
    const first = await box.run(['apply', '-f', file]);
    expect(first.exitCode, first.stderr).toBe(0);
    const pid = box.readPid(file, 'frozen');
    const otherPid = box.readPid(file, 'other');
    process.kill(pid, 'SIGSTOP');
    try {
      await until('frozen QEMU stopped', () => procState(pid) === 'T');

      // A status that waited on the frozen monitor would never end (the test's deadline): it gives up after
      // FROZEN_TIMEOUT and says so.
      const status = await box.run(['status', '-f', file, '--timeout', FROZEN_TIMEOUT]);
      expect(status.exitCode, status.stderr).toBe(0);
      const rows = statusTable(status.stdout);
      expect(rows.find((r) => r.NAME === 'frozen')).toMatchObject({
        STATE: 'unresponsive',
        PID: String(pid),
      });
      expect(status.stdout).toMatch(new RegExp(`^frozen: .*within ${FROZEN_TIMEOUT}`, 'm'));
      expect(rows.find((r) => r.NAME === 'other')).toMatchObject({ STATE: 'running', PID: String(otherPid) });

      const plan = await box.run(['plan', '-f', file, '--timeout', FROZEN_TIMEOUT]);
      expect(plan.exitCode).toBe(1);
      expect(plan.stdout).toMatch(new RegExp(`! frozen .*does not answer on its monitor \\(pid ${pid}\\)`));

      // The other VM has work to do (a new forward) and a third VM is new: both converge.
      const port = await freshPort();
      writeManifest(file, {
        frozen: bareVm(),
        other: bareVm({ forwards: [{ host: port, guest: 80 }] }),
        third: bareVm(),
      });
      const apply = await box.run(['apply', '-f', file, '--timeout', FROZEN_TIMEOUT]);
      expect(apply.exitCode).toBe(1);
      expect(apply.stdout).toMatch(/! frozen .*does not answer on its monitor/);
      expect(apply.stdout).toContain('other: updated live: 1 forward added');
      expect(apply.stdout).toMatch(/third: started \(pid \d+\)/);
      expect(qemusWithPidfile(box.pidfile(file, 'frozen'))).toEqual([pid]);
      expect(qemusWithPidfile(box.pidfile(file, 'third'))).toHaveLength(1);
      expect(procState(pid)).toBe('T');
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await until('frozen QEMU running again', () => procState(pid) !== 'T');
    const rows = await statusJson(box, file);
    expect(rows.map((r) => [r.name, r.state, r.pid])).toEqual([
      ['frozen', 'running', pid],
      ['other', 'running', otherPid],
      ['third', 'running', box.readPid(file, 'third')],
    ]);
    const plan = await box.run(['plan', '-f', file]);
    expect(plan.exitCode, plan.stdout).toBe(0);
    expect(plan.stdout).toContain('No changes.');
  });
});

describe('a crashed QEMU (SIGKILL)', () => {
  it(`leaves a stale pidfile and sockets; plan says start; apply replaces them; ${CRASH_ROUNDS} rounds`, {
    timeout: 60_000,
  }, async () => {
    const file = writeManifest(path.join(box.root, 'crash', 'm.yaml'), { web: bareVm() });
    const first = await box.run(['apply', '-f', file]);
    expect(first.exitCode, first.stderr).toBe(0);
    const dir = box.vmDir(file, 'web');
    for (let round = 1; round <= CRASH_ROUNDS; round++) {
      const old = box.readPid(file, 'web');
      await killHard(old);
      // What a crash leaves behind: QEMU had no chance to clean up.
      expect(box.readPid(file, 'web')).toBe(old);
      for (const socket of ['qmp.sock', 'hmp.sock', 'serial.sock'])
        expect(existsSync(path.join(dir, socket))).toBe(true);

      const plan = await box.run(['plan', '-f', file]);
      expect(plan.exitCode, plan.stderr).toBe(0);
      expect(plan.stdout).toContain(
        `+ web   start: its QEMU exited (process ${old} has exited; its pidfile is stale)`,
      );
      const status = await statusJson(box, file);
      expect(status[0]).toMatchObject({ name: 'web', state: 'stopped (crashed)', pid: null });

      const apply = await box.run(['apply', '-f', file]);
      expect(apply.exitCode, apply.stderr).toBe(0);
      const fresh = box.readPid(file, 'web');
      expect(fresh).not.toBe(old);
      expect(qemusWithPidfile(box.pidfile(file, 'web'))).toEqual([fresh]);
      for (const socket of ['qmp.sock', 'hmp.sock', 'serial.sock'])
        expect(existsSync(path.join(dir, socket))).toBe(true);
      const again = await box.run(['plan', '-f', file]);
      expect(again.stdout, `round ${round}`).toContain('No changes.');
    }
  });
});

describe('a pidfile whose pid now belongs to another program', () => {
  it('is not taken for the VM, and that program is never signalled', { timeout: 60_000 }, async () => {
    const file = writeManifest(path.join(box.root, 'reuse', 'm.yaml'), { web: bareVm() });
    const first = await box.run(['apply', '-f', file]);
    expect(first.exitCode, first.stderr).toBe(0);
    const pidfile = box.pidfile(file, 'web');
    await killHard(box.readPid(file, 'web'));
    const other = spawnHelper('sleep', ['300']);
    const plantPid = () => writeFileSync(pidfile, `${other.pid}\n`);
    plantPid();

    const status = await statusJson(box, file);
    expect(status[0]).toMatchObject({ name: 'web', pid: null });
    expect(status[0]!.state).toMatch(/^stopped/);

    // destroy with the foreign pid in the pidfile: nothing to stop, and `sleep` is not touched.
    const destroyFirst = await box.run(['destroy', '-f', file]);
    expect(destroyFirst.exitCode, destroyFirst.stderr).toBe(0);
    expect(isRunning(other.pid)).toBe(true);

    plantPid();
    const plan = await box.run(['plan', '-f', file]);
    expect(plan.stdout).toContain(
      `start: its QEMU exited (pid ${other.pid} now belongs to another program (sleep)`,
    );
    const apply = await box.run(['apply', '-f', file]);
    expect(apply.exitCode, apply.stderr).toBe(0);
    const fresh = box.readPid(file, 'web');
    expect(fresh).not.toBe(other.pid);
    expect(qemusWithPidfile(pidfile)).toEqual([fresh]);

    const destroy = await box.run(['destroy', '-f', file]);
    expect(destroy.exitCode, destroy.stderr).toBe(0);
    expect(qemusWithPidfile(pidfile)).toHaveLength(0);

    // Never signalled: still running, never ended by SIGTERM or SIGKILL (nor stopped by SIGSTOP).
    expect(other.exit).toBeUndefined();
    expect(procState(other.pid)).toBe('S');
  });
});

describe('a QEMU that exits while apply waits for it to be ready', () => {
  it(`makes apply exit 1 saying QEMU exited, not waiting out the ${READY_TIMEOUT} ready timeout; the next apply recovers`, {
    timeout: 120_000,
  }, async () => {
    const port = await freshPort();
    const file = path.join(box.root, 'dies', 'm.yaml');
    writeManifest(file, {
      web: bareVm({
        forwards: [{ host: port, guest: 80 }],
        ready: { tcp: port, timeout: READY_TIMEOUT },
      }),
    });
    const apply = box.spawnQvm(['apply', '-f', file]);
    await until(
      'apply waits for ready',
      () => apply.stdout().includes('web: waiting for ready') || !!apply.exit,
      20_000,
      () => apply.stdout(),
    );
    expect(apply.exit, apply.stderr()).toBeUndefined();
    const [qemu] = qemusWithPidfile(box.pidfile(file, 'web'));
    expect(qemu).toBeDefined();
    await killHard(qemu!);
    // The probe's deadline is hours away: only noticing the exit can end apply before the test's own.
    const { code } = await apply.exited;
    expect(code).toBe(1);
    expect(apply.stderr()).toMatch(/web: .*QEMU exited while waiting for tcp 127\.0\.0\.1:\d+/);
    expect(apply.stderr()).not.toContain('not ready within');

    writeManifest(file, { web: bareVm({ forwards: [{ host: port, guest: 80 }] }) });
    const next = await box.run(['apply', '-f', file]);
    expect(next.exitCode, next.stderr).toBe(0);
    expect(next.stdout).toContain('start: its QEMU exited');
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toHaveLength(1);
  });
});

describe('full and read-only folders', () => {
  it('a full disk folder: apply exits 1 naming the disk, and no file takes the disk name', {
    timeout: 30_000,
  }, async () => {
    const dir = path.join(box.root, 'full');
    const disks = mountTmpfs(path.join(dir, 'disks'), 'size=64k');
    const file = writeManifest(path.join(dir, 'm.yaml'), {
      web: bareVm({ disk: { path: 'disks/web.qcow2', size: '1G' } }),
    });
    const r = await box.run(['apply', '-f', file]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/error: web: creating disks\/web\.qcow2: .*No space left on device/);
    expect(hasStackTrace(r.stderr)).toBe(false);
    // Nothing under the final name, and no temporary left either.
    expect(readdirSync(disks)).toEqual([]);
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toHaveLength(0);
  });

  it('a read-only disk folder: apply exits 1 with "Read-only file system"', { timeout: 30_000 }, async () => {
    const dir = path.join(box.root, 'rodisk');
    const disks = mountTmpfs(path.join(dir, 'disks'), 'ro,size=1m');
    const file = writeManifest(path.join(dir, 'm.yaml'), {
      web: bareVm({ disk: { path: 'disks/web.qcow2', size: '1G' } }),
    });
    const r = await box.run(['apply', '-f', file]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/error: web: creating disks\/web\.qcow2: .*Read-only file system/);
    expect(hasStackTrace(r.stderr)).toBe(false);
    expect(readdirSync(disks)).toEqual([]);
  });

  it('a read-only runtime folder: apply exits 1 with a clear message naming the folder, no stack trace', {
    timeout: 30_000,
  }, async () => {
    // A runtime root 0700 on a tmpfs that is then remounted read-only; the KVM probe is cached there first.
    const mount = mountTmpfs(path.join(box.root, 'rort'), 'size=1m,mode=0700');
    const runtime = path.join(mount, 'rt');
    mkdirSync(runtime, { mode: 0o700 });
    const file = writeManifest(path.join(box.root, 'rortm', 'm.yaml'), { web: bareVm() });
    const warm = execQvm(['status', '-f', file], runtime);
    expect(warm.exitCode, warm.stderr).toBe(0);
    remount(mount, 'ro');
    const r = execQvm(['apply', '-f', file], runtime);
    expect(r.exitCode).toBe(1);
    expect(hasStackTrace(r.stderr)).toBe(false);
    // Names the folder it could not create (the manifest's namespace, under the runtime root)...
    expect(r.stderr).toContain(`cannot create the runtime folder ${runtime}/`);
    // ...and why: the file system is read-only (not "no such file or directory": the parent exists).
    expect(r.stderr).toMatch(/read-only file system/i);
    expect(r.stderr).not.toContain('ENOENT');
    await killQemusUnder(mount);
  });
});

/** qvm with another runtime root than the sandbox's, synchronously (for the read-only runtime test). */
function execQvm(args: string[], runtime: string): { exitCode: number; stdout: string; stderr: string } {
  try {
    const stdout = execFileSync(process.execPath, [QVM_BIN, ...args], {
      env: { ...process.env, QVM_RUNTIME_DIR: runtime, QVM_STATE_DIR: `${runtime}-state`, NO_COLOR: '1' },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000,
    });
    return { exitCode: 0, stdout, stderr: '' };
  } catch (error) {
    const e = error as { status: number | null; stdout: string; stderr: string };
    return { exitCode: e.status ?? -1, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('qvm killed in the middle of an apply', () => {
  it(`the next apply exits 0 and everything converges, disks valid; ${KILL_ROUNDS} rounds`, {
    timeout: 120_000,
  }, async () => {
    const vms = ['a', 'b', 'c'];
    let interrupted = 0;
    for (let round = 0; round < KILL_ROUNDS; round++) {
      const dir = path.join(box.root, `killed-${round}`);
      const file = writeManifest(
        path.join(dir, 'm.yaml'),
        Object.fromEntries(
          vms.map((vm) => [vm, bareVm({ disk: { path: `disks/${vm}.qcow2`, size: '256M' } })]),
        ),
      );
      const apply = box.spawnQvm(['apply', '-f', file]);
      const delay = KILL_DELAYS_MS[round]!;
      await until('apply prints its plan', () => apply.stdout().includes('Plan:') || !!apply.exit, 20_000);
      await new Promise((resolve) => setTimeout(resolve, delay));
      if (!apply.exit) apply.child.kill('SIGKILL');
      await apply.exited;
      if (apply.exit?.signal === 'SIGKILL' && !apply.stdout().includes('Apply:')) interrupted++;

      const next = await box.run(['apply', '-f', file]);
      expect(next.exitCode, `round ${round} (killed after ${delay} ms): ${next.stderr}`).toBe(0);
      for (const vm of vms) {
        expect(qemusWithPidfile(box.pidfile(file, vm)), `round ${round}: QEMUs of ${vm}`).toHaveLength(1);
        const disk = path.join(dir, 'disks', `${vm}.qcow2`);
        // -U: the running QEMU holds the image's lock; check reads it consistently.
        const check = execFileSync('qemu-img', ['check', '-U', disk], { encoding: 'utf8' });
        expect(check, `round ${round}: ${disk}`).toContain('No errors were found on the image.');
      }
      const again = await box.run(['plan', '-f', file]);
      expect(again.stdout, `round ${round}`).toContain('No changes.');
      await killQemusUnder(dir);
    }
    // The kills landed in the middle of the work, not after it.
    expect(interrupted).toBeGreaterThan(0);
  });
});
