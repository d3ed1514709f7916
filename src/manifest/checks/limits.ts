/**
 * Values that parse but no QEMU or timer can take: durations past what a timer can wait (Node's timers fire
 * at once past 2^31-1 ms, which would quit a guest with no clean shutdown), memory and disk sizes far beyond
 * any host. Each is a located error instead of a surprise at run time.
 */
import type { Diagnostic } from '../../errors.js';
import { formatDuration, formatSize, parseDuration, parseMemoryMiB, parseSize } from '../../model/units.js';
import type { VmCheck, VmDocument } from '../document.js';

/** The longest duration a manifest may give: a day is longer than any stop or readiness wait needs. */
export const MAX_DURATION_MS = 24 * 3_600_000;
/** The most memory a VM may ask for: far beyond hosts qvm runs on, well within QEMU's limits. */
const MAX_MEMORY_MIB = 16 * 2 ** 20; // 16T
/** The largest disk qvm creates: 1 PiB, where qcow2 and byte counts are still exact. */
const MAX_DISK_BYTES = 2 ** 50;

function durationProblem(doc: VmDocument, field: (string | number)[], value: string | number | undefined) {
  if (value === undefined || value === null || !doc.accepted(...field)) return [];
  const ms = parseDuration(value);
  if (ms === undefined || ms <= MAX_DURATION_MS) return [];
  return [
    doc.problem(field, `must be at most ${formatDuration(MAX_DURATION_MS)}, got ${JSON.stringify(value)}`),
  ];
}

export const checkLimits: VmCheck = (doc) => {
  const { raw } = doc;
  const out: Diagnostic[] = [
    ...durationProblem(doc, ['stopTimeout'], raw.stopTimeout),
    ...durationProblem(doc, ['ready', 'timeout'], doc.accepted('ready') ? raw.ready?.timeout : undefined),
  ];
  if (raw.memory !== undefined && doc.accepted('memory')) {
    const mib = parseMemoryMiB(raw.memory);
    if (mib !== undefined && mib > MAX_MEMORY_MIB)
      out.push(
        doc.problem(
          ['memory'],
          `must be at most ${formatSize(MAX_MEMORY_MIB * 2 ** 20)}, got ${JSON.stringify(raw.memory)}`,
        ),
      );
  }
  const size =
    doc.accepted('disk') && typeof raw.disk === 'object' && raw.disk !== null ? raw.disk.size : undefined;
  if (size !== undefined && doc.accepted('disk', 'size')) {
    const bytes = parseSize(size);
    if (bytes !== undefined && bytes > MAX_DISK_BYTES)
      out.push(
        doc.problem(
          ['disk', 'size'],
          `must be at most ${formatSize(MAX_DISK_BYTES)}, got ${JSON.stringify(size)}`,
        ),
      );
  }
  return out;
};
