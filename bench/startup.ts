/**
 * Whole-process start-up of the one-shot commands, interleaved in one run against `node -e ''` (the floor no
 * Node CLI can go under): `qvm validate -f` a 5-line manifest, and `qvm plan`, `qvm apply` (nothing to do)
 * and `qvm status` with one running bare VM. Run with `npm run bench -- startup`.
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
  type Results,
  ratio,
  report,
  run,
  runCleanups,
  seriesOf,
  target,
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
  const samples = await interleave(
    {
      [labels.floor]: async () => expectOk('node', await run(process.execPath, ['-e', ''])),
      [labels.validate]: () =>
        qvm(['validate', '-f', path.join(validateDir, 'qvm.yaml')], (out) => out.includes(': valid, 1 VM')),
      [labels.plan]: () => qvm(['plan', '-f', 'm.yaml'], noChanges),
      [labels.apply]: () => qvm(['apply', '-f', 'm.yaml'], noChanges),
      [labels.status]: () => qvm(['status', '-f', 'm.yaml'], (out) => /^bare\s+running\s/m.test(out)),
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
  };
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
