/**
 * Time to ready for the demo guest: a cold boot against a warm start from its `snapshot:`, each measured from
 * starting `qvm apply` to the guest answering HTTP through its forward (polled every 20 ms, 300 ms per try),
 * so qvm's own start-up and observation are counted too. Cold runs start from no disk (`destroy
 * --delete-disks`), warm runs from the snapshot the last cold run saved (`destroy` keeps the disk).
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
import { machine, median, ms, percentile } from './lib.js';

const RUNS = 5;
const TARGET_RATIO = 3;

const bin = new URL('../bin/qvm.js', import.meta.url).pathname;
const runtime = privateDir('qvmbh-');
const dir = mkdtempSync(path.join(tmpdir(), 'qvm-bench-warm-'));
const env = { ...process.env, QVM_RUNTIME_DIR: runtime, QVM_STATE_DIR: `${runtime}-state`, NO_COLOR: '1' };

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

  const cold: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    await qvm(['destroy', '-f', 'm.yaml', '--delete-disks']);
    cold.push(await timedApply(port, /cold boot, then saves snapshot warm/));
  }
  const warm: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    await qvm(['destroy', '-f', 'm.yaml']);
    warm.push(await timedApply(port, /start \(from snapshot warm\)/));
  }

  const row = (label: string, s: number[]) =>
    `| ${label} | ${RUNS} | ${ms(median(s))} | ${ms(percentile(s, 95))} | ${ms(Math.min(...s))} | ${ms(Math.max(...s))} |`;
  console.log(`Demo guest, \`qvm apply\` started -> HTTP answers, on ${machine()}\n`);
  console.log('| start | runs | median | p95 | min | max |\n| --- | ---: | ---: | ---: | ---: | ---: |');
  console.log(row('cold boot', cold));
  console.log(row('warm (snapshot: warm)', warm));
  const ratio = median(cold) / median(warm);
  console.log(
    `\nWarm is ${ratio.toFixed(1)}× faster (median). Target >= ${TARGET_RATIO}×: ${ratio >= TARGET_RATIO ? 'met' : 'NOT met'}.`,
  );
} finally {
  await killQemusUnder(runtime);
  rmSync(runtime, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
}
