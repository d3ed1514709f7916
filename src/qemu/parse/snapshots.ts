/**
 * `info snapshots` into snapshot tags. Two header formats exist:
 *   7.2–8.2: `ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT`
 *   9.0+:    `ID      TAG               VM_SIZE                DATE        VM_CLOCK     ICOUNT`
 *            (VM_CLOCK with four hour digits, and `--` for a missing ICOUNT).
 * Only the "present on all disks" list holds snapshots that `loadvm` can restore; sections such as
 * "List of partial (non-loadable) snapshots on 'X':" are reported apart.
 */

export interface SnapshotInfo {
  /** The numeric id, or '--' where QEMU shows none (snapshots present on several disks). */
  id: string;
  tag: string;
  /** VM state size as QEMU prints it, e.g. `1.83 MiB`. */
  vmSize: string;
  /** `YYYY-MM-DD HH:MM:SS`, local time of the QEMU host. */
  date: string;
  /** Guest clock at save time, `HH:MM:SS.mmm` (or `HHHH:...` from 9.0). */
  vmClock: string;
}

export interface SnapshotList {
  /** Snapshots that every disk has: the ones `loadvm` and `-loadvm` can use. */
  loadable: SnapshotInfo[];
  /** Snapshots present on only some disks, per device. */
  partial: { device: string; snapshots: SnapshotInfo[] }[];
}

const ROW =
  /^(\S+)\s+(\S+)\s+([\d.]+\s+\S+)\s+(\d{4}-\d\d-\d\d\s+\d\d:\d\d:\d\d)\s+(\d+:\d\d:\d\d\.\d+)(?:\s+\S+)?\s*$/;

/** The snapshots in `info snapshots` output, loadable and partial apart, in either header format. */
export function parseSnapshots(text: string): SnapshotList {
  const result: SnapshotList = { loadable: [], partial: [] };
  let current: SnapshotInfo[] | undefined;
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.trimEnd();
    if (/^List of snapshots present on all disks:/.test(line)) {
      current = result.loadable;
      continue;
    }
    const partial = /^List of partial \(non-loadable\) snapshots on '([^']*)':/.exec(line);
    if (partial) {
      current = [];
      result.partial.push({ device: partial[1]!, snapshots: current });
      continue;
    }
    if (!current || /^ID\s+TAG\s+/.test(line)) continue;
    const row = ROW.exec(line);
    if (!row) continue;
    const [, id, tag, vmSize, date, vmClock] = row;
    current.push({
      id: id!,
      tag: tag!,
      vmSize: vmSize!.replace(/\s+/, ' '),
      date: date!.replace(/\s+/, ' '),
      vmClock: vmClock!,
    });
  }
  return result;
}
