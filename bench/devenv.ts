/**
 * A dev VM from a stock image (the Debian 12 test guest, guest/debian/), cold boot against warm start: each
 * run measured from starting `qvm apply` to the first successful `qvm ssh dev -- true` after it, so qvm's own
 * start-up, observation, cloud-init (cold) or the snapshot resume (warm), the SSH readiness probe and one
 * more SSH login are all counted. The image is served on loopback and downloaded into the cache once before
 * the timings (a download is a property of the network, not of qvm). Cold runs start from no disk
 * (`destroy --delete-disks`: a new overlay, cloud-init from scratch, then `savevm warm`); warm runs from the
 * snapshot the last cold run saved. Interleaved, 3 rounds (a cold boot is ~1.5 min under TCG).
 * Run with `npm run bench -- devenv` (builds the Debian guest the first time: root and Debian's mirror).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { stringify } from 'yaml';
import { debianGuest } from '../test/helpers/debian.js';
import { startImageServer } from '../test/helpers/image-server.js';
import { killQemusUnder, privateDir } from '../test/helpers/watch.js';
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

const ROUNDS = 3;
const TARGET_RATIO = 15;

const bin = new URL('../bin/qvm.js', import.meta.url).pathname;
const runtime = privateDir('qvmbd-');
const dir = mkdtempSync(path.join(tmpdir(), 'qvm-bench-devenv-'));
const env = {
  ...process.env,
  QVM_RUNTIME_DIR: runtime,
  QVM_STATE_DIR: `${runtime}-state`,
  QVM_CACHE_DIR: `${runtime}-cache`,
  NO_COLOR: '1',
};
const machine = machineInfo();
console.log(`devenv: Debian dev VM, cold boot against warm start, on ${describeMachine(machine)}`);
const guest = debianGuest();
const server = await startImageServer({ '/debian-12.qcow2': guest.image });
onCleanup(async () => {
  await killQemusUnder(runtime);
  await server.close();
  for (const d of [runtime, `${runtime}-state`, `${runtime}-cache`, dir])
    rmSync(d, { recursive: true, force: true });
});

async function qvm(args: string[]) {
  const result = await execa('node', [bin, ...args], { env, cwd: dir, reject: false, timeout: 900_000 });
  if (result.exitCode !== 0)
    throw new Error(`qvm ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`);
  return result;
}

/** From starting `qvm apply` to the first `qvm ssh dev -- true` that succeeds, in ms. */
async function timedApply(expect: RegExp): Promise<number> {
  const startedAt = performance.now();
  const apply = await qvm(['apply', '-f', 'm.yaml']);
  if (!expect.test(apply.stdout))
    throw new Error(`apply did not do what was expected (${expect}):\n${apply.stdout}`);
  await qvm(['ssh', 'dev', '-f', 'm.yaml', '--', 'true']);
  return performance.now() - startedAt;
}

try {
  writeFileSync(
    path.join(dir, 'm.yaml'),
    stringify({
      images: { 'debian-12': { url: server.url('/debian-12.qcow2'), sha256: guest.sha256 } },
      vms: {
        dev: {
          image: 'debian-12',
          disk: { path: 'disks/dev.qcow2', size: '4G' },
          memory: '1G',
          accel: 'tcg',
          kernel: guest.kernel,
          initrd: guest.initrd,
          append: guest.append,
          cloudInit: { userData: '#cloud-config\nlocale: C.UTF-8\n' },
          ssh: { user: 'dev' },
          ready: { ssh: true, timeout: '10m' },
          snapshot: 'warm',
        },
      },
    }),
  );
  await qvm(['pull', '-f', 'm.yaml']);
  await qvm(['status', '-f', 'm.yaml']); // the one-time KVM probe of a new runtime root, outside the timings

  const labels = { cold: 'cold boot (cloud-init)', warm: 'warm start (snapshot: warm)' };
  const samples = await interleave(
    {
      [labels.cold]: {
        before: () => qvm(['destroy', '-f', 'm.yaml', '--delete-disks']),
        run: () => timedApply(/cold boot, then saves snapshot warm/),
        selfTimed: true,
      },
      [labels.warm]: {
        before: () => qvm(['destroy', '-f', 'm.yaml']),
        run: () => timedApply(/start \(from snapshot warm[;)]/),
        selfTimed: true,
      },
    },
    ROUNDS,
    { warmup: 0, shuffle: false, onRound: progress('devenv') },
  );
  const series = seriesOf(samples);
  const results: Results = {
    title:
      'Dev VM from a stock image: from starting `qvm apply` to the first successful `qvm ssh dev -- true`',
    machine,
    params: {
      rounds: ROUNDS,
      guest: 'Debian 12 (guest/debian/build.sh), 1G, 1 vCPU, TCG, 4G qcow2 overlay, cloud-init NoCloud seed',
      order: 'cold then warm in each round (a warm start needs the snapshot the cold boot saved)',
      image: 'downloaded once before the timings',
    },
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
  report(writeResults('devenv', results), results);
} finally {
  await runCleanups();
}
