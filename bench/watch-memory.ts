/**
 * Resident memory of a `qvm watch` process (VmRSS from /proc/PID/status) while it watches 10 running VMs:
 * sampled every 250 ms for 30 s, with a resync every 2 s and a manifest edit (forwards of every VM changed
 * live) every 5 s. Bare VMs (no guest) are enough: watch only talks to QEMU.
 * Run with `npm run bench -- watch-memory`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  bareVm,
  freePortsDistinct,
  killQemusUnder,
  privateDir,
  residentBytes,
  sleep,
  startWatch,
  type WatchProcess,
  writeVms,
} from '../test/helpers/watch.js';
import {
  describeMachine,
  machineInfo,
  onCleanup,
  type Results,
  report,
  round,
  runCleanups,
  series,
  target,
  writeResults,
} from './lib.js';

const VMS = 10;
const SAMPLE_MS = 250;
const DURATION_MS = 30_000;
const EDIT_EVERY_MS = 5000;
const TARGET_MB = 80;

const runtime = privateDir('qvmbm-');
const dir = mkdtempSync(path.join(tmpdir(), 'qvm-bench-watchmem-'));
const file = path.join(dir, 'm.yaml');
let watch: WatchProcess | undefined;
const machine = machineInfo();
console.log(`watch-memory: qvm watch resident memory with ${VMS} VMs on ${describeMachine(machine)}`);
onCleanup(async () => {
  await watch?.stop('SIGTERM');
  await killQemusUnder(runtime);
  rmSync(runtime, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
});

try {
  const ports = await freePortsDistinct(VMS * 2);
  /** Edit N: VM i forwards its first port, plus its second one on odd edits. */
  const write = (edit: number) =>
    writeVms(
      file,
      Object.fromEntries(
        Array.from({ length: VMS }, (_, i) => [
          `vm${i}`,
          bareVm({
            forwards: [
              { host: ports[2 * i]!, guest: 22 },
              ...(edit % 2 === 1 ? [{ host: ports[2 * i + 1]!, guest: 22 }] : []),
            ],
          }),
        ]),
      ),
    );
  write(0);
  watch = startWatch(['-f', file, '--json', '--interval', '2s'], { cwd: dir, runtime });
  const first = await watch.waitForPassEnd(1, 120_000);
  if (first.changes !== VMS || first.failed !== 0) throw new Error(`first pass: ${JSON.stringify(first)}`);

  const samples: { at: number; rss: number }[] = [];
  const start = Date.now();
  const applied = watch.mark();
  let edits = 0;
  while (Date.now() - start < DURATION_MS) {
    const elapsed = Date.now() - start;
    if (elapsed >= (edits + 1) * EDIT_EVERY_MS && (edits + 1) * EDIT_EVERY_MS < DURATION_MS) {
      edits++;
      write(edits);
    }
    const rss = residentBytes(watch.pid);
    if (rss === undefined) throw new Error(`qvm watch ended: ${watch.stderr}`);
    samples.push({ at: elapsed, rss });
    await sleep(SAMPLE_MS);
  }
  const since = watch.since(applied);
  const passes = since.filter((e) => e.event === 'pass-finished').length;
  const liveChanges = since.filter((e) => e.event === 'action-applied').length;
  const failures = since.filter((e) => e.event === 'action-failed' || e.event === 'error').length;

  const label = `qvm watch VmRSS, ${VMS} VMs`;
  const results: Results = {
    title: `\`qvm watch\` resident memory (VmRSS) while it watches ${VMS} running bare VMs`,
    machine,
    params: {
      vms: VMS,
      sampleEveryMs: SAMPLE_MS,
      durationMs: DURATION_MS,
      interval: '2s',
      editEveryMs: EDIT_EVERY_MS,
      vm: bareVm({ forwards: [{ host: 1, guest: 22 }] }),
    },
    series: {
      [label]: series(
        samples.map((s) => s.rss / 2 ** 20),
        'MB',
        {
          first: round(samples[0]!.rss / 2 ** 20),
          last: round(samples.at(-1)!.rss / 2 ** 20),
          passes,
          edits,
          liveChanges,
        },
      ),
    },
    notes: [
      "Sampled in a qvm watch with a resync every 2 s and a manifest edit (every VM's forwards changed live) every 5 s.",
      ...(failures ? [`${failures} failed actions or errors during sampling.`] : []),
    ],
  };
  results.targets = [
    target(`max <= ${TARGET_MB} MB`, { series: label, stat: 'max' }, { max: TARGET_MB }, results, 'README'),
  ];
  report(writeResults('watch-memory', results), results);
} finally {
  await runCleanups();
}
