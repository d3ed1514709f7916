/**
 * One disk, one VM: two VMs of a manifest (or of a folder of manifests) naming the same disk file, directly or
 * through a symlink, would fight over it (QEMU locks an image while it runs, so the second would fail, and a
 * `destroy --delete-disks` of one would take the other's disk). The disk file's identity is its real path.
 */
import { realpathSync } from 'node:fs';
import path from 'node:path';
import type { Diagnostic } from '../../errors.js';
import type { ManifestCheck, VmCheck, VmDocument } from '../document.js';

function diskPath(doc: VmDocument): string | undefined {
  const disk = doc.raw.disk;
  if (disk === undefined || disk === null || !doc.accepted('disk')) return undefined;
  return doc.resolve(typeof disk === 'string' ? disk : disk.path);
}

/** The real path of a file, or of its folder plus its name when the file does not exist yet. */
function realPath(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    try {
      return path.join(realpathSync(path.dirname(file)), path.basename(file));
    } catch {
      return file;
    }
  }
}

/** Every disk file a VM names, with where: its OS disk and its data disks. */
function diskFiles(doc: VmDocument): { file: string; field: (string | number)[] }[] {
  const out: { file: string; field: (string | number)[] }[] = [];
  const main = diskPath(doc);
  if (main) out.push({ file: main, field: ['disk'] });
  if (doc.accepted('disks') && Array.isArray(doc.raw.disks)) {
    doc.raw.disks.forEach((d, i) => {
      out.push({ file: doc.resolve(d.path), field: ['disks', i, 'path'] });
    });
  }
  return out;
}

export const checkDiskClaims: ManifestCheck = (docs) => {
  const out: Diagnostic[] = [];
  const claimed = new Map<string, { doc: VmDocument; field: (string | number)[] }>();
  for (const doc of docs) {
    for (const { file, field } of diskFiles(doc)) {
      const real = realPath(file);
      const first = claimed.get(real);
      if (!first) {
        claimed.set(real, { doc, field });
        continue;
      }
      const via = real === file ? '' : ` (through ${file} -> ${real})`;
      const [owner, why] =
        first.doc === doc
          ? [`${formatLocalField(first.field)} of this VM`, 'a disk is attached once']
          : [`the disk of VM ${first.doc.name}`, 'two VMs cannot share a disk'];
      out.push(doc.problem(field, `is also ${owner} (${first.doc.where(first.field)})${via}; ${why}`));
    }
  }
  return out;
};

function formatLocalField(field: (string | number)[]): string {
  return field[0] === 'disks' ? `disks[${field[1]}]` : 'the disk';
}
/** A raw disk cannot be an overlay (qvm creates overlays as qcow2), and cannot hold snapshots. */
export const checkDiskFormat: VmCheck = (doc) => {
  const disk = doc.raw.disk;
  if (!doc.accepted('disk') || typeof disk !== 'object' || disk === null || disk.format !== 'raw') return [];
  const out: Diagnostic[] = [];
  if (disk.backing !== undefined)
    out.push(
      doc.problem(
        ['disk', 'backing'],
        'needs format qcow2: qvm creates overlays of a backing image as qcow2',
      ),
    );
  for (const field of ['snapshot', 'state'] as const) {
    if (field === 'state' && doc.raw.state !== 'saved') continue;
    if (doc.raw[field] === undefined) continue;
    out.push(
      doc.problem(
        [field],
        'needs a qcow2 disk: QEMU saves snapshots (RAM and devices) into the disk, and this one is raw. Convert it with qemu-img convert -O qcow2, then declare format qcow2',
      ),
    );
  }
  return out;
};
