/**
 * The target engines' schemas (copied from the scale-out notes into test/fixtures/scale-out/, so CI needs only
 * the repository), compiled the way the notes' validate.mjs does: ajv, draft 2020-12, every object closed
 * (ajv's default strict mode, in which unknown keywords and
 * formats are errors). And manifests from text, checked as qvm checks them, for the exporter's pure tests.
 */
import { readFileSync } from 'node:fs';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import { parseAllDocuments } from 'yaml';
import { formatDiagnostic } from '../../src/errors.js';
import { parseYaml } from '../../src/manifest/load.js';
import type { Manifest } from '../../src/manifest/types.js';
import { checkManifest } from '../../src/manifest/validate.js';

export function scaleOutFixture(name: string): string {
  return readFileSync(new URL(`../fixtures/scale-out/${name}`, import.meta.url), 'utf8');
}

let validators: Record<'nomad' | 'VirtualMachine' | 'Service', ValidateFunction> | undefined;

function compile(): NonNullable<typeof validators> {
  // ajv's default strict mode, as validate.mjs of the notes: unknown keywords and formats are errors. Union types
  // are how the schemas spell IntOrString.
  const ajv = new Ajv2020({ allErrors: true, allowUnionTypes: true });
  // The one format the schemas use (metav1.Time): RFC 3339, as ajv-formats checks it.
  ajv.addFormat('date-time', /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/);
  const load = (name: string) => JSON.parse(scaleOutFixture(name));
  return {
    nomad: ajv.compile(load('nomad-job.schema.json')),
    VirtualMachine: ajv.compile(load('kubevirt-virtualmachine.schema.json')),
    Service: ajv.compile(load('k8s-service.schema.json')),
  };
}

function describe(errors: ErrorObject[] | null | undefined): string[] {
  return (errors ?? []).map(
    (e) =>
      `${e.instancePath || '/'} ${e.message}${e.params && 'additionalProperty' in e.params ? `: ${e.params.additionalProperty}` : ''}`,
  );
}

/** What the schemas say about one document: [] when it is valid. A document of no known kind is a problem. */
export function schemaProblems(doc: unknown): string[] {
  validators ??= compile();
  const d = doc as { Job?: unknown; kind?: string };
  const validate =
    d && typeof d === 'object' && 'Job' in d
      ? validators.nomad
      : d?.kind === 'VirtualMachine' || d?.kind === 'Service'
        ? validators[d.kind]
        : undefined;
  if (!validate) return [`no schema for ${JSON.stringify(d?.kind)}`];
  return validate(doc) ? [] : describe(validate.errors);
}

/** The documents of an exported file's text: one JSON job, or a YAML stream. */
export function parseExported(name: string, text: string): unknown[] {
  if (name.endsWith('.json')) return [JSON.parse(text)];
  return parseAllDocuments(text).map((d) => {
    if (d.errors.length) throw new Error(`${name}: ${d.errors[0]!.message}`);
    return d.toJS();
  });
}

/** A manifest from YAML text, as `qvm validate` would accept it (relative paths against DIR). */
export function manifestFrom(text: string, dir = '/srv/vms', file = 'vm.yaml'): Manifest {
  const result = checkManifest(parseYaml(text, file), dir);
  if (!result.manifest) throw new Error(result.diagnostics.map(formatDiagnostic).join('\n'));
  return result.manifest;
}

/** Like manifestFrom, but undefined when qvm refuses the text (for generated manifests). */
export function manifestOrUndefined(text: string, dir = '/srv/vms'): Manifest | undefined {
  return checkManifest(parseYaml(text, 'vm.yaml'), dir).manifest;
}
