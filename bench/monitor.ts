/**
 * How fast one monitor command (`info usernet`) is: in process (qvm's QMP and HMP clients), as a whole
 * process (`qvm monitor --socket` on the HMP and the QMP socket, against bench/bare-qmp.mjs, a bare Node
 * script doing the same QMP exchange, and against `node -e ''`), and the classic shell recipes: the seed's
 * `cat <(echo CMD; sleep 1) | nc -U SOCK` and the fastest one-liner that reliably prints the output. Every
 * method's output is checked on every sample. Run with `npm run bench -- monitor`.
 */
import { HmpClient } from '../src/qemu/hmp.js';
import { QmpClient } from '../src/qemu/qmp.js';
import { removeDir, startBareVm } from '../test/helpers/qemu.js';
import {
  describeMachine,
  expectOk,
  interleave,
  machineInfo,
  median,
  onCleanup,
  progress,
  QVM_BIN,
  type Ratio,
  type Results,
  ratio,
  report,
  round,
  run,
  runCleanups,
  seriesOf,
  sh,
  target,
  waitForIdle,
  writeResults,
} from './lib.js';

const IN_PROCESS_ROUNDS = 300;
const PROCESS_ROUNDS = 30;
const CALIBRATION_RUNS = 30;
const COMMAND = 'info usernet';
const bare = new URL('./bare-qmp.mjs', import.meta.url).pathname;

/** What `info usernet` prints for the VM below: its hub, and the forward's row. */
const printedUsernet = (out: string) => out.includes('Hub -1 (net0)') && /TCP\[HOST_FORWARD\]/.test(out);

const machine = machineInfo();
console.log(`monitor: \`${COMMAND}\` on ${describeMachine(machine)}`);

// The bare VM the tests use (a QMP and an HMP socket, user networking with one forward, no disk), without
// the NIC's boot ROM: iPXE would keep a core busy for seconds.
const vm = await startBareVm({
  disk: false,
  memoryMiB: 128,
  forwards: ['tcp:127.0.0.1:0-:22'],
  extraArgs: ['-global', 'e1000.romfile='],
});
onCleanup(async () => {
  await vm.kill();
  removeDir(vm.dir);
});
const notes: string[] = [];

try {
  const idle = await waitForIdle([vm.pid]);
  notes.push(`The VM was idle before timing: ${idle.totalPercent}% of a core after ${idle.waitedMs} ms.`);

  // 1. In process: one client each, connected once, a command per sample.
  const qmp = await QmpClient.connect(vm.qmp);
  const hmp = await HmpClient.connect(vm.hmp);
  const inProcess = await interleave(
    {
      'QMP client, in process': async () => {
        if (!printedUsernet(await qmp.hmp(COMMAND))) throw new Error('QMP client: unexpected output');
      },
      'HMP client, in process': async () => {
        if (!printedUsernet(await hmp.hmp(COMMAND))) throw new Error('HMP client: unexpected output');
      },
    },
    IN_PROCESS_ROUNDS,
    { warmup: 20 },
  );
  await qmp.close();
  await hmp.close();

  // 2. The classic one-liners: which is the fastest that prints the output every time? QEMU drops an HMP
  // command whose client hangs up before it answers, and a client that never hangs up holds the socket.
  const candidates = [
    `echo "${COMMAND}" | socat -t0 - UNIX-CONNECT:${vm.hmp}`,
    `echo "${COMMAND}" | socat -t0.01 - UNIX-CONNECT:${vm.hmp}`,
    `echo "${COMMAND}" | socat -t0.05 - UNIX-CONNECT:${vm.hmp}`,
    `echo "${COMMAND}" | nc -U -q0 ${vm.hmp}`,
    `echo "${COMMAND}" | nc -U -N ${vm.hmp}`,
  ];
  const calibration: { command: string; printed: number; runs: number; medianMs: number }[] = [];
  for (const command of candidates) {
    const times: number[] = [];
    let printed = 0;
    for (let i = 0; i < CALIBRATION_RUNS; i++) {
      const start = process.hrtime.bigint();
      const result = await sh(command, { timeoutMs: 3000 });
      times.push(Number(process.hrtime.bigint() - start) / 1e6);
      if (!result.timedOut && printedUsernet(result.stdout)) printed++;
    }
    calibration.push({ command, printed, runs: CALIBRATION_RUNS, medianMs: round(median(times), 2) });
  }
  const reliable = calibration.filter((c) => c.printed === c.runs).sort((a, b) => a.medianMs - b.medianMs);
  if (reliable.length === 0) throw new Error(`no classic one-liner printed the output every time`);
  const fastest = reliable[0]!.command;
  const generic = (command: string) => command.replaceAll(vm.hmp, 'SOCK').replaceAll(COMMAND, 'CMD');
  for (const c of calibration)
    notes.push(
      `Classic candidate \`${generic(c.command)}\`: printed the output ${c.printed}/${c.runs} times, median ${c.medianMs} ms${c.command === fastest ? ' (chosen: the fastest that always printed it)' : ''}.`,
    );

  // The seed recipe exactly as written: Debian's nc (netcat-openbsd) keeps the connection open after stdin
  // ends (no -q or -N), and QEMU keeps its side open while the client does, so it never ends on its own.
  const asWritten = await sh(`cat <(echo "${COMMAND}"; sleep 1) | nc -U ${vm.hmp}`, { timeoutMs: 4000 });
  notes.push(
    asWritten.timedOut
      ? "The seed recipe as written, `cat <(echo CMD; sleep 1) | nc -U SOCK`, did not exit within 4 s: Debian's nc (netcat-openbsd) keeps the connection open after its input ends, and so does QEMU. It is measured with `-q0` added, which makes nc quit when `cat` ends."
      : `The seed recipe as written exited on its own (code ${asWritten.code}).`,
  );

  // 3. Whole processes, interleaved.
  const node = process.execPath;
  const qvmEnv = { ...process.env, NO_COLOR: '1' };
  const check = (what: string, p: Promise<Awaited<ReturnType<typeof run>>>) =>
    p.then((r) => expectOk(what, r, printedUsernet));
  const seed = `cat <(echo "${COMMAND}"; sleep 1) | nc -U -q0 ${vm.hmp}`;
  const labels = {
    floor: "node -e ''",
    bare: 'bare QMP script (bench/bare-qmp.mjs)',
    qvmHmp: 'qvm monitor --socket, HMP socket',
    qvmQmp: 'qvm monitor --socket, QMP socket',
    fastest: `classic, fastest: ${generic(fastest)}`,
    seed: `classic, seed: ${generic(seed)}`,
  };
  const words = COMMAND.split(' ');
  const whole = await interleave(
    {
      [labels.floor]: async () => expectOk('node', await run(node, ['-e', ''])),
      [labels.bare]: () => check('bare-qmp', run(node, [bare, vm.qmp, ...words])),
      [labels.qvmHmp]: () =>
        check(
          'qvm monitor (HMP)',
          run(node, [QVM_BIN, 'monitor', '--socket', vm.hmp, ...words], { env: qvmEnv }),
        ),
      [labels.qvmQmp]: () =>
        check(
          'qvm monitor (QMP)',
          run(node, [QVM_BIN, 'monitor', '--socket', vm.qmp, ...words], { env: qvmEnv }),
        ),
      [labels.fastest]: () => check('classic, fastest', sh(fastest, { timeoutMs: 5000 })),
      [labels.seed]: () => check('classic, seed', sh(seed, { timeoutMs: 5000 })),
    },
    PROCESS_ROUNDS,
    { onRound: progress('monitor') },
  );

  const series = { ...seriesOf(inProcess), ...seriesOf(whole) };
  const ratios: Record<string, Ratio> = {
    'qvm monitor HMP / bare QMP script': ratio(series, labels.qvmHmp, labels.bare),
    'qvm monitor QMP / bare QMP script': ratio(series, labels.qvmQmp, labels.bare),
    'bare QMP script / node -e': ratio(series, labels.bare, labels.floor),
    'qvm monitor HMP / node -e': ratio(series, labels.qvmHmp, labels.floor),
    'classic fastest / qvm monitor HMP': ratio(series, labels.fastest, labels.qvmHmp),
    'classic seed / qvm monitor HMP': ratio(series, labels.seed, labels.qvmHmp),
  };
  const results: Results = {
    title: `One \`${COMMAND}\` through the monitor: in process, as a whole process, and the classic recipes`,
    machine,
    params: {
      command: COMMAND,
      inProcessRounds: IN_PROCESS_ROUNDS,
      processRounds: PROCESS_ROUNDS,
      calibrationRuns: CALIBRATION_RUNS,
      vm: 'bare (no guest OS), 128M, TCG, e1000 without boot ROM, one hostfwd',
      classicCandidates: calibration.map((c) => ({ ...c, command: generic(c.command) })),
    },
    series,
    ratios,
    notes,
  };
  results.targets = [
    target(
      'qvm monitor --socket (HMP) <= 1.1× a bare Node script doing the same exchange',
      { ratio: 'qvm monitor HMP / bare QMP script' },
      { max: 1.1 },
      results,
    ),
    target(
      'qvm monitor --socket (QMP) <= 1.1× a bare Node script doing the same exchange',
      { ratio: 'qvm monitor QMP / bare QMP script' },
      { max: 1.1 },
      results,
    ),
  ];
  report(writeResults('monitor', results), results);
} finally {
  await runCleanups();
}
