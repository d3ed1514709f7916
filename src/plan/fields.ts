/**
 * What differs between the launch a VM runs with and the one the manifest asks for, in manifest terms. Every
 * field of the launch is compared, so a field added to the launch spec shows up here without a change to this
 * file; the table only says how a field is named and shown when that is not plain.
 */
import { formatMemory } from '../model/units.js';
import type { LaunchSpec } from '../qemu/argv.js';
import type { RecordedLaunch } from '../runtime/records.js';
import { display } from './describe.js';
import type { FieldChange } from './types.js';

type Shown = Record<string, unknown>;

/** Launch fields that are not restart-relevant (forwards change live; loadvm only matters at boot). */
const NOT_COMPARED = new Set(['name', 'forwards', 'loadvm']);

/** Manifest names and formats for launch fields whose key or value differs from what the user wrote. */
const FIELD_DISPLAY: Record<string, { field: string; show: (value: unknown, baseDir: string) => string }> = {
  memoryMiB: { field: 'memory', show: (v) => formatMemory(v as number) },
  disk: {
    field: 'disk',
    show: (v, dir) => {
      const disk = v as { path: string; format: string };
      return `${display(dir, disk.path)}${disk.format === 'qcow2' ? '' : ` (${disk.format})`}`;
    },
  },
  append: { field: 'append', show: (v) => JSON.stringify(v) },
  // The seed's content is shown by its effect, not its hash (and never its keys).
  seed: { field: 'cloud-init seed', show: (v) => (v === undefined ? '(none)' : 'set') },
  args: { field: 'args', show: (v) => JSON.stringify(v) },
  devices: { field: 'devices', show: (v) => (v === 'nodefaults' ? 'lean (-nodefaults)' : String(v)) },
  agent: { field: 'agent', show: (v) => (v ? 'true' : 'false') },
  mounts: {
    field: 'mounts',
    show: (v, dir) =>
      (v as { host: string; readonly: boolean }[] | undefined)
        ?.map((m) => `${display(dir, m.host)}${m.readonly ? '' : ' (writable)'}`)
        .join(', ') ?? '(none)',
  },
  dataDisks: {
    field: 'disks',
    show: (v, dir) =>
      (v as { path: string }[] | undefined)?.map((d) => display(dir, d.path)).join(', ') ?? '(none)',
  },
  display: {
    field: 'display',
    show: (v) => {
      const d = v as { vnc: 'socket' } | { vnc: 'tcp'; address: string; port: number } | undefined;
      if (!d) return '(none)';
      return d.vnc === 'socket' ? 'vnc' : `vnc ${d.address}:${d.port}`;
    },
  },
};

const PATH_FIELDS = new Set(['cdrom', 'kernel', 'initrd']);

function show(key: string, value: unknown, baseDir: string): string {
  if (value === undefined) {
    if (key === 'devices') return "QEMU's defaults"; // a launch by a qvm older than the lean device set
    return key === 'append' ? '""' : key === 'agent' ? 'false' : '(none)';
  }
  const custom = FIELD_DISPLAY[key];
  if (custom) return custom.show(value, baseDir);
  if (PATH_FIELDS.has(key)) return display(baseDir, value as string);
  return typeof value === 'string' || typeof value === 'number' ? String(value) : JSON.stringify(value);
}

/** Restart-class fields that differ between the launch a process was started with and the wanted one. */
export function fieldChanges(before: RecordedLaunch, after: LaunchSpec, baseDir: string): FieldChange[] {
  const b = before as unknown as Shown;
  const a = after as unknown as Shown;
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => !NOT_COMPARED.has(k));
  const changes: FieldChange[] = [];
  for (const key of keys) {
    if (JSON.stringify(b[key]) === JSON.stringify(a[key])) continue;
    if (key === 'seed' && b[key] !== undefined && a[key] !== undefined) {
      changes.push({ field: 'cloud-init seed', from: '', to: '', text: 'cloud-init seed changed' });
      continue;
    }
    changes.push({
      field: FIELD_DISPLAY[key]?.field ?? key,
      from: show(key, b[key], baseDir),
      to: show(key, a[key], baseDir),
    });
  }
  return changes;
}
