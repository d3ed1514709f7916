/**
 * The harness every benchmark uses, so that every figure the README shows comes from a results file a script
 * wrote: the machine it ran on, summary statistics that do not claim more than the samples hold (p95 only
 * from 20 samples up), variants measured interleaved in one run (A B A B ...) so a ratio never compares two
 * separate runs, and `bench/results/<name>.json` with the raw samples. `npm run bench:report` turns those
 * files into the README's tables.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const RESULTS_DIR = path.join(ROOT, 'bench', 'results');
/** The qvm executable as a user runs it (bin/qvm.js over dist/bundle/: `npm run build` first). */
export const QVM_BIN = path.join(ROOT, 'bin', 'qvm.js');

// ---------------------------------------------------------------------------------------------------------
// The machine

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  node: string;
  qemu: string;
  kernel: string;
  /** When the benchmark started (ISO 8601, UTC). */
  date: string;
  /** os.loadavg() when the benchmark started: other work on the machine skews every figure. */
  loadAverage: [number, number, number];
  /** qemu-system processes running when the benchmark started (other sessions' VMs share the CPU). */
  qemuProcesses: number;
  /**
   * NODE_EXTRA_CA_CERTS when set (null otherwise). Node 20 reads and parses that file at every start-up,
   * before any script runs: on a machine that points it at the system's bundle, that is a large part of
   * every Node floor and of every qvm command (see withoutExtraCaCerts).
   */
  nodeExtraCaCerts: string | null;
}

export function machineInfo(): MachineInfo {
  let qemu = 'not installed';
  try {
    const first = execFileSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' }).split('\n')[0]!;
    qemu = /version (\S+)/.exec(first)?.[1] ?? first;
  } catch {
    // left as not installed
  }
  const load = loadavg().map((l) => round(l, 2)) as [number, number, number];
  return {
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    memoryGiB: round(totalmem() / 2 ** 30, 1),
    node: process.version,
    qemu,
    kernel: release(),
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    loadAverage: load,
    qemuProcesses: qemuProcessCount(),
    nodeExtraCaCerts: process.env.NODE_EXTRA_CA_CERTS || null,
  };
}

/**
 * ENV without NODE_EXTRA_CA_CERTS: for the series that show what a Node process (the floor, or qvm) costs
 * on a machine that does not set it. qvm needs extra certificates only to download images.
 */
export function withoutExtraCaCerts(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const { NODE_EXTRA_CA_CERTS: _, ...rest } = env;
  return rest;
}

function qemuProcessCount(): number {
  let count = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').startsWith('qemu-system')) count++;
    } catch {
      // gone meanwhile
    }
  }
  return count;
}

/** A note for the results file when the machine was busy at the start (1-minute load above half the cores). */
export function loadNote(machine: MachineInfo): string | undefined {
  const [one] = machine.loadAverage;
  return one > machine.cores / 2
    ? `The machine was busy at the start: load average ${machine.loadAverage.join(', ')} on ${machine.cores} cores${machine.qemuProcesses ? `, ${machine.qemuProcesses} QEMU process${machine.qemuProcesses === 1 ? '' : 'es'} already running` : ''}; figures may be slower than on an idle machine.`
    : undefined;
}

/** One line for the console: where a benchmark ran. */
export function describeMachine(m: MachineInfo): string {
  return `${m.cores} × ${m.cpuModel}, ${m.memoryGiB} GiB, Node ${m.node}, QEMU ${m.qemu}, load ${m.loadAverage[0]}${m.nodeExtraCaCerts ? `, NODE_EXTRA_CA_CERTS=${m.nodeExtraCaCerts}` : ''}`;
}

// ---------------------------------------------------------------------------------------------------------
// Statistics

export interface Stats {
  n: number;
  min: number;
  median: number;
  max: number;
  /** Only from 20 samples up: below that the "95th percentile" is just the maximum or close to it. */
  p95?: number;
}

/** Nearest-rank percentile of already sorted samples. */
function nearestRank(sorted: number[], p: number): number {
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}

export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) throw new Error('percentile of no samples');
  return nearestRank(
    [...samples].sort((a, b) => a - b),
    p,
  );
}

/** The median (the mean of the two middle samples when n is even). */
export function median(samples: number[]): number {
  if (samples.length === 0) throw new Error('median of no samples');
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function stats(samples: number[]): Stats {
  if (samples.length === 0) throw new Error('stats of no samples');
  const sorted = [...samples].sort((a, b) => a - b);
  const result: Stats = {
    n: sorted.length,
    min: round(sorted[0]!),
    median: round(median(sorted)),
    max: round(sorted.at(-1)!),
  };
  if (sorted.length >= 20) result.p95 = round(nearestRank(sorted, 95));
  return result;
}

export function round(value: number, digits = 3): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

// ---------------------------------------------------------------------------------------------------------
// Timing

export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/**
 * One thing to measure. A bare function is timed as a whole. `before` and `after` run around each sample,
 * untimed (start a VM, stop it...). With `selfTimed`, `run` measures itself and returns milliseconds (for
 * "from X until Y" figures where Y is observed outside the command).
 */
export type Variant =
  | (() => Promise<unknown>)
  | {
      before?: () => Promise<unknown>;
      run: () => Promise<unknown>;
      after?: () => Promise<unknown>;
      selfTimed?: boolean;
    };

export interface InterleaveOptions {
  /** Untimed rounds first (fills caches, loads the disk's pages). Default 1. */
  warmup?: number;
  /** Shuffle the order within each round (default true), so no variant always runs first or last. */
  shuffle?: boolean;
  /** Called after each round, e.g. for a progress line. */
  onRound?: (round: number, rounds: number) => void;
}

/**
 * Runs every variant once per round, ROUNDS times (A B A B ..., the order shuffled within each round), and
 * returns the samples of each in ms. Every ratio between two of them then compares samples taken under the
 * same conditions, minutes apart at most.
 */
export async function interleave(
  variants: Record<string, Variant>,
  rounds: number,
  options: InterleaveOptions = {},
): Promise<Record<string, number[]>> {
  const labels = Object.keys(variants);
  const samples: Record<string, number[]> = Object.fromEntries(labels.map((l) => [l, []]));
  const warmup = options.warmup ?? 1;
  for (let round = -warmup; round < rounds; round++) {
    const order = options.shuffle === false ? labels : shuffled(labels);
    for (const label of order) {
      const variant = variants[label]!;
      const spec = typeof variant === 'function' ? { run: variant } : variant;
      await spec.before?.();
      let ms: number;
      if ('selfTimed' in spec && spec.selfTimed) {
        const value = await spec.run();
        if (typeof value !== 'number') throw new Error(`${label}: a self-timed variant must return ms`);
        ms = value;
      } else {
        ms = await timed(spec.run);
      }
      await spec.after?.();
      if (round >= 0) samples[label]!.push(ms);
    }
    if (round >= 0) options.onRound?.(round + 1, rounds);
  }
  return samples;
}

function shuffled<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** A progress line on stderr, rewritten in place on a terminal and silent otherwise. */
export function progress(what: string): (round: number, rounds: number) => void {
  return (round, rounds) => {
    if (!process.stderr.isTTY) return;
    process.stderr.write(`\r${what}: round ${round}/${rounds}${round === rounds ? '\n' : ''}`);
  };
}

// ---------------------------------------------------------------------------------------------------------
// Processes

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  input?: string;
  /** Kill the whole process group (pipelines included) after this long. Default 60 s. */
  timeoutMs?: number;
}

/**
 * Runs a program in its own process group and collects its output; on timeout the whole group is killed,
 * so a shell pipeline whose client never exits cannot hold a monitor socket after the sample.
 */
export function run(file: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      detached: true,
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    if (options.input !== undefined) child.stdin!.end(options.input);
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid!);
    }, options.timeoutMs ?? 60_000);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      // Whatever the group left behind (a pipeline's other half) goes too.
      killGroup(child.pid!);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** `bash -c SCRIPT`, as a user would type it. */
export function sh(script: string, options: RunOptions = {}): Promise<RunResult> {
  return run('bash', ['-c', script], options);
}

/** Fails with the command's output unless it exited 0 (and printed what CHECK wants, when given). */
export function expectOk(what: string, result: RunResult, check?: (stdout: string) => boolean): RunResult {
  if (result.timedOut) throw new Error(`${what}: did not finish in time\n${result.stdout}\n${result.stderr}`);
  if (result.code !== 0)
    throw new Error(`${what}: exit ${result.code ?? result.signal}\n${result.stdout}\n${result.stderr}`);
  if (check && !check(result.stdout))
    throw new Error(`${what}: did not print the expected output:\n${result.stdout}\n${result.stderr}`);
  return result;
}

/** A `qvm` runner with a private runtime root, run from CWD, failing on a non-zero exit. */
export function qvmRunner(runtime: string, cwd: string, baseEnv: NodeJS.ProcessEnv = process.env) {
  const env = { ...baseEnv, QVM_RUNTIME_DIR: runtime, QVM_STATE_DIR: `${runtime}-state`, NO_COLOR: '1' };
  return async (args: string[], check?: (stdout: string) => boolean, timeoutMs = 600_000) =>
    expectOk(
      `qvm ${args.join(' ')}`,
      await run(process.execPath, [QVM_BIN, ...args], { cwd, env, timeoutMs }),
      check,
    );
}

/** CPU time (user + system) a process has used so far, in ms; undefined once it is gone. */
export function cpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After the command: state(0) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(11) stime(12)
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

export interface IdleReport {
  /** CPU use of all the processes together in the last window, in % of one core. */
  totalPercent: number;
  /** The busiest process in the last window, in % of one core. */
  maxPercent: number;
  waitedMs: number;
  settled: boolean;
}

/**
 * Waits until PIDS are idle: their CPU use over a window (/proc/PID/stat utime + stime) has stopped falling
 * and no single one is busy. VMs that just started spend seconds in firmware; timing before they settle
 * measures their boot, not qvm.
 */
export async function waitForIdle(
  pids: number[],
  options: { windowMs?: number; maxPercentEach?: number; timeoutMs?: number } = {},
): Promise<IdleReport> {
  const windowMs = options.windowMs ?? 2000;
  const maxEach = options.maxPercentEach ?? 3;
  const started = Date.now();
  let previousTotal = Number.POSITIVE_INFINITY;
  for (;;) {
    const before = pids.map((p) => cpuMs(p) ?? 0);
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, windowMs));
    const elapsed = Date.now() - t0;
    const used = pids.map((p, i) => ((cpuMs(p) ?? before[i]!) - before[i]!) / elapsed);
    const total = used.reduce((a, b) => a + b, 0) * 100;
    const max = Math.max(0, ...used) * 100;
    const waitedMs = Date.now() - started;
    // Settled: nobody busy, and the total no longer falling by more than a fifth (or 2% of a core).
    const settled = max <= maxEach && total >= previousTotal - Math.max(2, previousTotal * 0.2);
    if (settled || waitedMs > (options.timeoutMs ?? 300_000))
      return { totalPercent: round(total, 2), maxPercent: round(max, 2), waitedMs, settled };
    previousTotal = total;
  }
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

// ---------------------------------------------------------------------------------------------------------
// Clean-up that also runs on Ctrl-C

const cleanups: (() => Promise<unknown> | unknown)[] = [];
let cleaning: Promise<void> | undefined;

/** Registers clean-up to run by runCleanups() (call it in `finally`) or on SIGINT/SIGTERM. Last in, first out. */
export function onCleanup(fn: () => Promise<unknown> | unknown): void {
  cleanups.push(fn);
}

export function runCleanups(): Promise<void> {
  cleaning ??= (async () => {
    while (cleanups.length > 0) {
      const fn = cleanups.pop()!;
      try {
        await fn();
      } catch (error) {
        console.error(`clean-up failed: ${(error as Error).message}`);
      }
    }
  })();
  return cleaning;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: cleaning up`);
    void runCleanups().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------------------------------------------------
// Results files

export type Unit = 'ms' | 'MB' | '%';

export interface Series {
  samples: number[];
  stats: Stats;
  unit: Unit;
  /** What was measured, in a few words, when the label does not say it all. */
  description?: string;
  [extra: string]: unknown;
}

export interface Ratio {
  numerator: string;
  denominator: string;
  /** median(numerator) / median(denominator), both measured interleaved in this run. */
  value: number;
  /** min(numerator) / min(denominator): less sensitive to other load on the machine. */
  ofMins: number;
}

export interface Target {
  description: string;
  /** What the target is about: a ratio's key, or a series' statistic (or a number the series records). */
  metric: { ratio: string } | { series: string; stat: string };
  max?: number;
  min?: number;
  /** The measured value, and whether it met the target (recorded, never asserted). */
  actual: number;
  met: boolean;
  source: string;
}

export interface Results {
  title: string;
  machine: MachineInfo;
  params: Record<string, unknown>;
  series: Record<string, Series>;
  ratios?: Record<string, Ratio>;
  targets?: Target[];
  notes?: string[];
}

/** A series from samples (rounded to µs, or 3 decimals for other units). */
export function series(samples: number[], unit: Unit = 'ms', extra: Record<string, unknown> = {}): Series {
  return { unit, stats: stats(samples), ...extra, samples: samples.map((s) => round(s)) };
}

export function seriesOf(
  samples: Record<string, number[]>,
  unit: Unit = 'ms',
  descriptions: Record<string, string> = {},
): Record<string, Series> {
  return Object.fromEntries(
    Object.entries(samples).map(([label, s]) => [
      label,
      series(s, unit, descriptions[label] ? { description: descriptions[label] } : {}),
    ]),
  );
}

export function ratio(all: Record<string, Series>, numerator: string, denominator: string): Ratio {
  const a = all[numerator];
  const b = all[denominator];
  if (!a || !b) throw new Error(`ratio ${numerator} / ${denominator}: no such series`);
  return {
    numerator,
    denominator,
    value: round(a.stats.median / b.stats.median),
    ofMins: round(a.stats.min / b.stats.min),
  };
}

/** A target from issue 12 (or elsewhere), with the value this run measured. */
export function target(
  description: string,
  metric: Target['metric'],
  limit: { max?: number; min?: number },
  results: { series: Record<string, Series>; ratios?: Record<string, Ratio> },
  source = 'issue 12',
): Target {
  let actual: unknown;
  if ('ratio' in metric) actual = results.ratios?.[metric.ratio]?.value;
  else {
    const s = results.series[metric.series];
    actual = s?.stats[metric.stat as keyof Stats] ?? s?.[metric.stat];
  }
  if (typeof actual !== 'number')
    throw new Error(`target ${description}: nothing measured for ${JSON.stringify(metric)}`);
  const met =
    (limit.max === undefined || actual <= limit.max) && (limit.min === undefined || actual >= limit.min);
  return { description, metric, ...limit, actual, met, source };
}

function codeVersion(): { commit: string; dirty: boolean } {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], {
      cwd: ROOT,
      encoding: 'utf8',
    }).trim();
    const status = execFileSync(
      'git',
      ['status', '--porcelain', '--', 'src', 'bin', 'bench', ':(exclude)bench/results', 'package.json'],
      {
        cwd: ROOT,
        encoding: 'utf8',
      },
    );
    return { commit, dirty: status.trim() !== '' };
  } catch {
    return { commit: 'unknown', dirty: true };
  }
}

/**
 * Writes bench/results/NAME.json: pretty, keys in a fixed order (free-form objects sorted), raw samples
 * included. Returns the file's path.
 */
export function writeResults(name: string, results: Results): string {
  const note = loadNote(results.machine);
  const notes = [...(note ? [note] : []), ...(results.notes ?? [])];
  const document = {
    name,
    title: results.title,
    script: `bench/${name}.ts`,
    code: codeVersion(),
    machine: sortKeys(results.machine),
    params: sortKeys(results.params),
    series: Object.fromEntries(Object.entries(results.series).map(([label, s]) => [label, orderSeries(s)])),
    ...(results.ratios ? { ratios: results.ratios } : {}),
    ...(results.targets ? { targets: results.targets } : {}),
    ...(notes.length ? { notes } : {}),
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${name}.json`);
  writeFileSync(`${file}.tmp`, `${formatJson(document)}\n`);
  renameSync(`${file}.tmp`, file);
  return file;
}

function orderSeries(s: Series): Record<string, unknown> {
  const { unit, description, stats: st, samples, ...extra } = s;
  return {
    unit,
    ...(description ? { description } : {}),
    stats: st,
    ...sortKeys(extra),
    samples,
  };
}

function sortKeys<T>(value: T): T {
  if (Array.isArray(value)) return value.map(sortKeys) as T;
  if (value && typeof value === 'object')
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]),
    ) as T;
  return value;
}

/** JSON with two-space indents, arrays of plain values on one line (samples stay readable and diffs short). */
export function formatJson(value: unknown, indent = ''): string {
  if (Array.isArray(value)) {
    if (value.every((v) => v === null || typeof v !== 'object'))
      return `[${value.map((v) => JSON.stringify(v)).join(', ')}]`;
    const inner = `${indent}  `;
    return `[\n${value.map((v) => inner + formatJson(v, inner)).join(',\n')}\n${indent}]`;
  }
  if (value && typeof value === 'object') {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined);
    if (entries.length === 0) return '{}';
    const inner = `${indent}  `;
    return `{\n${entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${formatJson(v, inner)}`).join(',\n')}\n${indent}}`;
  }
  return JSON.stringify(value);
}

// ---------------------------------------------------------------------------------------------------------
// Console

export function ms(value: number): string {
  if (value >= 10_000) return `${(value / 1000).toFixed(1)} s`;
  return value < 10 ? `${value.toFixed(2)} ms` : `${value.toFixed(0)} ms`;
}

/** One console line per series: label, n, min / median / max. */
export function summary(all: Record<string, Series>): string {
  const width = Math.max(...Object.keys(all).map((l) => l.length));
  return Object.entries(all)
    .map(([label, s]) => {
      const f = (v: number) => (s.unit === 'ms' ? ms(v) : `${v.toFixed(1)} ${s.unit}`);
      return `  ${label.padEnd(width)}  n=${s.stats.n}  min ${f(s.stats.min)}  median ${f(s.stats.median)}  max ${f(s.stats.max)}`;
    })
    .join('\n');
}

/** Prints where the results went, with ratios and targets in one line each. */
export function report(file: string, results: Results): void {
  console.log(summary(results.series));
  for (const [key, r] of Object.entries(results.ratios ?? {})) console.log(`  ratio ${key}: ${r.value}×`);
  for (const t of results.targets ?? [])
    console.log(
      `  target ${t.description}: ${t.actual} (${t.max !== undefined ? `<= ${t.max}` : `>= ${t.min}`}) ${t.met ? 'met' : 'NOT met'}`,
    );
  console.log(`  -> ${path.relative(process.cwd(), file)}`);
}
