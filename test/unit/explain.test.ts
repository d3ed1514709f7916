/** `qvm explain`: a field's documentation, generated from the schema (as `kubectl explain` does), exactly. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { findField, readSchema } from '../../src/manifest/schema-fields.js';
import { runMain } from '../helpers/main.js';

describe('qvm explain', () => {
  it('explains vms.ready.http: type, change, description, its fields and an example', async () => {
    expect(await runMain(['explain', 'vms.ready.http'])).toEqual({
      exitCode: 0,
      stderr: '',
      stdout: `FIELD:    vms.<name>.ready.http
TYPE:     mapping
CHANGE:   next start: used from the VM's next start; a running VM is left as it is

DESCRIPTION:
  An HTTP GET through one of the VM's tcp forwards: ready when it answers with \`status\`.

FIELDS:
  port    <integer> -required-
    Host port of one of the VM's tcp forwards.
  path    <string>
    The path to request.
  status  <integer>
    The HTTP status that means ready.

EXAMPLES:
  http:
    port: 8080
    path: /
    status: 200
`,
    });
  });

  it('finds a VM field without vms.<name>. in front, and says it restarts the VM', async () => {
    expect((await runMain(['explain', 'disk.size'])).stdout).toBe(`FIELD:    vms.<name>.disk.size
TYPE:     string
CHANGE:   restart: \`qvm apply\` restarts the VM: a graceful stop, then a start with the new command line

DESCRIPTION:
  Virtual size used when qvm creates the disk: an integer with a K, M, G or T suffix. Needed unless
  \`backing\` is set (an overlay takes the backing image's size).

EXAMPLES:
  size: 8G
  size: 64M
`);
  });

  it('prints the default, and says forwards change live', async () => {
    const memory = (await runMain(['explain', 'vms.web.memory'])).stdout;
    expect(memory.split('\n').slice(0, 4)).toEqual([
      'FIELD:    vms.<name>.memory',
      'TYPE:     integer or string',
      'DEFAULT:  512M',
      'CHANGE:   restart: `qvm apply` restarts the VM: a graceful stop, then a start with the new command line',
    ]);
    const forwards = (await runMain(['explain', 'forwards.host'])).stdout;
    expect(forwards.split('\n').slice(0, 3)).toEqual([
      'FIELD:    vms.<name>.forwards.host',
      'TYPE:     integer, required',
      'CHANGE:   live: applied to the running VM through its monitor; the VM keeps running',
    ]);
  });

  it('lists the top level, and every field as a tree with --recursive', async () => {
    const top = (await runMain(['explain'])).stdout;
    expect(top).toContain('FIELDS:\n  images    <mapping of names to mappings>\n');
    expect(top).toContain('  vms       <mapping of names to mappings> -required-\n');
    const tree = (await runMain(['explain', 'ready', '--recursive'])).stdout;
    expect(tree).toContain(
      [
        'FIELDS:',
        '  ssh       <true>',
        '  agent     <true>',
        '  tcp       <integer>',
        '  http      <mapping>',
        '    port    <integer> -required-',
        '    path    <string>',
        '    status  <integer>',
        '  timeout   <number or string>',
        '',
      ].join('\n'),
    );
  });

  it('says which field was meant when a path names none', async () => {
    expect(await runMain(['explain', 'vms.web.size'])).toEqual({
      exitCode: 1,
      stdout: '',
      stderr:
        'error: the manifest has no field vms.web.size; did you mean vms.<name>.disk.size or vms.<name>.disks.size? (`qvm explain` lists the top-level fields, `qvm explain vms --recursive` every field of a VM)\n',
    });
  });
});

describe('the README field table', () => {
  // "Not written twice": the table's default and "changing it" columns are the schema's, held to it here.
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const table = readme.slice(readme.indexOf('| field | meaning | default | changing it |'));
  const lines = table.split('\n');
  const rows = lines.slice(2, lines.indexOf(''));
  const schema = readSchema();

  it.each(rows.map((row) => [row.split(' | ')[0]!.slice(2), row]))('%s', (fields, row) => {
    const cells = row.split(' | ');
    const defaultCell = cells.at(-2)!;
    const changeCell = cells.at(-1)!.replace(/ \|$/, '').replace(/\*\*/g, '');
    for (const name of [...fields.matchAll(/`([a-zA-Z]+)`/g)].map((m) => m[1]!)) {
      const field = findField(['vms', name], schema)!;
      expect(field, name).toBeDefined();
      expect(
        changeCell.startsWith(field.change!),
        `${name}: "${changeCell}" vs x-change ${field.change}`,
      ).toBe(true);
      const wanted = field.node.default === undefined ? 'none' : `\`${field.node.default}\``;
      expect(defaultCell, name).toBe(wanted);
    }
  });
});
