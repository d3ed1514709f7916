/**
 * Concurrent qvm runs on one manifest: the namespace lock serialises them, so they never start a VM twice;
 * a qvm that finds the lock taken waits (saying for whom) or, with --no-wait, fails without waiting, naming
 * the holder; a lock whose holder was killed never blocks anyone. Behaviour only: what was printed, the exit
 * status, whether the holder was still there, how many QEMUs run. How fast the lock is taken is not asserted.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bareVm,
  holdLock,
  killHard,
  qemusWithPidfile,
  sandbox,
  until,
  warmUp,
  writeManifest,
} from './support.js';

/** How many `qvm apply` run at once on the same manifest. */
const CONCURRENT_APPLIES = 5;
/** How many times the whole concurrent round is repeated, each from no VM running. */
const CONCURRENCY_ROUNDS = 3;

const box = sandbox('qrc');

beforeAll(() => warmUp(box));
afterAll(() => box.cleanup());

describe('concurrent applies', () => {
  it(`${CONCURRENT_APPLIES} concurrent \`qvm apply\` of 3 VMs all exit 0 and leave exactly one QEMU per VM, ${CONCURRENCY_ROUNDS} rounds`, {
    timeout: 120_000,
  }, async () => {
    const vms = ['a', 'b', 'c'];
    const file = writeManifest(
      path.join(box.root, 'five', 'm.yaml'),
      Object.fromEntries(vms.map((v) => [v, bareVm()])),
    );
    for (let round = 1; round <= CONCURRENCY_ROUNDS; round++) {
      const results = await Promise.all(
        Array.from({ length: CONCURRENT_APPLIES }, () => box.run(['apply', '-f', file])),
      );
      // Soft: every round runs, so the one-QEMU-per-VM invariant is checked even when exit codes are wrong.
      results.forEach((r, i) => {
        expect.soft(r.exitCode, `round ${round}, apply ${i + 1}: ${r.stderr}`).toBe(0);
      });
      for (const vm of vms) {
        expect(qemusWithPidfile(box.pidfile(file, vm)), `round ${round}: QEMUs of ${vm}`).toHaveLength(1);
      }
      const destroy = await box.run(['destroy', '-f', file]);
      expect(destroy.exitCode, destroy.stderr).toBe(0);
      for (const vm of vms) expect(qemusWithPidfile(box.pidfile(file, vm))).toHaveLength(0);
    }
  });
});

describe('a lock held by another qvm', () => {
  it('`qvm apply --no-wait` exits 1 without waiting for the holder, naming it', {
    timeout: 60_000,
  }, async () => {
    const file = writeManifest(path.join(box.root, 'nowait', 'm.yaml'), { solo: bareVm() });
    const holder = await holdLock(file, box.runtime);
    const r = await box.run(['apply', '--no-wait', '-f', file]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`qvm apply (pid ${holder.pid}`);
    expect(r.stderr).toContain('not waiting (--no-wait)');
    expect(r.stderr).not.toContain('waiting for');
    // It did not wait: the holder, which never lets go by itself, still holds the lock.
    expect(holder.exit).toBeUndefined();
    expect(qemusWithPidfile(box.pidfile(file, 'solo'))).toHaveLength(0);
    holder.child.kill('SIGTERM');
    await holder.exited;
  });

  it('a plain `qvm apply` says it is waiting for the holder, and completes once the holder exits', {
    timeout: 60_000,
  }, async () => {
    const file = writeManifest(path.join(box.root, 'wait', 'm.yaml'), { solo: bareVm() });
    const holder = await holdLock(file, box.runtime);
    const apply = box.spawnQvm(['apply', '-f', file]);
    await until(
      'apply says it waits for the holder',
      () => apply.stderr().includes(`waiting for qvm apply (pid ${holder.pid}`) || !!apply.exit,
      20_000,
    );
    expect(apply.exit, `apply ended instead of waiting: ${apply.stderr()}`).toBeUndefined();
    // While it waits, it changes nothing.
    expect(qemusWithPidfile(box.pidfile(file, 'solo'))).toHaveLength(0);
    holder.child.kill('SIGTERM');
    await holder.exited;
    const { code } = await apply.exited;
    expect(code, apply.stderr()).toBe(0);
    expect(apply.stdout()).toContain('solo: started (pid');
    expect(qemusWithPidfile(box.pidfile(file, 'solo'))).toHaveLength(1);
  });
});

describe('a lock left by a killed qvm', () => {
  it('never blocks: after SIGKILL of the holder, `qvm apply --no-wait` takes the lock and succeeds', {
    timeout: 60_000,
  }, async () => {
    const file = writeManifest(path.join(box.root, 'killed', 'm.yaml'), { solo: bareVm() });
    const holder = await holdLock(file, box.runtime);
    await killHard(holder.pid);
    const r = await box.run(['apply', '--no-wait', '-f', file]);
    // With --no-wait a lock still held would be exit 1 naming the holder.
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(qemusWithPidfile(box.pidfile(file, 'solo'))).toHaveLength(1);
  });

  it('never blocks a plain `qvm apply` either: no "waiting" message, one QEMU', {
    timeout: 60_000,
  }, async () => {
    const file = writeManifest(path.join(box.root, 'killed2', 'm.yaml'), { solo: bareVm() });
    const holder = await holdLock(file, box.runtime);
    await killHard(holder.pid);
    const r = await box.run(['apply', '-f', file]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('waiting for');
    expect(qemusWithPidfile(box.pidfile(file, 'solo'))).toHaveLength(1);
  });
});
