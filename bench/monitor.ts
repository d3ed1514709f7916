/**
 * How fast one monitor command is: in process (QMP and HMP clients), as a whole `qvm monitor` process, and
 * as the classic `cat <(echo CMD; sleep 1) | socat - UNIX-CONNECT:SOCK`. Run with `npm run bench -- monitor`.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { HmpClient } from '../src/qemu/hmp.js';
import { QmpClient } from '../src/qemu/qmp.js';
import { machine, median, ms, percentile, timed } from './lib.js';

const IN_PROCESS_RUNS = 300;
const PROCESS_RUNS = 20;
const CLASSIC_RUNS = 5;
const COMMAND = 'info usernet';

const dir = mkdtempSync(path.join(tmpdir(), 'qvm-bench-'));
const qmpPath = path.join(dir, 'qmp.sock');
const hmpPath = path.join(dir, 'mon.sock');
const pidfile = path.join(dir, 'pid');
execFileSync('qemu-system-x86_64', [
  '-accel',
  'tcg',
  '-m',
  '128',
  '-display',
  'none',
  '-daemonize',
  '-pidfile',
  pidfile,
  '-qmp',
  `unix:${qmpPath},server=on,wait=off`,
  '-monitor',
  `unix:${hmpPath},server,nowait`,
  '-netdev',
  'user,id=net0,hostfwd=tcp:127.0.0.1:0-:22',
  '-device',
  'e1000,netdev=net0',
]);
const pid = Number(readFileSync(pidfile, 'utf8'));

try {
  const rows: string[] = [];
  for (const [label, connect, socket] of [
    ['QMP, in process', () => QmpClient.connect(qmpPath), qmpPath],
    ['HMP, in process', () => HmpClient.connect(hmpPath), hmpPath],
  ] as const) {
    const client = await connect();
    for (let i = 0; i < 20; i++) await client.hmp(COMMAND); // warm-up
    const samples: number[] = [];
    for (let i = 0; i < IN_PROCESS_RUNS; i++) samples.push(await timed(() => client.hmp(COMMAND)));
    await client.close();
    rows.push(
      `| ${label} (${socket === qmpPath ? 'qmp' : 'hmp'}.sock) | ${IN_PROCESS_RUNS} | ${ms(median(samples))} | ${ms(percentile(samples, 95))} |`,
    );
  }

  const bin = new URL('../bin/qvm.js', import.meta.url).pathname;
  const whole: number[] = [];
  for (let i = 0; i < PROCESS_RUNS; i++) {
    whole.push(
      await timed(() => execa('node', [bin, 'monitor', '--socket', hmpPath, ...COMMAND.split(' ')])),
    );
  }
  rows.push(
    `| \`qvm monitor\`, whole process (HMP) | ${PROCESS_RUNS} | ${ms(median(whole))} | ${ms(percentile(whole, 95))} |`,
  );

  const classic: number[] = [];
  for (let i = 0; i < CLASSIC_RUNS; i++) {
    classic.push(
      await timed(() =>
        execa('bash', ['-c', `cat <(echo "${COMMAND}"; sleep 1) | socat - UNIX-CONNECT:${hmpPath}`]),
      ),
    );
  }
  rows.push(
    `| classic \`cat <(echo CMD; sleep 1) \\| socat\` | ${CLASSIC_RUNS} | ${ms(median(classic))} | ${ms(percentile(classic, 95))} |`,
  );

  console.log(`\`${COMMAND}\` on ${machine()}\n`);
  console.log('| method | runs | median | p95 |\n| --- | ---: | ---: | ---: |');
  for (const row of rows) console.log(row);
  console.log(
    `\nWhole \`qvm monitor\` process vs classic: ${(median(classic) / median(whole)).toFixed(1)}× faster (median).`,
  );
} finally {
  process.kill(pid, 'SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
