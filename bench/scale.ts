/**
 * qvm with 100 running VMs on one host. A no-op `qvm apply` and `qvm status` against 1 and against 100 bare
 * VMs, interleaved (both fleets run side by side, each under its own runtime root, so both are measured on
 * the same loaded machine). Then `qvm watch` over the 100: how long a resync pass takes (`--interval 2s`,
 * `pass-finished` durationMs), its CPU use between passes (a watch with a long interval, /proc/PID/stat over
 * 20 s), and its resident memory. Bare VMs: -nodefaults, 32M, no NIC boot ROM, idle before timing.
 * Takes several minutes; run with `npm run bench -- scale`.
 */

import {
  freePortsDistinct,
  residentBytes,
  sleep,
  startWatch,
  type WatchProcess,
} from '../test/helpers/watch.js';
import { bareVm, type Fleet, noChanges, startFleet } from './fleet.js';
import {
  cpuMs,
  describeMachine,
  expectOk,
  interleave,
  machineInfo,
  progress,
  type Results,
  ratio,
  report,
  round,
  run,
  runCleanups,
  series,
  seriesOf,
  target,
  writeResults,
} from './lib.js';

const MANY = 100;
const BARE_OBSERVE = new URL('./bare-observe.mjs', import.meta.url).pathname;
const ROUNDS = 20;
const RESYNC_SAMPLE_MS = 30_000;
const IDLE_SAMPLE_MS = 20_000;

const machine = machineInfo();
console.log(`scale: 1 vs ${MANY} running VMs on ${describeMachine(machine)}`);
const watches: WatchProcess[] = [];

/** Every line of `qvm status` that shows a running VM. */
const runningRows = (out: string) => out.split('\n').filter((l) => /^vm\d+\s+running\s/.test(l)).length;

try {
  const ports = await freePortsDistinct(MANY + 1);
  const fleetOf = (label: string, count: number) =>
    startFleet(
      label,
      Object.fromEntries(
        Array.from({ length: count }, (_, i) => [
          `vm${i}`,
          bareVm({ minimal: true, forwardPort: ports.pop()! }),
        ]),
      ),
    );
  const one: Fleet = await fleetOf('scale1', 1);
  const many: Fleet = await fleetOf(`scale${MANY}`, MANY);
  console.log(
    `  ${MANY} VMs started by one qvm apply in ${(many.startMs / 1000).toFixed(1)} s; idle: ${many.idle.totalPercent}% of a core`,
  );

  const labels = {
    apply1: 'qvm apply (no changes), 1 VM',
    applyMany: `qvm apply (no changes), ${MANY} VMs`,
    status1: 'qvm status, 1 VM',
    statusMany: `qvm status, ${MANY} VMs`,
    bare1: 'bare QMP observation script (bench/bare-observe.mjs), 1 VM',
    bareMany: `bare QMP observation script (bench/bare-observe.mjs), ${MANY} VMs`,
  };
  const bareObserve = async (fleet: Fleet, count: number) =>
    expectOk(
      'bench/bare-observe.mjs',
      await run(process.execPath, [BARE_OBSERVE, fleet.runtime]),
      (out) => out.trim() === `observed ${count} VMs`,
    );
  const samples = await interleave(
    {
      [labels.apply1]: () => one.qvm(['apply', '-f', 'm.yaml'], noChanges),
      [labels.applyMany]: () => many.qvm(['apply', '-f', 'm.yaml'], noChanges),
      [labels.status1]: () => one.qvm(['status', '-f', 'm.yaml'], (out) => runningRows(out) === 1),
      [labels.statusMany]: () => many.qvm(['status', '-f', 'm.yaml'], (out) => runningRows(out) === MANY),
      [labels.bare1]: () => bareObserve(one, 1),
      [labels.bareMany]: () => bareObserve(many, MANY),
    },
    ROUNDS,
    { onRound: progress('scale') },
  );

  // qvm watch over the 100: resync passes every 2 s, memory sampled every 250 ms.
  const resync = startWatch(['-f', 'm.yaml', '--json', '--interval', '2s'], {
    cwd: many.dir,
    runtime: many.runtime,
  });
  watches.push(resync);
  const first = await resync.waitForPassEnd(1, 300_000);
  if (first.changes !== 0 || first.failed !== 0)
    throw new Error(`first watch pass changed something: ${JSON.stringify(first)}`);
  const from = resync.mark();
  const rss: number[] = [];
  const resyncCpuStart = cpuMs(resync.pid)!;
  const resyncStart = Date.now();
  while (Date.now() - resyncStart < RESYNC_SAMPLE_MS) {
    const bytes = residentBytes(resync.pid);
    if (bytes === undefined) throw new Error(`qvm watch ended: ${resync.stderr}`);
    rss.push(bytes / 2 ** 20);
    await sleep(250);
  }
  const resyncCpuPercent = ((cpuMs(resync.pid)! - resyncCpuStart) / (Date.now() - resyncStart)) * 100;
  const passes = resync.since(from).filter((e) => e.event === 'pass-finished');
  const problems = resync
    .since(from)
    .filter(
      (e) => ['error', 'action-failed'].includes(e.event) || (e.event === 'pass-finished' && e.changes !== 0),
    );
  if (passes.length === 0) throw new Error('no resync pass finished while sampling');
  if (problems.length > 0)
    throw new Error(`resync passes were not no-ops: ${JSON.stringify(problems.slice(0, 3))}`);
  await resync.stop('SIGTERM');

  // CPU between passes: a watch whose next resync is 10 minutes away, after its first pass.
  const quiet = startWatch(['-f', 'm.yaml', '--json', '--interval', '10m'], {
    cwd: many.dir,
    runtime: many.runtime,
  });
  watches.push(quiet);
  await quiet.waitForPassEnd(1, 300_000);
  await sleep(2000);
  const quietMark = quiet.mark();
  const cpuWindows: number[] = [];
  const quietCpuStart = cpuMs(quiet.pid)!;
  const quietStart = Date.now();
  let previous = quietCpuStart;
  let previousAt = quietStart;
  while (Date.now() - quietStart < IDLE_SAMPLE_MS) {
    await sleep(1000);
    const now = cpuMs(quiet.pid);
    if (now === undefined) throw new Error(`qvm watch ended: ${quiet.stderr}`);
    const bytes = residentBytes(quiet.pid);
    if (bytes !== undefined) rss.push(bytes / 2 ** 20);
    cpuWindows.push(((now - previous) / (Date.now() - previousAt)) * 100);
    previous = now;
    previousAt = Date.now();
  }
  const quietCpuPercent = ((previous - quietCpuStart) / (previousAt - quietStart)) * 100;
  const quietPasses = quiet.since(quietMark).filter((e) => e.event === 'pass-started').length;
  await quiet.stop('SIGTERM');

  const all = {
    ...seriesOf(samples),
    [`qvm watch resync pass, ${MANY} VMs`]: series(
      passes.map((e) => e.durationMs as number),
      'ms',
      {
        firstPassMs: first.durationMs,
      },
    ),
    [`qvm watch CPU between passes, ${MANY} VMs (1 s windows)`]: series(cpuWindows, '%', {
      overallPercent: round(quietCpuPercent, 2),
      passesWhileSampling: quietPasses,
    }),
    [`qvm watch VmRSS, ${MANY} VMs`]: series(rss, 'MB'),
  };
  const results: Results = {
    title: `qvm with ${MANY} running VMs: no-op apply and status against 1 VM, and qvm watch`,
    machine,
    params: {
      rounds: ROUNDS,
      vm: bareVm({ minimal: true, forwardPort: 1 }),
      startMs: { '1': round(one.startMs), [String(MANY)]: round(many.startMs) },
      idleBeforeTiming: { '1': one.idle, [String(MANY)]: many.idle },
      resyncSampleMs: RESYNC_SAMPLE_MS,
      idleSampleMs: IDLE_SAMPLE_MS,
      watchCpuWithResyncEvery2sPercent: round(resyncCpuPercent, 2),
    },
    series: all,
    ratios: {
      [`apply ${MANY} / 1`]: ratio(all, labels.applyMany, labels.apply1),
      [`status ${MANY} / 1`]: ratio(all, labels.statusMany, labels.status1),
      [`bare observation ${MANY} / 1`]: ratio(all, labels.bareMany, labels.bare1),
    },
    notes: [
      `The bare observation script asks every VM what a no-op apply asks (capabilities, then query-status, info usernet and query-block in one write), all VMs at once, and nothing else: its ${MANY}-VM time less its 1-VM time is what the other VMs cost QEMU and the kernel on this machine, a floor for any client.`,
      `Each VM has one forward (host port -> guest 22); forward 1 in params.vm stands for a free port. Each fleet has its own runtime root.`,
      'CPU comes from /proc/PID/stat in clock ticks of 10 ms, so a 1 s window resolves 1% of a core; the target uses the whole 20 s (overallPercent).',
      `Memory samples: every 250 ms during ${RESYNC_SAMPLE_MS / 1000} s of resyncs every 2 s, then every 1 s in a watch with a 10-minute interval.`,
    ],
  };
  results.targets = [
    target(`no-op apply, ${MANY} VMs <= 2× 1 VM`, { ratio: `apply ${MANY} / 1` }, { max: 2 }, results),
    target(`status, ${MANY} VMs <= 2× 1 VM`, { ratio: `status ${MANY} / 1` }, { max: 2 }, results),
    target(
      `watch resync pass with ${MANY} VMs <= 1 s (median)`,
      { series: `qvm watch resync pass, ${MANY} VMs`, stat: 'median' },
      { max: 1000 },
      results,
    ),
    target(
      `watch CPU between passes <= 1% of one core`,
      { series: `qvm watch CPU between passes, ${MANY} VMs (1 s windows)`, stat: 'overallPercent' },
      { max: 1 },
      results,
    ),
    target(
      `watch resident memory <= 100 MB`,
      { series: `qvm watch VmRSS, ${MANY} VMs`, stat: 'max' },
      { max: 100 },
      results,
    ),
  ];
  report(writeResults('scale', results), results);
} finally {
  for (const w of watches) await w.stop('SIGKILL');
  await runCleanups();
}
