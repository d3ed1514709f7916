/**
 * `npm run bench:report`: regenerates the benchmark tables in README.md from bench/results/*.json, so no
 * figure in the README is typed by hand. Each table sits between `<!-- bench:NAME:start -->` and
 * `<!-- bench:NAME:end -->` and is rebuilt from bench/results/NAME.json, naming the machine and date the
 * figures come from. Running it twice changes nothing. `--check` exits 1 when the README is out of date.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const README = path.join(ROOT, 'README.md');
const RESULTS = path.join(ROOT, 'bench', 'results');

interface Stats {
  n: number;
  min: number;
  median: number;
  max: number;
  p95?: number;
}
interface Series {
  unit: 'ms' | 'MB' | '%';
  description?: string;
  stats: Stats;
}
interface ResultsFile {
  name: string;
  title: string;
  script: string;
  code: { commit: string; dirty: boolean };
  machine: {
    cpuModel: string;
    cores: number;
    memoryGiB: number;
    node: string;
    qemu: string;
    kernel: string;
    date: string;
    loadAverage: number[];
    qemuProcesses: number;
    nodeExtraCaCerts?: string | null;
  };
  params: Record<string, unknown>;
  series: Record<string, Series>;
  ratios?: Record<string, { numerator: string; denominator: string; value: number; ofMins: number }>;
  targets?: {
    description: string;
    metric: { ratio: string } | { series: string; stat: string };
    max?: number;
    min?: number;
    actual: number;
    met: boolean;
    source: string;
  }[];
  notes?: string[];
}

function value(v: number, unit: Series['unit']): string {
  if (unit === 'MB') return `${v.toFixed(1)} MB`;
  if (unit === '%') return `${v.toFixed(v < 10 ? 2 : 1)} %`;
  if (v >= 10_000) return `${(v / 1000).toFixed(1)} s`;
  if (v < 10) return `${v.toFixed(2)} ms`;
  return `${Math.round(v)} ms`;
}

const times = (r: number) => `${r.toFixed(2)}×`;
const cell = (text: string) => text.replaceAll('|', '\\|');

function targetValue(t: NonNullable<ResultsFile['targets']>[number], r: ResultsFile): string {
  if ('ratio' in t.metric) return times(t.actual);
  const unit = r.series[t.metric.series]?.unit ?? 'ms';
  return value(t.actual, unit);
}

function targetLimit(t: NonNullable<ResultsFile['targets']>[number], r: ResultsFile): string {
  const format = (v: number) =>
    'ratio' in t.metric ? times(v) : value(v, r.series[t.metric.series]?.unit ?? 'ms');
  return [t.max !== undefined ? `≤ ${format(t.max)}` : '', t.min !== undefined ? `≥ ${format(t.min)}` : '']
    .filter(Boolean)
    .join(', ');
}

export function renderBlock(r: ResultsFile): string {
  const m = r.machine;
  const lines: string[] = [];
  const load = `load average ${m.loadAverage[0]} at the start${m.qemuProcesses ? `, ${m.qemuProcesses} other QEMU process${m.qemuProcesses === 1 ? '' : 'es'} running` : ''}${m.nodeExtraCaCerts ? `; NODE_EXTRA_CA_CERTS=${m.nodeExtraCaCerts} (Node parses it at every start-up, floors included)` : ''}`;
  lines.push(
    `_${r.title}. From \`bench/results/${r.name}.json\`, written by \`${r.script}\` on ${m.date.slice(0, 10)} ` +
      `(code at ${r.code.commit}${r.code.dirty ? ' with uncommitted changes' : ''}): ${m.cores} × ${m.cpuModel}, ` +
      `${m.memoryGiB} GiB RAM, Linux ${m.kernel}, Node ${m.node}, QEMU ${m.qemu}; ${load}._`,
    '',
  );
  const entries = Object.entries(r.series);
  if (entries.length > 0) {
    lines.push('| measured | n | min | median | max | p95 |', '| --- | ---: | ---: | ---: | ---: | ---: |');
    for (const [label, s] of entries) {
      const st = s.stats;
      lines.push(
        `| ${cell(label)} | ${st.n} | ${value(st.min, s.unit)} | ${value(st.median, s.unit)} | ${value(st.max, s.unit)} | ${st.p95 === undefined ? '–' : value(st.p95, s.unit)} |`,
      );
    }
    lines.push('');
  }
  const ratios = Object.entries(r.ratios ?? {});
  if (ratios.length > 0) {
    lines.push(
      '| ratio (measured interleaved in this run) | of medians | of minimums |',
      '| --- | ---: | ---: |',
    );
    for (const [label, ratio] of ratios)
      lines.push(`| ${cell(label)} | ${times(ratio.value)} | ${times(ratio.ofMins)} |`);
    lines.push('');
  }
  const targets = r.targets ?? [];
  if (targets.length > 0) {
    lines.push('| target | source | limit | measured | met |', '| --- | --- | ---: | ---: | --- |');
    for (const t of targets)
      lines.push(
        `| ${cell(t.description)} | ${t.source} | ${targetLimit(t, r)} | ${targetValue(t, r)} | ${t.met ? 'yes' : '**no**'} |`,
      );
    lines.push('');
  }
  for (const note of r.notes ?? []) lines.push(`- ${note}`);
  if (r.notes?.length) lines.push('');
  return lines.join('\n').trimEnd();
}

function load(name: string): ResultsFile | undefined {
  const file = path.join(RESULTS, `${name}.json`);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as ResultsFile) : undefined;
}

export function regenerate(readme: string): { text: string; names: string[] } {
  const names: string[] = [];
  const text = readme.replace(
    /(<!-- bench:([a-z0-9-]+):start -->\n)[\s\S]*?(<!-- bench:\2:end -->)/g,
    (_all, start: string, name: string, end: string) => {
      names.push(name);
      const results = load(name);
      const body = results
        ? renderBlock(results)
        : `_No results yet: run \`npm run bench -- ${name}\` (bench/results/${name}.json)._`;
      return `${start}${body}\n${end}`;
    },
  );
  return { text, names };
}

const check = process.argv.includes('--check');
const before = readFileSync(README, 'utf8');
const { text, names } = regenerate(before);
const unused = readdirSync(RESULTS)
  .filter((f) => f.endsWith('.json'))
  .map((f) => f.slice(0, -'.json'.length))
  .filter((n) => !names.includes(n));
if (unused.length) console.error(`bench:report: no README block for ${unused.join(', ')}`);
if (check) {
  if (text !== before) {
    console.error('bench:report: README.md is out of date with bench/results; run npm run bench:report');
    process.exit(1);
  }
} else if (text !== before) {
  writeFileSync(README, text);
  console.log(`bench:report: README.md updated (${names.join(', ')})`);
} else {
  console.log('bench:report: README.md already matches bench/results');
}
