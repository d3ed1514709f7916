/**
 * Time to ready for the demo guest: a cold boot against a warm start from its `snapshot:`, each measured from
 * starting `qvm apply` to the guest answering HTTP through its forward (polled every 20 ms, 300 ms per try),
 * so qvm's own start-up and observation are counted too. Cold runs start from no disk (`destroy
 * --delete-disks`), warm runs from the snapshot the last cold run saved (`destroy` keeps the disk). The two
 * are interleaved (the order shuffled within each round); the destroy before each run is not timed.
 * Run with `npm run bench -- warm` (needs the demo guest: `bash guest/build.sh`).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import {
  demoVm,
  freePortsDistinct,
  killQemusUnder,
  privateDir,
  runWhilePolling,
  toPort80,
  writeVms,
} from '../test/helpers/watch.js';
import {
  describeMachine,
  interleave,
  machineInfo,
  onCleanup,
  progress,
  type Results,
  ratio,
  report,
  runCleanups,
  seriesOf,
  target,
  writeResults,
} from './lib.js';

const ROUNDS = 10;
const TARGET_RATIO = 3;

const bin = new URL('../bin/qvm.js', import.meta.url).pathname;
const runtime = privateDir('qvmbh-');
const dir = mkdtempSync(path.join(tmpdir(), 'qvm-bench-warm-'));
const env = { ...process.env, QVM_RUNTIME_DIR: runtime, QVM_STATE_DIR: `${runtime}-state`, NO_COLOR: '1' };
const machine = machineInfo();
console.log(`warm: cold boot against warm start (demo guest) on ${describeMachine(machine)}`);
onCleanup(async () => {
  await killQemusUnder(runtime);
  rmSync(runtime, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
});

async function qvm(args: string[]) {
  const result = await execa('node', [bin, ...args], { env, cwd: dir, reject: false });
  if (result.exitCode !== 0)
    throw new Error(`qvm ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`);
  return result;
}

/** From starting `qvm apply` to the first HTTP answer, in ms; checks the apply did the expected kind of start. */
async function timedApply(port: number, expect: RegExp): Promise<number> {
  const run = await runWhilePolling(['apply', '-f', 'm.yaml'], { cwd: dir, runtime, port, untilMs: 60_000 });
  if (run.exitCode !== 0 || run.answers.length === 0)
    throw new Error(`apply failed or the guest never answered:\n${run.stdout}\n${run.stderr}`);
  if (!expect.test(run.stdout))
    throw new Error(`apply did not do what was expected (${expect}):\n${run.stdout}`);
  return run.answers[0]!.at - run.startedAt;
}

try {
  const [port] = (await freePortsDistinct(1)) as [number];
  writeVms(path.join(dir, 'm.yaml'), {
    web: demoVm('web', { snapshot: 'warm', forwards: toPort80(port), ready: { http: { port } } }),
  });
  await qvm(['status', '-f', 'm.yaml']); // the one-time KVM probe of a new runtime root, outside the timings

  // One cold boot first, so a warm start has its snapshot whichever order the first round takes.
  await qvm(['destroy', '-f', 'm.yaml', '--delete-disks']);
  await timedApply(port, /cold boot, then saves snapshot warm/);
  const labels = { cold: 'cold boot', warm: 'warm start (snapshot: warm)' };
  const samples = await interleave(
    {
      [labels.cold]: {
        before: () => qvm(['destroy', '-f', 'm.yaml', '--delete-disks']),
        run: () => timedApply(port, /cold boot, then saves snapshot warm/),
        selfTimed: true,
      },
      [labels.warm]: {
        before: () => qvm(['destroy', '-f', 'm.yaml']),
        run: () => timedApply(port, /start \(from snapshot warm\)/),
        selfTimed: true,
      },
    },
    ROUNDS,
    { warmup: 0, onRound: progress('warm') },
  );
  const series = seriesOf(samples);
  const results: Results = {
    title: 'Warm start against cold boot: from starting `qvm apply` to the demo guest answering HTTP',
    machine,
    params: { rounds: ROUNDS, guest: 'demo guest (guest/out), 256M, TCG, 64M qcow2 disk', pollMs: 20 },
    series,
    ratios: { 'cold / warm': ratio(series, labels.cold, labels.warm) },
  };
  results.targets = [
    target(
      `warm start >= ${TARGET_RATIO}× faster than a cold boot`,
      { ratio: 'cold / warm' },
      { min: TARGET_RATIO },
      results,
      'README',
    ),
  ];
  report(writeResults('warm', results), results);
} finally {
  await runCleanups();
}
