/**
 * The serial log's cap. QEMU appends everything the guest writes to its console to serial.log, at whatever
 * rate the guest writes (a guest printing in a loop fills ~16 GB a day, often on a tmpfs). qvm caps it
 * whenever it looks at a VM (every apply, plan, status and watch pass): past the cap, the log's last part is
 * kept as serial.log.1 and serial.log is truncated; QEMU opened it for appending, so it carries on at the
 * new end. What the guest writes between the copy and the truncation is lost; nothing else is.
 */
import { closeSync, openSync, readSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import type { VmPaths } from './paths.js';

/** serial.log is rotated past this size; serial.log.1 keeps at most this much of it. */
export const SERIAL_LOG_CAP_BYTES = 8 * 2 ** 20;

/** Rotates a VM's serial log when it is past the cap; true when it did. Never throws: logs are a convenience. */
export function capSerialLog(paths: VmPaths, capBytes = SERIAL_LOG_CAP_BYTES): boolean {
  try {
    const size = statSync(paths.serialLog).size;
    if (size <= capBytes) return false;
    const keep = Math.min(size, capBytes);
    const fd = openSync(paths.serialLog, 'r');
    const tail = Buffer.alloc(keep);
    try {
      readSync(fd, tail, 0, keep, size - keep);
    } finally {
      closeSync(fd);
    }
    writeFileSync(paths.serialLogRotated, tail, { mode: 0o600 });
    truncateSync(paths.serialLog, 0);
    return true;
  } catch {
    return false;
  }
}
