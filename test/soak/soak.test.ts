/**
 * The soak test (`npm run test:soak`, never in `npm test`): `qvm watch --json` keeps 10 VMs of the demo guest
 * converged while a driver, for as long as it takes to kill QVM_SOAK_KILLS (100) QEMUs:
 * - kills a random running VM's QEMU with SIGKILL, after writing a mark to its disk through the guest
 *   (`GET /cgi-bin/mark?N`: 64 KiB of byte N at 1 MiB, fsynced) and remembering it; the next time it picks
 *   that VM (brought back by watch, cold) it first checks the mark is still on the disk;
 * - edits the manifest: adds a forward to a VM, later removes it, and checks through the port each time;
 * - freezes a VM (SIGSTOP) until a watch pass reports it unresponsive, then thaws it (SIGCONT): it must keep
 *   its process, and no second QEMU may appear on its disk;
 * - kills `qvm watch` itself with SIGKILL in the middle of a pass (while it waits for a VM it brings back to be
 *   ready), then starts it again.
 * Afterwards: every VM runs exactly once (counted in /proc by its -pidfile), watch never exited but when the
 * driver killed it, and once the VMs are stopped every disk passes `qemu-img check` and holds its last mark.
 * The counts go to test/soak/results/soak.json (committed) and docs/reliability.md.
 *
 * Nothing is timed: the deadlines only keep a broken run from hanging, and the whole run is bounded by the
 * number of kills. Every QEMU and watch it started is killed when it ends, pass or fail.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { demoVm, freePorts, GUEST_HELLO, httpGet, tcpConnect, url } from '../helpers/env.js';
import { cmdline, isRunning, procState, qemusUnder, sleep, until } from '../helpers/processes.js';
import { killWatches, startWatch, type WatchProcess } from '../helpers/watch.js';
import { sandbox, writeManifest } from '../reliability/support.js';

const VMS = 10;
const KILLS = Number.parseInt(process.env.QVM_SOAK_KILLS ?? '100', 10);
/** One edit (a forward added, or removed again) every this many kills; as many freezes and watch kills. */
const EDIT_EVERY = 8;
const FREEZE_EVERY = 15;
const WATCH_KILL_EVERY = 20;
/** At most this many VMs are down at once (killed and not back yet), so the driver never starves the guests. */
const MAX_DOWN = 3;
/** watch's monitor deadline: a frozen VM is reported unresponsive after it, and must be left alone. */
const WATCH_TIMEOUT = '2s';
const RESULTS = fileURLToPath(new URL('results/soak.json', import.meta.url));

const box = sandbox('qsk');
afterAll(async () => {
  await killWatches();
  await box.cleanup();
});

const names = Array.from({ length: VMS }, (_, i) => `vm${i}`);

/** A small deterministic random sequence (no Math.random: a failing run can be replayed with its seed). */
function random(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
}

describe('soak: qvm watch over 10 demo guests, while its VMs and watch itself are killed', () => {
  it(`survives ${KILLS} kills, edits, freezes and watch kills; every VM runs once, every disk is sound`, {
    timeout: 45 * 60_000,
  }, async () => {
    const seed = Number.parseInt(process.env.QVM_SOAK_SEED ?? String(Date.now() % 1_000_000), 10);
    const rand = random(seed);
    const pick = <T>(list: T[]): T => list[Math.floor(rand() * list.length)]!;
    const began = Date.now();
    const dir = path.join(box.root, 'fleet');
    const file = path.join(dir, 'm.yaml');
    const ports = await freePorts(VMS + 1);
    const extraPort = ports[VMS]!;
    const portOf = new Map(names.map((n, i) => [n, ports[i]!]));
    /** Which VM has the extra forward now, if any. */
    let extraOn: string | undefined;
    const writeFleet = () =>
      writeManifest(
        file,
        Object.fromEntries(
          names.map((n) => [
            n,
            demoVm(n, {
              memory: '128M',
              // A start waits until the guest serves: a pass that brings a VM back lasts its boot, so a kill of
              // watch during that pass lands mid-pass.
              ready: { http: { port: portOf.get(n)! }, timeout: '10m' },
              forwards: [
                { host: portOf.get(n)!, guest: 80 },
                ...(extraOn === n ? [{ host: extraPort, guest: 80 }] : []),
              ],
            }),
          ]),
        ),
      );
    mkdirSync(dir, { recursive: true });
    writeFleet();

    const counts = {
      kills: 0,
      recoveries: 0,
      marksWritten: 0,
      marksVerified: 0,
      edits: 0,
      freezes: 0,
      watchKills: 0,
      /** Of those, kills that came while the pass was still starting the VM (before its action or end). */
      watchKillsMidPass: 0,
      watchStarts: 0,
      unexpectedWatchExits: 0,
      passes: 0,
      backoffs: 0,
      unresponsiveReports: 0,
    };
    const problems: string[] = [];
    const pidfile = (vm: string) => box.pidfile(file, vm);
    const diskOf = (vm: string) => path.join(dir, 'disks', `${vm}.qcow2`);
    /** The QEMU pid of VM from its pidfile, when that process is its QEMU and runs. */
    const pidOf = (vm: string): number | undefined => {
      try {
        const pid = Number.parseInt(readFileSync(pidfile(vm), 'utf8').trim(), 10);
        return isRunning(pid) && cmdline(pid).includes(pidfile(vm)) ? pid : undefined;
      } catch {
        return undefined;
      }
    };
    const answers = async (port: number) => {
      try {
        const { status, body } = await httpGet(url(port), 3000);
        return status === 200 && body.includes(GUEST_HELLO);
      } catch {
        return false;
      }
    };
    /** The last mark written to each VM's disk. */
    const marks = new Map<string, number>();
    const holdsMark = (vm: string, n: number, shared: boolean) => {
      const out = execFileSync(
        'qemu-io',
        [...(shared ? ['-U'] : []), '-r', '-f', 'qcow2', '-c', `read -P ${n} 1M 64k`, diskOf(vm)],
        { encoding: 'utf8' },
      );
      return !out.includes('Pattern verification failed');
    };

    // ---- watch, its events, and its exits
    const watches: WatchProcess[] = [];
    let watch!: WatchProcess;
    let killedByDriver = new Set<WatchProcess>();
    const startWatching = () => {
      watch = startWatch(['-f', file, '--json', '--interval', '10s', '--timeout', WATCH_TIMEOUT], {
        cwd: dir,
        runtime: box.runtime,
      });
      watches.push(watch);
      counts.watchStarts++;
      const me = watch;
      void me.exited.then((exit) => {
        if (!killedByDriver.has(me)) {
          counts.unexpectedWatchExits++;
          problems.push(`watch exited by itself: ${JSON.stringify(exit)}: ${me.stderr.slice(-2000)}`);
        }
      });
    };
    startWatching();
    await until(
      'all 10 VMs answer',
      async () => (await Promise.all(names.map((n) => answers(portOf.get(n)!)))).every(Boolean),
      600_000,
      () => `${watch.stderr}`,
    );

    // ---- the driver
    let nextMark = 1;
    const down = new Set<string>();
    const refreshDown = async () => {
      for (const vm of [...down]) if (pidOf(vm) && (await answers(portOf.get(vm)!))) down.delete(vm);
    };
    const killOne = async () => {
      await until(
        'few enough VMs down',
        async () => {
          await refreshDown();
          return down.size < MAX_DOWN;
        },
        600_000,
      );
      const up = names.filter((n) => !down.has(n));
      const vm = pick(up);
      const port = portOf.get(vm)!;
      await until(`${vm} answers`, () => answers(port), 600_000);
      const pid = pidOf(vm);
      if (!pid) throw new Error(`${vm} answers but has no QEMU of its own`);
      // What was written before the last kill of this VM is still on its disk.
      const last = marks.get(vm);
      if (last !== undefined) {
        if (holdsMark(vm, last, true)) counts.marksVerified++;
        else problems.push(`${vm}: mark ${last} lost`);
      }
      const n = nextMark;
      nextMark = (nextMark % 255) + 1;
      const written = await httpGet(url(port, `/cgi-bin/mark?${n}`), 60_000);
      if (written.status !== 200) throw new Error(`${vm}: mark ${n}: HTTP ${written.status}`);
      marks.set(vm, n);
      counts.marksWritten++;
      process.kill(pid, 'SIGKILL');
      await until(`${vm}'s QEMU ${pid} gone`, () => !isRunning(pid), 30_000);
      down.add(vm);
      counts.kills++;
      return vm;
    };
    const edit = async () => {
      const before = extraOn;
      extraOn = before ? undefined : pick(names.filter((n) => !down.has(n)));
      writeFleet();
      counts.edits++;
      if (extraOn) {
        await until(`the extra forward on ${extraOn} answers`, () => answers(extraPort), 300_000);
      } else {
        await until(
          'the extra forward is gone',
          async () => (await tcpConnect(extraPort)) === 'refused',
          300_000,
        );
      }
    };
    const freeze = async () => {
      const vm = pick(names.filter((n) => !down.has(n) && pidOf(n)));
      const pid = pidOf(vm)!;
      const from = watch.mark();
      process.kill(pid, 'SIGSTOP');
      counts.freezes++;
      try {
        // A save of the same manifest asks watch for a pass: it must find the VM unresponsive and leave it.
        writeFleet();
        const reported = await watch.waitForEvent(
          (e) => e.event === 'error' && String(e.message).startsWith(`${vm}: `),
          120_000,
          from,
          `${vm} reported unresponsive`,
        );
        if (!String(reported.message).includes('does not answer on its monitor'))
          problems.push(`${vm} frozen: ${reported.message}`);
        counts.unresponsiveReports++;
        await watch.waitForPassEnd(reported.pass, 120_000);
        if (qemusUnder(box.vmDir(file, vm)).length !== 1) problems.push(`${vm}: a second QEMU while frozen`);
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      await until(`${vm} thawed`, () => procState(pid) !== 'T', 30_000);
      await until(`${vm} answers after the thaw`, () => answers(portOf.get(vm)!), 120_000);
      if (pidOf(vm) !== pid) problems.push(`${vm}: restarted after a freeze (pid ${pid} -> ${pidOf(vm)})`);
    };
    const killWatch = async () => {
      // Mid-pass: kill a VM so that watch starts a pass to bring it back, and kill watch during that pass.
      const from = watch.mark();
      const vm = await killOne();
      // The pass that plans the VM's start, which then waits for the guest to be ready.
      const plan = await watch.waitForEvent(
        (e) => e.event === 'plan' && e.vm === vm,
        120_000,
        from,
        `the plan to start ${vm}`,
      );
      killedByDriver = new Set([...killedByDriver, watch]);
      watch.child.kill('SIGKILL');
      const finished = watch.events.some(
        (e) => (e.event === 'pass-finished' || e.event === 'action-applied') && e.pass === plan.pass,
      );
      if (!finished) counts.watchKillsMidPass++;
      await watch.exited;
      counts.watchKills++;
      startWatching();
    };

    for (let i = 1; counts.kills < KILLS; i++) {
      if (i % WATCH_KILL_EVERY === 0) await killWatch();
      else await killOne();
      if (i % EDIT_EVERY === 0) await edit();
      if (i % FREEZE_EVERY === 0) await freeze();
      await sleep(200 + rand() * 800);
    }

    // ---- afterwards: everything back, exactly once
    await until(
      'every VM answers again',
      async () => (await Promise.all(names.map((n) => answers(portOf.get(n)!)))).every(Boolean),
      600_000,
    );
    const qemusPerVm = Object.fromEntries(
      names.map((n) => [
        n,
        qemusUnder(box.vmDir(file, n)).filter((p) => cmdline(p).includes(pidfile(n))).length,
      ]),
    );
    for (const [i, w] of watches.entries()) {
      counts.passes += w.events.filter((e) => e.event === 'pass-started').length;
      counts.backoffs += w.events.filter((e) => e.event === 'backoff').length;
      // Starts of a VM that had been killed: all of them but the first watch's first pass (the fleet's start).
      counts.recoveries += w.events.filter(
        (e) =>
          e.event === 'action-applied' &&
          /^started \(pid \d+\)/.test(String(e.summary)) &&
          (i > 0 || e.pass > 1),
      ).length;
    }
    // The one exit of a watch the driver did not kill with SIGKILL: its own SIGTERM, which must be exit 0.
    killedByDriver = new Set([...killedByDriver, watch]);
    const finalExit = await watch.stop('SIGTERM');
    // The VMs are stopped gracefully, then their disks are checked without sharing.
    const destroy = await box.run(['destroy', '-f', file], dir);
    const disks = names.map((vm) => {
      let check: string;
      try {
        execFileSync('qemu-img', ['check', '-f', 'qcow2', diskOf(vm)], { encoding: 'utf8' });
        check = 'no errors';
      } catch (error) {
        const status = (error as { status?: number }).status;
        const out = String((error as { stdout?: string }).stdout ?? '');
        // 3: leaked clusters only (space, not data); anything else is corruption or a failure.
        check =
          status === 3
            ? `leaked clusters only: ${/(\d+) leaked clusters/.exec(out)?.[1]}`
            : `failed (${status}): ${out}`;
      }
      const mark = marks.get(vm);
      return {
        vm,
        check,
        lastMark: mark ?? null,
        markIntact: mark === undefined ? null : holdsMark(vm, mark, false),
      };
    });

    const results = {
      date: new Date().toISOString(),
      seed,
      host: {
        cores: os.cpus().length,
        loadAverageAtEnd: os.loadavg().map((l) => Number(l.toFixed(2))),
        node: process.version,
        qemu: execFileSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' }).split('\n')[0],
      },
      vms: VMS,
      ...counts,
      durationMs: Date.now() - began,
      qemusPerVm,
      finalWatchExit: finalExit,
      destroyExit: destroy.exitCode,
      disks,
      problems,
    };
    mkdirSync(path.dirname(RESULTS), { recursive: true });
    writeFileSync(RESULTS, `${JSON.stringify(results, null, 2)}\n`);
    console.log(`soak results (${RESULTS}):\n${JSON.stringify(results, null, 2)}`);

    expect(problems).toEqual([]);
    expect(counts.kills).toBe(KILLS);
    expect(counts.unexpectedWatchExits).toBe(0);
    expect(counts.watchKillsMidPass).toBe(counts.watchKills);
    expect(Object.values(qemusPerVm)).toEqual(names.map(() => 1));
    expect(finalExit).toMatchObject({ code: 0 });
    expect(destroy.exitCode, destroy.stderr).toBe(0);
    for (const d of disks) {
      expect(d.check, d.vm).toMatch(/^(no errors|leaked clusters only)/);
      if (d.lastMark !== null) expect(d.markIntact, `${d.vm}: mark ${d.lastMark}`).toBe(true);
    }
    // Every kill was recovered by watch (the kills of watch's own pass are recovered by the next watch).
    expect(counts.recoveries).toBeGreaterThanOrEqual(counts.kills - counts.watchKills);
  });
});
