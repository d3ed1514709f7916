/** `qvm validate`: checks a manifest without touching any VM. */
import { loadManifest } from '../manifest/manifest.js';
import { manifestLoadOptions } from '../runtime/file-store.js';
import { type Output, writeLine } from './output.js';

export async function validateCommand(file: string, output: Output): Promise<number> {
  const manifest = await loadManifest(file, manifestLoadOptions());
  const count = manifest.vms.length;
  writeLine(
    output.out,
    `${file}: valid, ${count} VM${count === 1 ? '' : 's'} (${manifest.vms.map((v) => v.name).join(', ') || 'none'})`,
  );
  return 0;
}
