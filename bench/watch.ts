/**
 * How fast `qvm watch` applies an edit: from writing a manifest that moves the demo guest's forward to a new
 * host port (adds the new one, removes the previous one) to the guest answering HTTP on the new port. The
 * resync interval is long, so every pass measured is one the file change started.
 * Run with `npm run bench -- watch` (needs the demo guest: `bash guest/build.sh`).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  demoVm,
  freePortsDistinct,
  httpGet,
  killQemusUnder,
  privateDir,
  sleep,
  startWatch,
  tcpConnect,
  toPort80,
  url,
  type WatchProcess,
  waitForHttp,
  writeVms,
} from '../test/helpers/watch.js';
import {
  describeMachine,
  machineInfo,
  onCleanup,
  type Results,
  report,
  runCleanups,
  seriesOf,
  target,
  writeResults,
} from './lib.js';

const EDITS = 20;
const TARGET_MS = 150;

const runtime = privateDir('qvmbw-');
const dir = mkdtempSync(path.join(tmpdir(), 'qvm-bench-watch-'));
const file = path.join(dir, 'm.yaml');
let watch: WatchProcess | undefined;
const machine = machineInfo();
console.log(`watch: reaction to a manifest edit (demo guest) on ${describeMachine(machine)}`);
onCleanup(async () => {
  await watch?.stop('SIGTERM');
  await killQemusUnder(runtime);
  rmSync(runtime, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
});

/** Polls PORT every 5 ms until the guest answers 200; the time since START in ms. */
async function answeredAfter(port: number, start: bigint): Promise<number> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    try {
      if ((await httpGet(url(port), 300)).status === 200)
        return Number(process.hrtime.bigint() - start) / 1e6;
    } catch {
      // not forwarded yet: refused at once
    }
    await sleep(5);
  }
  throw new Error(`port ${port} did not answer within 10 s of the edit`);
}

try {
  const ports = await freePortsDistinct(EDITS + 1);
  writeVms(file, { web: demoVm('web', { forwards: toPort80(ports[0]!) }) });
  watch = startWatch(['-f', file, '--json', '--interval', '10m'], { cwd: dir, runtime });
  await watch.waitForPassEnd(1, 60_000);
  await waitForHttp(url(ports[0]!), 60_000);

  const samples: number[] = [];
  for (let i = 1; i <= EDITS; i++) {
    const from = watch.mark();
    writeVms(file, { web: demoVm('web', { forwards: toPort80(ports[i]!) }) });
    const written = process.hrtime.bigint();
    samples.push(await answeredAfter(ports[i]!, written));
    // Let the pass finish (the removal is part of it) before the next edit.
    const applied = await watch.waitForEvent((e) => e.event === 'action-applied', 10_000, from);
    if (applied.summary !== 'updated live: 1 forward added, 1 removed')
      throw new Error(`unexpected change: ${applied.summary}`);
    await watch.waitForPassEnd(applied.pass, 10_000);
    if ((await tcpConnect(ports[i - 1]!)) !== 'refused') throw new Error(`port ${ports[i - 1]} still open`);
  }

  const label = 'manifest written -> new forward answers HTTP';
  const results: Results = {
    title:
      '`qvm watch` reaction: from writing a manifest that moves a forward to the new port answering HTTP',
    machine,
    params: { edits: EDITS, pollMs: 5, interval: '10m', guest: 'demo guest (guest/out), 256M, TCG' },
    series: seriesOf({ [label]: samples }),
    notes: [
      'Each edit adds a new port and removes the previous one; every pass measured is one the file change started.',
      'watch waits 100 ms of quiet after a file event before its pass.',
    ],
  };
  results.targets = [
    target(
      `reaction median <= ${TARGET_MS} ms`,
      { series: label, stat: 'median' },
      { max: TARGET_MS },
      results,
    ),
  ];
  report(writeResults('watch', results), results);
} finally {
  await runCleanups();
}
