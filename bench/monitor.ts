/**
 * How fast one monitor command is: in process (QMP and HMP clients), as a whole `qvm monitor` process, and
 * as the classic `cat <(echo CMD; sleep 1) | socat - UNIX-CONNECT:SOCK`. Run with `npm run bench -- monitor`.
 */
import { execa } from 'execa';
import { HmpClient } from '../src/qemu/hmp.js';
import { QmpClient } from '../src/qemu/qmp.js';
import { removeDir, startBareVm } from '../test/helpers/qemu.js';
import { machine, median, ms, percentile, timed } from './lib.js';

const IN_PROCESS_RUNS = 300;
const PROCESS_RUNS = 20;
const CLASSIC_RUNS = 5;
const COMMAND = 'info usernet';

// The same bare VM the tests use: a QMP and an HMP socket, user networking with one forward, no disk.
const vm = await startBareVm({ disk: false, memoryMiB: 128, forwards: ['tcp:127.0.0.1:0-:22'] });
const qmpPath = vm.qmp;
const hmpPath = vm.hmp;

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
  await vm.kill();
  removeDir(vm.dir);
}
