/**
 * Whole-process start-up of the one-shot commands, interleaved in one run against `node -e ''` (the floor no
 * Node CLI can go under): `qvm validate -f` a 5-line manifest, and `qvm plan`, `qvm apply` (nothing to do)
 * and `qvm status` with one running bare VM. Run with `npm run bench -- startup`.
 *
 * On a machine that sets NODE_EXTRA_CA_CERTS (this kind of machine points it at the system's whole bundle),
 * Node parses that file at every start-up, floor included, which makes every ratio to the floor look better
 * than on a machine without it. The same commands and floor then also run without it, in the same rounds:
 * the targets are judged as the machine is set up, and the second ratios say how far they are without.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { bareVm, noChanges, startFleet } from './fleet.js';
import {
  describeMachine,
  expectOk,
  interleave,
  machineInfo,
  onCleanup,
  progress,
  qvmRunner,
  type Results,
  ratio,
  report,
  run,
  runCleanups,
  seriesOf,
  target,
  withoutExtraCaCerts,
  writeResults,
} from './lib.js';

const ROUNDS = 25;
const VALIDATE_MANIFEST = `vms:
  web:
    memory: 256M
    accel: tcg
    forwards: [{ host: 18080, guest: 80 }]
`;

const machine = machineInfo();
console.log(`startup: qvm commands against node -e '' on ${describeMachine(machine)}`);

try {
  const validateDir = mkdtempSync(path.join(tmpdir(), 'qvm-bench-validate-'));
  onCleanup(() => rmSync(validateDir, { recursive: true, force: true }));
  writeFileSync(path.join(validateDir, 'qvm.yaml'), VALIDATE_MANIFEST);

  const fleet = await startFleet('startup', { bare: bareVm() });
  const { qvm } = fleet;
  const labels = {
    floor: "node -e ''",
    validate: 'qvm validate -f (5-line manifest)',
    plan: 'qvm plan (no changes, 1 running VM)',
    apply: 'qvm apply (no changes, 1 running VM)',
    status: 'qvm status (1 running VM)',
  };
  const commands = (run: typeof qvm) => ({
    [labels.validate]: () =>
      run(['validate', '-f', path.join(validateDir, 'qvm.yaml')], (out) => out.includes(': valid, 1 VM')),
    [labels.plan]: () => run(['plan', '-f', 'm.yaml'], noChanges),
    [labels.apply]: () => run(['apply', '-f', 'm.yaml'], noChanges),
    [labels.status]: () => run(['status', '-f', 'm.yaml'], (out) => /^bare\s+running\s/m.test(out)),
  });
  const extraCerts = machine.nodeExtraCaCerts;
  const without = (label: string) => `${label}, without NODE_EXTRA_CA_CERTS`;
  const clean = withoutExtraCaCerts();
  const samples = await interleave(
    {
      [labels.floor]: async () => expectOk('node', await run(process.execPath, ['-e', ''])),
      ...commands(qvm),
      ...(extraCerts
        ? {
            [without(labels.floor)]: async () =>
              expectOk('node', await run(process.execPath, ['-e', ''], { env: clean })),
            ...Object.fromEntries(
              Object.entries(commands(qvmRunner(fleet.runtime, fleet.dir, clean))).map(([label, fn]) => [
                without(label),
                fn,
              ]),
            ),
          }
        : {}),
    },
    ROUNDS,
    { onRound: progress('startup') },
  );
  const series = seriesOf(samples);
  const ratios = {
    'validate / node': ratio(series, labels.validate, labels.floor),
    'plan / node': ratio(series, labels.plan, labels.floor),
    'apply / node': ratio(series, labels.apply, labels.floor),
    'status / node': ratio(series, labels.status, labels.floor),
    ...(extraCerts
      ? Object.fromEntries(
          (['validate', 'plan', 'apply', 'status'] as const).map((name) => [
            without(`${name} / node`),
            ratio(series, without(labels[name]), without(labels.floor)),
          ]),
        )
      : {}),
  };
  const notes: string[] = [];
  if (extraCerts) {
    const cost = series[labels.floor]!.stats.median - series[without(labels.floor)]!.stats.median;
    notes.push(
      `This machine sets NODE_EXTRA_CA_CERTS=${extraCerts}. Node parses that file at every start-up, before any script runs: ${Math.round(cost)} ms of the floor here (median of node -e '' with it, less without). It is in every qvm command too, so the ratios to the floor are smaller than on a machine without it; the ratios "without NODE_EXTRA_CA_CERTS" are the same commands and floor in the same rounds with it unset.`,
    );
  }
  const results: Results = {
    title: "Whole-process start-up of qvm's one-shot commands against `node -e ''`",
    machine,
    params: {
      rounds: ROUNDS,
      validateManifest: VALIDATE_MANIFEST,
      runningVm: bareVm(),
      idleBeforeTiming: fleet.idle,
    },
    series,
    ratios,
    ...(notes.length ? { notes } : {}),
  };
  results.targets = [
    target('qvm validate <= 1.3× node -e', { ratio: 'validate / node' }, { max: 1.3 }, results),
    target('qvm plan (no changes, 1 VM) <= 1.6× node -e', { ratio: 'plan / node' }, { max: 1.6 }, results),
    target('qvm apply (no changes, 1 VM) <= 1.6× node -e', { ratio: 'apply / node' }, { max: 1.6 }, results),
  ];
  report(writeResults('startup', results), results);
} finally {
  await runCleanups();
}
