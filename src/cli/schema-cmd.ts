/** `qvm schema`: the manifest's JSON Schema of this installed qvm, for editors and CI. */
import { readFileSync } from 'node:fs';
import { SCHEMA_URL } from '../manifest/schema-fields.js';
import type { Output } from './output.js';

export function schemaCommand(output: Output): number {
  output.out.write(readFileSync(SCHEMA_URL, 'utf8'));
  return 0;
}
