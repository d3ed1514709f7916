/**
 * The manifest validator is ajv's standalone code generated from schemas/qvm.schema.json and committed
 * (src/manifest/schema-validator.generated.ts): it must be exactly what the schema gives now, and find what
 * ajv compiling the schema at run time finds.
 */
import { readFileSync } from 'node:fs';
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import {
  addAnnotationKeywords,
  GENERATED_FILE,
  generateValidator,
  SCHEMA_FILE,
} from '../../scripts/schema-validator.js';
import { validate as generated } from '../../src/manifest/schema-validator.generated.js';

describe('the generated schema validator', () => {
  it('matches schemas/qvm.schema.json (after editing the schema, run npm run schema)', () => {
    const fresh = generateValidator(readFileSync(SCHEMA_FILE, 'utf8'));
    const committed = readFileSync(GENERATED_FILE, 'utf8');
    // Compared as a boolean: a diff of 100 kB of generated code would hide the message.
    expect(committed === fresh, `${GENERATED_FILE} is stale: run npm run schema and commit it`).toBe(true);
  });

  it('reports what ajv compiling the whole schema at run time reports, in everything schema.ts reads', () => {
    // The generator drops annotations and does not inline $refs; the findings must not change.
    const ajv = addAnnotationKeywords(new Ajv2020({ allErrors: true, verbose: true, strict: true }));
    const compiled = ajv.compile(JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')));
    const documents: unknown[] = [
      { vms: { web: { memory: '512M', forwards: ['tcp::8080-:80', { host: 80 }] } } },
      // An empty path fails minLength, which runs ajv's ucs2length helper (inlined by the generator).
      { vms: { web: { disk: '', cdrom: '', kernel: 'k', colour: 1 }, Bad: {} } },
      { images: { x: { url: 'ftp://x' } }, vms: { a: { ready: { ssh: false, http: { port: 0 } } } } },
      { vms: [] },
      // main's guest-integration fields, templates (defaults:, x-* anchors) and the x-change annotation.
      {
        defaults: { memory: 512, agent: 'yes' },
        'x-base': { memory: '1G' },
        vms: {
          dev: {
            agent: 1,
            display: { vnc: { port: 80, address: '' } },
            disks: [{ path: '', size: 'big' }, { format: 'vmdk' }],
            mounts: [{ host: 'src' }, { host: 'a', guest: 'relative', writable: 'no' }],
            ready: { agent: 'sure' },
          },
        },
      },
    ];
    const shape = (errors: ErrorObject[] | null | undefined) =>
      (errors ?? []).map((e) => ({
        at: e.instancePath,
        keyword: e.keyword,
        params: e.params,
        propertyName: e.propertyName,
        message: e.message,
        data: e.data,
        errorMessage: e.parentSchema?.errorMessage,
        known: Object.keys(e.parentSchema?.properties ?? {}),
      }));
    const check = generated as unknown as typeof compiled;
    for (const document of documents) {
      expect(check(document)).toBe(false);
      expect(compiled(document)).toBe(false);
      expect(shape(check.errors)).toEqual(shape(compiled.errors));
    }
  });
});
