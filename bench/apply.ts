/**
 * A no-op `qvm apply` (everything already matches) against 1, 10 and 30 running VMs, as a whole process.
 * Observation talks to every VM's monitor in parallel, so 30 VMs should cost little more than one.
 * Bare VMs (no guest OS) are enough: observation only talks to QEMU. Run with `npm run bench -- apply`.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { machine, median, ms, percentile, timed } from './lib.js';

const RUNS = 7;
const bin = new URL('../bin/qvm.js', import.meta.url).pathname;
const runtime = mkdtempSync(path.join(tmpdir(), 'qvmb-'));
const env = { ...process.env, QVM_RUNTIME_DIR: runtime, QVM_STATE_DIR: `${runtime}-state`, NO_COLOR: '1' };

async function qvm(args: string[]) {
  const result = await execa('node', [bin, ...args], { env, reject: false });
  if (result.exitCode !== 0)
    throw new Error(`qvm ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`);
  return result;
}

const rows: string[] = [];
const medians = new Map<number, number>();
try {
  for (const count of [1, 10, 30]) {
    const dir = mkdtempSync(path.join(tmpdir(), `qvm-bench-${count}-`));
    const file = path.join(dir, 'qvm.yaml');
    const vms = Array.from(
      { length: count },
      (_, i) =>
        `  vm${i}:\n    memory: 32M\n    accel: tcg\n    stopTimeout: 500ms\n    forwards: [{ host: ${24000 + count * 100 + i}, guest: 22 }]\n`,
    );
    writeFileSync(file, `vms:\n${vms.join('')}`);
    await qvm(['apply', '-f', file]);
    const check = await qvm(['apply', '-f', file]);
    if (!check.stdout.startsWith('No changes.')) throw new Error(`apply was not a no-op:\n${check.stdout}`);
    const samples: number[] = [];
    for (let i = 0; i < RUNS; i++) samples.push(await timed(() => qvm(['apply', '-f', file])));
    medians.set(count, median(samples));
    rows.push(`| ${count} | ${RUNS} | ${ms(median(samples))} | ${ms(percentile(samples, 95))} |`);
    await qvm(['destroy', '-f', file]);
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`No-op \`qvm apply\` (whole process) on ${machine()}\n`);
  console.log('| running VMs | runs | median | p95 |\n| ---: | ---: | ---: | ---: |');
  for (const row of rows) console.log(row);
  console.log(`\n30 VMs vs 1 VM: ${(medians.get(30)! / medians.get(1)!).toFixed(2)}× the time (median).`);
} finally {
  rmSync(runtime, { recursive: true, force: true });
}
