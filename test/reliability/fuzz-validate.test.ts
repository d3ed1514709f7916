/**
 * The validator, property-based (fast-check), counting what it reached:
 * - manifests valid by construction (manifest-arbitraries.ts) all validate, with no diagnostic;
 * - each targeted mutation breaks one rule of a valid manifest, and the validator rejects it with a diagnostic
 *   at exactly that field (file, line, field path) saying which rule;
 * - hostile noise (random edits of YAML text, arbitrary documents, odd VM names) never crashes it, and every
 *   rejection comes with at least one located diagnostic.
 * Each property ends by asserting floors on what it exercised, so a generator that drifts into producing only
 * YAML syntax errors, or only one kind of mutation, fails instead of passing hollow.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { type Diagnostic, formatDiagnostic } from '../../src/errors.js';
import { parseYaml } from '../../src/manifest/load.js';
import { checkManifest } from '../../src/manifest/validate.js';
import {
  lineOf,
  MUTATIONS,
  PROPERTY_TIMEOUT_MS,
  printedPath,
  RUNS,
  validManifest,
} from './manifest-arbitraries.js';

const FILE = 'fuzz.yaml';

function check(text: string) {
  return checkManifest(parseYaml(text, FILE), '/srv/vms');
}

/** A diagnostic names the file, a line from 1 and a message. */
function isLocated(d: Diagnostic): boolean {
  return d.file === FILE && typeof d.line === 'number' && d.line >= 1 && d.message.length > 0;
}

/** What each property reached, printed at the end of the file (and asserted in each test). */
const reached: Record<string, unknown> = {};
// The yaml library warns (process.emitWarning) about every mapping used as a key, which noise produces by the
// hundred; this test file's own worker does not print them, so the run stays readable.
process.removeAllListeners('warning');
// No shrinking: shrinking these generated manifests ran for over ten minutes with the event loop blocked, so
// vitest's timeout never fired. A failure prints the failing case whole (every assertion shows its text).
fc.configureGlobal({ endOnFailure: true });
afterAll(() => {
  console.log(`property tests of the validator, ${RUNS} runs each:\n${JSON.stringify(reached, null, 2)}`);
});

describe('valid by construction', () => {
  it(`every one of ${RUNS} generated manifests validates, and they use every field`, {
    timeout: PROPERTY_TIMEOUT_MS,
  }, () => {
    const fields = new Map<string, number>();
    let vms = 0;
    let validated = 0;
    fc.assert(
      fc.property(validManifest, (doc) => {
        const text = stringify(doc);
        const result = check(text);
        // A rejection here is a bug in the generator or in the validator; either way, show it.
        expect(result.diagnostics.map(formatDiagnostic), text).toEqual([]);
        expect(result.manifest!.vms.map((v) => v.name)).toEqual(Object.keys(doc.vms));
        validated++;
        for (const vm of Object.values(doc.vms)) {
          vms++;
          for (const field of Object.keys(vm)) fields.set(field, (fields.get(field) ?? 0) + 1);
        }
      }),
      { numRuns: RUNS },
    );
    reached.validManifests = { runs: RUNS, validated, vms, fields: Object.fromEntries(fields) };
    expect(validated).toBe(RUNS);
    // Every field of the schema was generated, most of them often: a field the generator stopped producing
    // would leave its rules untested.
    const all = [
      'memory',
      'cpus',
      'disk',
      'cdrom',
      'kernel',
      'initrd',
      'append',
      'nic',
      'forwards',
      'snapshot',
      'state',
      'stopTimeout',
      'accel',
      'monitor',
      'args',
      'restart',
      'ready',
      'image',
      'cloudInit',
      'ssh',
      'agent',
      'mounts',
      'disks',
      'display',
    ];
    for (const field of all) expect(fields.get(field) ?? 0, `VMs with ${field}`).toBeGreaterThan(vms / 100);
  });
});

describe('targeted mutations', () => {
  it(`each of ${MUTATIONS.length} mutations of a valid manifest is rejected at the field it broke (${RUNS} runs)`, {
    timeout: PROPERTY_TIMEOUT_MS,
  }, () => {
    const tried = new Map<string, number>();
    fc.assert(
      fc.property(
        validManifest,
        fc.integer({ min: 0, max: MUTATIONS.length - 1 }),
        fc.nat(1000),
        (doc, which, pick) => {
          const mutation = MUTATIONS[which]!;
          const mutated = mutation.apply(doc, pick);
          const text = stringify(mutated.doc);
          const result = check(text);
          const shown = `${mutation.name}:\n${text}\n${result.diagnostics.map(formatDiagnostic).join('\n')}`;
          expect(result.manifest, shown).toBeUndefined();
          expect(result.diagnostics.length, shown).toBeGreaterThan(0);
          expect(result.diagnostics.every(isLocated), shown).toBe(true);
          const path = printedPath(mutated.field);
          const at = result.diagnostics.filter((d) => d.path === path);
          expect(at, `no diagnostic at ${path}; ${shown}`).toHaveLength(1);
          expect(at[0]!.message, shown).toContain(mutated.says);
          expect(at[0]!.line, `line of ${path}; ${shown}`).toBe(
            lineOf(text, mutated.locatedAt ?? mutated.field, mutated.atKey),
          );
          // The one rule broken is the one reported: nothing else of the manifest is blamed.
          expect(
            result.diagnostics.map((d) => d.path),
            shown,
          ).toEqual([path]);
          tried.set(mutation.name, (tried.get(mutation.name) ?? 0) + 1);
        },
      ),
      { numRuns: RUNS },
    );
    reached.mutations = Object.fromEntries(tried);
    // Every mutation ran, each a fair share of the runs.
    for (const mutation of MUTATIONS) {
      expect(tried.get(mutation.name) ?? 0, mutation.name).toBeGreaterThanOrEqual(
        Math.max(1, Math.floor(RUNS / MUTATIONS.length / 4)),
      );
    }
  });
});

/** Strings users could type, hostile ones included: newlines, `;`, quotes, spaces, traversal, commas. */
const hostileString = fc.oneof(
  fc.string(),
  fc.constantFrom(
    'quit',
    'a\nquit',
    'x;quit',
    '"; quit; "',
    "' || rm -rf / #",
    '../../etc/passwd',
    'a b',
    'file.qcow2,if=none,file=/etc/shadow',
    '\u001b[2J',
    '\r\ninfo',
    '$(reboot)',
    '`id`',
    '',
  ),
);

/** How far a document got: YAML syntax, the schema, the semantic checks, or all the way (valid). */
type Stage = 'yaml' | 'shape' | 'schema' | 'semantic' | 'valid';

function stageOf(text: string): Stage {
  const loaded = parseYaml(text, FILE);
  if (loaded.diagnostics.length > 0) return 'yaml';
  const result = checkManifest(loaded, '/srv/vms');
  if (result.manifest) return 'valid';
  const value = loaded.value as { vms?: unknown } | null;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'shape';
  // Schema messages come from the schema's wording; the semantic checks have their own.
  const semantic = result.diagnostics.some((d) =>
    /needs|claims the same host port|is also the|is managed by qvm|must be at most|must be the host port|is a writable|cannot be used with|is not a port|is not an IPv4/.test(
      d.message,
    ),
  );
  return semantic ? 'semantic' : 'schema';
}

describe('hostile noise', () => {
  it(`never crashes on ${RUNS} edits of a valid manifest's text, and locates every rejection`, {
    timeout: PROPERTY_TIMEOUT_MS,
  }, () => {
    const stages: Record<Stage, number> = { yaml: 0, shape: 0, schema: 0, semantic: 0, valid: 0 };
    // Edits of the text: most replace a value or a line (so the YAML mostly still parses and the checks that
    // know about VMs are reached), some insert raw YAML syntax anywhere.
    const edit = fc.oneof(
      fc.record({ kind: fc.constant('value' as const), at: fc.nat(), text: hostileString }),
      fc.record({ kind: fc.constant('line' as const), at: fc.nat(), text: fc.constantFrom('dup', 'drop') }),
      fc.record({
        kind: fc.constant('raw' as const),
        at: fc.nat(),
        text: fc.oneof(
          hostileString,
          fc.constantFrom(
            ':',
            '-',
            '[',
            '{',
            '}',
            ']',
            '\n  ',
            '\t',
            '&a',
            '*a',
            '!!binary',
            '---\n',
            '? ',
            '|',
          ),
        ),
      }),
    );
    fc.assert(
      fc.property(validManifest, fc.array(edit, { minLength: 1, maxLength: 3 }), (doc, edits) => {
        let text = stringify(doc);
        for (const e of edits) {
          const lines = text.split('\n');
          const i = e.at % lines.length;
          if (e.kind === 'raw') {
            const at = e.at % (text.length + 1);
            text = text.slice(0, at) + e.text + text.slice(at);
          } else if (e.kind === 'line') {
            lines.splice(i, e.text === 'drop' ? 1 : 0, ...(e.text === 'dup' ? [lines[i]!] : []));
            text = lines.join('\n');
          } else {
            // The value after `key: ` on that line, as a YAML double-quoted string (any text at all).
            lines[i] = lines[i]!.replace(
              /^(\s*(?:- )?[^:]+: ).*$/,
              (_m, key: string) => `${key}${JSON.stringify(e.text)}`,
            );
            text = lines.join('\n');
          }
        }
        const result = check(text);
        stages[stageOf(text)]++;
        if (result.manifest) return result.diagnostics.length === 0;
        return result.diagnostics.length > 0 && result.diagnostics.every(isLocated);
      }),
      { numRuns: RUNS },
    );
    reached.textEdits = stages;
    // Most edits must get past YAML syntax into the checks that know about VMs, or the property says little.
    expect(stages.schema + stages.semantic + stages.valid).toBeGreaterThan(RUNS * 0.3);
    expect(stages.semantic).toBeGreaterThan(0);
    expect(stages.yaml).toBeGreaterThan(0);
  });

  it(`never crashes on ${RUNS} generated documents, and locates every rejection`, {
    timeout: PROPERTY_TIMEOUT_MS,
  }, () => {
    const stages: Record<Stage, number> = { yaml: 0, shape: 0, schema: 0, semantic: 0, valid: 0 };
    const value = fc.oneof(
      hostileString,
      fc.integer(),
      fc.double(),
      fc.boolean(),
      fc.constant(null),
      fc.array(fc.oneof(hostileString, fc.integer())),
      fc.dictionary(hostileString, fc.oneof(hostileString, fc.integer())),
    );
    const vm = fc.dictionary(
      fc.constantFrom(
        'memory',
        'cpus',
        'disk',
        'cdrom',
        'kernel',
        'initrd',
        'append',
        'nic',
        'forwards',
        'snapshot',
        'state',
        'stopTimeout',
        'accel',
        'monitor',
        'args',
        'restart',
        'ready',
        'bogus',
      ),
      value,
    );
    const document = fc.oneof(
      { weight: 4, arbitrary: fc.record({ vms: fc.dictionary(hostileString, vm) }) },
      { weight: 1, arbitrary: fc.anything() },
    );
    fc.assert(
      fc.property(document, (doc) => {
        const text = stringify(doc);
        const result = check(text);
        stages[stageOf(text)]++;
        return result.manifest !== undefined
          ? result.diagnostics.length === 0
          : result.diagnostics.length > 0 && result.diagnostics.every(isLocated);
      }),
      { numRuns: RUNS },
    );
    reached.generatedDocuments = stages;
    expect(stages.schema + stages.semantic).toBeGreaterThan(RUNS * 0.3);
    expect(stages.shape).toBeGreaterThan(0);
    expect(stages.valid).toBeGreaterThan(0);
  });

  it(`keeps VM names inside the runtime folder: ${RUNS} hostile names, only [a-z][a-z0-9-]{0,39} accepted`, {
    timeout: PROPERTY_TIMEOUT_MS,
  }, () => {
    let accepted = 0;
    fc.assert(
      fc.property(fc.oneof(hostileString, fc.stringMatching(/^[a-z][a-z0-9-]{0,39}$/)), (name) => {
        const result = check(stringify({ vms: { [name]: {} } }));
        if (result.manifest) {
          accepted++;
          return /^[a-z][a-z0-9-]{0,39}$/.test(name);
        }
        return result.diagnostics.length > 0 && result.diagnostics.every(isLocated);
      }),
      { numRuns: RUNS },
    );
    reached.vmNames = { runs: RUNS, accepted };
    expect(accepted).toBeGreaterThan(RUNS * 0.2);
    expect(accepted).toBeLessThan(RUNS);
  });
});
