/**
 * What the VGA of qvm's lean device set costs a boot: the demo guest from starting `qvm apply` to its first
 * HTTP answer (polled every 20 ms), with the default set (-nodefaults, the manifest's devices, the serial port
 * and `-vga std`, which `qvm screenshot` needs) against the same with `args: [-vga, none]`. Interleaved, from
 * no disk each time; the destroy before each run is not timed. Run with `npm run bench -- devices`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import {
  demoVm,
  freePortsDistinct,
  killQemusUnder,
  privateDir,
  runWhilePolling,
  toPort80,
  writeVms,
} from '../test/helpers/watch.js';
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
  writeResults,
} from './lib.js';

const ROUNDS = 8;

const bin = new URL('../bin/qvm.js', import.meta.url).pathname;
const runtime = privateDir('qvmbd-');
const env = { ...process.env, QVM_RUNTIME_DIR: runtime, QVM_STATE_DIR: `${runtime}-state`, NO_COLOR: '1' };
const machine = machineInfo();
console.log(`devices: boot to HTTP with and without the VGA (demo guest) on ${describeMachine(machine)}`);
const dirs: string[] = [];
onCleanup(async () => {
  await killQemusUnder(runtime);
  rmSync(runtime, { recursive: true, force: true });
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function qvm(dir: string, args: string[]) {
  const result = await execa('node', [bin, ...args], { env, cwd: dir, reject: false });
  if (result.exitCode !== 0)
    throw new Error(`qvm ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`);
  return result;
}

/** A manifest folder with one demo guest VM; `args` are added to the VM. */
function vmFolder(name: string, port: number, args: string[]): string {
  const dir = mkdtempSync(path.join(tmpdir(), `qvm-bench-devices-${name}-`));
  dirs.push(dir);
  writeVms(path.join(dir, 'm.yaml'), { [name]: demoVm(name, { forwards: toPort80(port), args }) });
  return dir;
}

/** From starting `qvm apply` to the first HTTP answer, in ms. */
async function bootToHttp(dir: string, port: number): Promise<number> {
  const run = await runWhilePolling(['apply', '-f', 'm.yaml'], { cwd: dir, runtime, port, untilMs: 60_000 });
  if (run.exitCode !== 0 || run.answers.length === 0)
    throw new Error(`apply failed or the guest never answered:\n${run.stdout}\n${run.stderr}`);
  return run.answers[0]!.at - run.startedAt;
}

try {
  const [vgaPort, nonePort] = (await freePortsDistinct(2)) as [number, number];
  const vga = vmFolder('vga', vgaPort, []);
  const none = vmFolder('novga', nonePort, ['-vga', 'none']);
  await qvm(vga, ['status', '-f', 'm.yaml']); // the one-time KVM probe of a new runtime root, outside the timings
  const labels = { vga: 'lean set with -vga std (default)', none: 'lean set with args: [-vga, none]' };
  const samples = await interleave(
    {
      [labels.vga]: {
        before: () => qvm(vga, ['destroy', '-f', 'm.yaml', '--delete-disks']),
        run: () => bootToHttp(vga, vgaPort),
        after: () => qvm(vga, ['destroy', '-f', 'm.yaml', '--delete-disks']),
        selfTimed: true,
      },
      [labels.none]: {
        before: () => qvm(none, ['destroy', '-f', 'm.yaml', '--delete-disks']),
        run: () => bootToHttp(none, nonePort),
        after: () => qvm(none, ['destroy', '-f', 'm.yaml', '--delete-disks']),
        selfTimed: true,
      },
    },
    ROUNDS,
    { warmup: 1, onRound: progress('devices') },
  );
  const series = seriesOf(samples);
  const results: Results = {
    title: "What the lean device set's VGA costs: from starting `qvm apply` to the demo guest answering HTTP",
    machine,
    params: { rounds: ROUNDS, guest: 'demo guest (guest/out), 256M, TCG, 64M qcow2 disk', pollMs: 20 },
    series,
    ratios: { 'with VGA / without': ratio(series, labels.vga, labels.none) },
    notes: ['One VM runs at a time: each run is destroyed (disk deleted) before the next.'],
  };
  report(writeResults('devices', results), results);
} finally {
  await runCleanups();
}
