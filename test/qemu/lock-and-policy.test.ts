/**
 * The namespace lock for `qvm destroy` and `qvm watch` (apply's is in reliability/concurrency.test.ts), and
 * `restart: never` under watch, against real QEMU. The lock holder is a process that takes the lock with
 * qvm's own lock module, as a running `qvm apply` does (holdLock in reliability/support.ts).
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killWatches, startWatch, type WatchProcess } from '../helpers/watch.js';
import {
  bareVm,
  holdLock,
  isRunning,
  killHard,
  qemusWithPidfile,
  sandbox,
  statusJson,
  until,
  warmUp,
  writeManifest,
} from '../reliability/support.js';

const box = sandbox('qlp');

beforeAll(() => warmUp(box));
afterAll(async () => {
  await killWatches();
  await box.cleanup();
});

describe.concurrent('the lock and qvm destroy', () => {
  it('--no-wait fails naming the holder and stops nothing; a plain destroy waits, then stops the VM', {
    timeout: 90_000,
  }, async () => {
    const dir = path.join(box.root, 'destroy');
    const file = writeManifest(path.join(dir, 'm.yaml'), { web: bareVm() });
    expect((await box.run(['apply', '-f', file], dir)).exitCode).toBe(0);
    const pid = box.readPid(file, 'web');
    const holder = await holdLock(file, box.runtime);

    const nowait = await box.run(['destroy', '--no-wait', '-f', file], dir);
    expect(nowait.exitCode).toBe(1);
    expect(nowait.stderr).toContain(`error: qvm apply (pid ${holder.pid}, since `);
    expect(nowait.stderr).toContain('not waiting (--no-wait)');
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toEqual([pid]);

    const destroy = box.spawnQvm(['destroy', '-f', file], dir);
    await until(
      'destroy says it waits for the holder',
      () => destroy.stderr().includes(`waiting for qvm apply (pid ${holder.pid}`) || !!destroy.exit,
      30_000,
    );
    expect(destroy.exit, destroy.stderr()).toBeUndefined();
    // While it waits, the VM runs on.
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toEqual([pid]);
    holder.child.kill('SIGTERM');
    await holder.exited;
    expect((await destroy.exited).code, destroy.stderr()).toBe(0);
    expect(destroy.stdout()).toContain('web: destroyed');
    expect(isRunning(pid)).toBe(false);
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toEqual([]);
  });
});

describe.concurrent('the lock and qvm watch', () => {
  let w: WatchProcess | undefined;
  afterAll(async () => {
    await w?.stop('SIGKILL');
  });

  it('a pass waits for the holder, says so as an event, starts nothing meanwhile, then applies', {
    timeout: 90_000,
  }, async () => {
    const dir = path.join(box.root, 'watch-lock');
    const file = writeManifest(path.join(dir, 'm.yaml'), { web: bareVm() });
    const holder = await holdLock(file, box.runtime);
    w = startWatch(['-f', file, '--json', '--interval', '60'], { cwd: dir, runtime: box.runtime });
    const waiting = await w.waitForEvent(
      (e) => e.event === 'waiting-for-lock',
      30_000,
      0,
      'waiting-for-lock',
    );
    expect(waiting).toMatchObject({ pass: 1 });
    expect(waiting.holder).toMatch(new RegExp(`^qvm apply \\(pid ${holder.pid}, since `));
    expect(w.events.filter((e) => ['plan', 'action-applied', 'pass-finished'].includes(e.event))).toEqual([]);
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toEqual([]);
    holder.child.kill('SIGTERM');
    await holder.exited;
    const applied = await w.waitForEvent((e) => e.event === 'action-applied', 30_000, 0, 'the start');
    expect(applied).toMatchObject({ pass: 1, vm: 'web' });
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toHaveLength(1);
    expect(await w.stop('SIGTERM')).toMatchObject({ code: 0 });
    expect((await box.run(['destroy', '-f', file], dir)).exitCode).toBe(0);
  });
});

describe.concurrent('restart: never under watch', () => {
  let w: WatchProcess | undefined;
  afterAll(async () => {
    await w?.stop('SIGKILL');
  });

  it('a VM whose QEMU died is left down, said once; an explicit apply starts it', {
    timeout: 90_000,
  }, async () => {
    const dir = path.join(box.root, 'never');
    const file = writeManifest(path.join(dir, 'm.yaml'), { web: bareVm({ restart: 'never' }) });
    w = startWatch(['-f', file, '--json', '--interval', '2'], { cwd: dir, runtime: box.runtime });
    expect(await w.waitForPassEnd(1, 30_000)).toMatchObject({ changes: 1, failed: 0 });
    const pid = box.readPid(file, 'web');
    const from = w.mark();
    await killHard(pid);
    const exited = await w.waitForEvent((e) => e.event === 'vm-exited', 30_000, from, 'vm-exited');
    expect(exited).toMatchObject({ vm: 'web', detail: 'its QEMU process ended' });
    const note = await w.waitForEvent((e) => e.event === 'note', 30_000, from, 'the note');
    expect(note).toMatchObject({
      vm: 'web',
      message: 'died (its QEMU exited); restart: never leaves it down',
    });
    // Two resyncs later it is still down, and the note was not repeated.
    await w.waitForPassEnd(note.pass + 2, 30_000);
    expect(w.since(from).filter((e) => ['plan', 'action-applied', 'backoff'].includes(e.event))).toEqual([]);
    expect(w.since(from).filter((e) => e.event === 'note')).toHaveLength(1);
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toEqual([]);
    expect((await statusJson(box, file))[0]).toMatchObject({ name: 'web', state: 'stopped (crashed)' });

    // apply is an explicit request: it starts the VM whatever its restart policy.
    const apply = await box.run(['apply', '-f', file], dir);
    expect(apply.exitCode, apply.stderr).toBe(0);
    expect(apply.stdout).toMatch(/web: started \(pid \d+\)/);
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toHaveLength(1);
    expect(w.exit).toBeUndefined();
    expect(await w.stop('SIGTERM')).toMatchObject({ code: 0 });
  });
});
