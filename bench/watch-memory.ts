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
import { machine } from './lib.js';

const VMS = 10;
const SAMPLE_MS = 250;
const DURATION_MS = 30_000;
const EDIT_EVERY_MS = 5000;
const TARGET_MB = 80;

const runtime = privateDir('qvmbm-');
const dir = mkdtempSync(path.join(tmpdir(), 'qvm-bench-watchmem-'));
const file = path.join(dir, 'm.yaml');
const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MB`;
let watch: WatchProcess | undefined;

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

  const rss = samples.map((s) => s.rss);
  const max = Math.max(...rss);
  const last = rss.at(-1)!;
  console.log(`\`qvm watch\` resident memory with ${VMS} running VMs, on ${machine()}\n`);
  console.log(
    '| VMs | sampled | samples | passes | edits (live changes) | first | max | last |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  console.log(
    `| ${VMS} | ${DURATION_MS / 1000} s | ${samples.length} | ${passes} | ${edits} (${liveChanges}) | ${mb(rss[0]!)} | ${mb(max)} | ${mb(last)} |`,
  );
  console.log(
    `\nTarget: <= ${TARGET_MB} MB: ${max <= TARGET_MB * 2 ** 20 ? 'met' : 'NOT met'} (max ${mb(max)}).${failures ? ` ${failures} failed actions or errors during sampling.` : ''}`,
  );
} finally {
  await watch?.stop('SIGTERM');
  await killQemusUnder(runtime);
  rmSync(runtime, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
}
