// Line and branch coverage of src/ for `npm test`, from both places qvm's code runs during the tests:
// - the tests' own processes, measured by vitest (@vitest/coverage-v8): coverage/vitest/coverage-final.json;
// - every `node bin/qvm.js` the tests start (and the other node children: lock holders...), which wrote raw
//   V8 coverage into coverage/children (NODE_V8_COVERAGE, set by test/helpers/child-coverage.ts). They ran
//   dist/*.js; dist's source maps lead back to src/*.ts.
// Both are turned into istanbul coverage by the same converter (ast-v8-to-istanbul, the one vitest uses), so
// each file has the same statements, functions and branches in the same order from either side; the
// children's counts are added to vitest's entry by entry. Writes coverage/coverage-final.json,
// coverage/coverage-summary.json, coverage/index.html (per file), coverage/untested-branches.txt (every
// branch of src/plan, src/apply and src/observe no test took), and prints the totals.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { mergeProcessCovs } from '@bcoe/v8-coverage';
import astV8ToIstanbul from 'ast-v8-to-istanbul';
import libCoverage from 'istanbul-lib-coverage';
import libReport from 'istanbul-lib-report';
import reports from 'istanbul-reports';
import { parseAstAsync } from 'vitest/node';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'coverage');
const children = process.env.QVM_CHILD_COVERAGE ?? path.join(out, 'children');
const distUrl = `${pathToFileURL(path.join(root, 'dist')).href}/`;

/** Every child's coverage of dist/, merged into one process's worth (counts added). */
function childCoverage() {
  if (!existsSync(children)) return { result: [], files: 0 };
  let merged = { result: [] };
  let files = 0;
  for (const name of readdirSync(children)) {
    if (!name.endsWith('.json')) continue;
    let data;
    try {
      data = JSON.parse(readFileSync(path.join(children, name), 'utf8'));
    } catch {
      continue; // a child killed while writing it
    }
    const ours = data.result.filter((s) => s.url.startsWith(distUrl) && /\.c?js$/.test(s.url));
    if (ours.length === 0) continue;
    files++;
    merged = mergeProcessCovs([merged, { result: ours }]);
  }
  return { result: merged.result, files };
}

/** One dist file's V8 coverage as istanbul coverage of its src/*.ts file. */
async function toIstanbul(script) {
  const file = fileURLToPath(script.url);
  const code = readFileSync(file, 'utf8');
  const map = JSON.parse(readFileSync(`${file}.map`, 'utf8'));
  map.sources = map.sources.map((source) => new URL(source, script.url).href);
  return astV8ToIstanbul({
    code,
    sourceMap: map,
    ast: await parseAstAsync(code),
    coverage: { functions: script.functions, url: script.url },
    wrapperLength: 0,
  });
}

/**
 * Adds the children's counts to vitest's entries of the same file. The two converters saw different
 * JavaScript (tsc's and vite's) of the same TypeScript, so entries are matched by their order; a file whose
 * entries do not pair up (different counts) is matched by start position instead, and reported.
 */
function addCounts(into, from, report) {
  const a = into.data;
  const b = from.toJSON();
  for (const [hits, map, locOf] of [
    ['s', 'statementMap', (x) => x],
    ['f', 'fnMap', (x) => x.loc],
    ['b', 'branchMap', (x) => x.loc ?? x.locations[0]],
  ]) {
    const keysA = Object.keys(a[map]);
    const keysB = Object.keys(b[map]);
    const arity = (m, k) => (hits === 'b' ? m[k].locations.length : 1);
    const paired =
      keysA.length === keysB.length && keysA.every((k, i) => arity(a[map], k) === arity(b[map], keysB[i]));
    const pairs = paired
      ? keysA.map((k, i) => [k, keysB[i]])
      : keysB.flatMap((kb) => {
          const start = locOf(b[map][kb]).start;
          const ka = keysA.find((k) => {
            const s = locOf(a[map][k]).start;
            return (
              s.line === start.line && s.column === start.column && arity(a[map], k) === arity(b[map], kb)
            );
          });
          if (!ka) report.unmatched++;
          return ka ? [[ka, kb]] : [];
        });
    if (!paired) report.byPosition.add(`${path.relative(root, into.path)} (${map})`);
    for (const [ka, kb] of pairs) {
      if (hits === 'b') a.b[ka] = a.b[ka].map((n, i) => n + (b.b[kb][i] ?? 0));
      else a[hits][ka] += b[hits][kb];
    }
  }
}

/** What way I of a branch of TYPE is, in words. */
function wayOf(type, i, n) {
  if (type === 'if') return i === 0 ? 'if: the condition held' : 'if: the condition did not hold';
  if (type === 'cond-expr') return i === 0 ? '?: the true side' : '?: the false side';
  if (type === 'default-arg') return 'default argument used';
  if (type === 'switch') return `switch: case ${i + 1} of ${n}`;
  if (type === 'binary-expr') return `&&/||/??: operand ${i + 1} of ${n} evaluated`;
  return `${type}: way ${i + 1} of ${n}`;
}

/** Every branch (each way of it) of the files under DIRS that no test took: `file:line  way  source`. */
function untestedBranches(map, dirs) {
  const lines = [];
  for (const file of map.files().sort()) {
    const rel = path.relative(root, file);
    if (!dirs.some((d) => rel.startsWith(d))) continue;
    const text = readFileSync(file, 'utf8').split('\n');
    const fc = map.fileCoverageFor(file).toJSON();
    for (const [key, branch] of Object.entries(fc.branchMap)) {
      fc.b[key].forEach((count, i) => {
        if (count > 0) return;
        const at = branch.locations[i]?.start?.line ? branch.locations[i] : branch.loc;
        const line = at.start.line;
        const source = text[line - 1]?.trim() ?? '';
        lines.push(
          `${rel}:${line}  ${wayOf(branch.type, i, branch.locations.length)}  ${source.slice(0, 100)}`,
        );
      });
    }
  }
  return lines;
}

const vitestJson = path.join(out, 'vitest', 'coverage-final.json');
if (!existsSync(vitestJson)) {
  console.error(`qvm: no ${path.relative(root, vitestJson)}: run the tests with --coverage first`);
  process.exit(1);
}
const map = libCoverage.createCoverageMap(JSON.parse(readFileSync(vitestJson, 'utf8')));
const inProcess = libCoverage.createCoverageMap(JSON.parse(readFileSync(vitestJson, 'utf8')));
const { result, files } = childCoverage();
const report = { unmatched: 0, byPosition: new Set() };
for (const script of result) {
  const converted = libCoverage.createCoverageMap(await toIstanbul(script));
  for (const file of converted.files()) {
    if (!file.startsWith(path.join(root, 'src'))) continue;
    if (map.files().includes(file))
      addCounts(map.fileCoverageFor(file), converted.fileCoverageFor(file), report);
    else map.addFileCoverage(converted.fileCoverageFor(file));
  }
}

writeFileSync(path.join(out, 'coverage-final.json'), JSON.stringify(map.toJSON()));
const context = libReport.createContext({ dir: out, coverageMap: map, defaultSummarizer: 'nested' });
for (const kind of ['json-summary', 'html']) reports.create(kind).execute(context);
reports.create('text', { file: 'coverage.txt' }).execute(context);
const untested = untestedBranches(map, ['src/plan/', 'src/apply/', 'src/observe/']);
writeFileSync(path.join(out, 'untested-branches.txt'), `${untested.join('\n')}\n`);

const pct = (summary) => `${summary.pct.toFixed(1)}% (${summary.covered}/${summary.total})`;
const total = map.getCoverageSummary();
const own = inProcess.getCoverageSummary();
console.log(`\nqvm: coverage of src/ (tests' own processes and ${files} qvm child processes):`);
console.log(`  lines     ${pct(total.lines)}    (tests' own processes alone: ${own.lines.pct.toFixed(1)}%)`);
console.log(
  `  branches  ${pct(total.branches)}    (tests' own processes alone: ${own.branches.pct.toFixed(1)}%)`,
);
console.log(`  functions ${pct(total.functions)}`);
console.log(`  statements ${pct(total.statements)}`);
for (const dir of ['plan', 'apply', 'observe']) {
  const summary = libCoverage.createCoverageSummary();
  for (const file of map.files())
    if (file.startsWith(path.join(root, 'src', dir, path.sep)))
      summary.merge(map.fileCoverageFor(file).toSummary());
  console.log(`  src/${dir}/: lines ${pct(summary.lines)}, branches ${pct(summary.branches)}`);
}
console.log(
  `  per file: coverage/coverage.txt and coverage/index.html; untested branches of plan/, apply/, observe/: coverage/untested-branches.txt (${untested.length})`,
);
// The children ran esbuild's bundle and the tests vite's transform of the same TypeScript: where the two
// split a file into different entries, they are paired by start position, and a child's entry with no partner
// is left out (its file's coverage is then understated, never overstated).
if (report.byPosition.size > 0) {
  const files = new Set([...report.byPosition].map((entry) => entry.replace(/ \(\w+\)$/, '')));
  writeFileSync(path.join(out, 'matched-by-position.txt'), `${[...report.byPosition].join('\n')}\n`);
  console.log(
    `  ${files.size} files matched by position (the two transforms differ; coverage/matched-by-position.txt); ${report.unmatched} child entries had no match and are left out`,
  );
}
