/**
 * A no-op `qvm apply` (everything already matches) against 1, 10 and 30 running VMs, as a whole process,
 * interleaved: the three fleets run side by side (each with its own runtime root) and every round times one
 * apply against each. Observation talks to every VM's monitor in parallel, so 30 VMs should cost little more
 * than one. Bare VMs (no guest OS) are enough: observation only talks to QEMU.
 * Run with `npm run bench -- apply`.
 */
import { freePortsDistinct } from '../test/helpers/watch.js';
import { bareVm, type Fleet, noChanges, startFleet } from './fleet.js';
import {
  describeMachine,
  interleave,
  machineInfo,
  progress,
  type Results,
  ratio,
  report,
  round,
  runCleanups,
  seriesOf,
  target,
  writeResults,
} from './lib.js';

const ROUNDS = 20;
const COUNTS = [1, 10, 30];

const machine = machineInfo();
console.log(`apply: no-op qvm apply with ${COUNTS.join(', ')} running VMs on ${describeMachine(machine)}`);

try {
  const ports = await freePortsDistinct(COUNTS.reduce((a, b) => a + b, 0));
  const fleets = new Map<number, Fleet>();
  for (const count of COUNTS) {
    const vms = Object.fromEntries(
      Array.from({ length: count }, (_, i) => [
        `vm${i}`,
        bareVm({ minimal: true, forwardPort: ports.pop()! }),
      ]),
    );
    fleets.set(count, await startFleet(`apply${count}`, vms));
  }
  const label = (count: number) => `qvm apply (no changes), ${count} running VM${count === 1 ? '' : 's'}`;
  const samples = await interleave(
    Object.fromEntries(
      COUNTS.map((count) => [
        label(count),
        () => fleets.get(count)!.qvm(['apply', '-f', 'm.yaml'], noChanges),
      ]),
    ),
    ROUNDS,
    { onRound: progress('apply') },
  );
  const series = seriesOf(samples);
  const last = COUNTS.at(-1)!;
  const ratios = {
    [`${last} VMs / 1 VM`]: ratio(series, label(last), label(1)),
    '10 VMs / 1 VM': ratio(series, label(10), label(1)),
  };
  const results: Results = {
    title: 'No-op `qvm apply` (whole process) against 1, 10 and 30 running bare VMs',
    machine,
    params: {
      rounds: ROUNDS,
      vm: bareVm({ minimal: true, forwardPort: 1 }),
      startMs: Object.fromEntries(COUNTS.map((c) => [String(c), round(fleets.get(c)!.startMs)])),
      idleBeforeTiming: Object.fromEntries(COUNTS.map((c) => [String(c), fleets.get(c)!.idle])),
    },
    series,
    ratios,
    notes: [
      'Each VM has one forward (host port -> guest 22); forward 1 in params.vm stands for a free port.',
    ],
  };
  results.targets = [
    target(
      `no-op apply, ${last} VMs <= 2× 1 VM`,
      { ratio: `${last} VMs / 1 VM` },
      { max: 2 },
      results,
      'README',
    ),
  ];
  report(writeResults('apply', results), results);
} finally {
  await runCleanups();
}
