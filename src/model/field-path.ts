/** A path into a manifest (keys and list indexes), and the one way qvm prints it: `vms.web.forwards[1].host`. */

export type FieldPath = ReadonlyArray<string | number>;

/** Whether the printed path PATH is the field PREFIX or a field inside it (`images.a` is not inside `images.ab`). */
export function isWithinField(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(`${prefix}.`) || path.startsWith(`${prefix}[`);
}

export function formatFieldPath(path: FieldPath): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(part)) out += out ? `.${part}` : part;
    else out += `[${JSON.stringify(part)}]`;
  }
  return out;
}
