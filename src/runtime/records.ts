/**
 * What qvm remembers about what it did, next to the VM's sockets. None of it is read as the state of the
 * world (observation asks QEMU and /proc); it answers questions the world cannot:
 * - launch.json: the argv and spec a running process was started with, valid only while that process
 *   (same pid, same argv) runs. Lets the plan say "memory 512M -> 1G" instead of only "argv differs".
 * - disks.json: disks qvm created, with their inode, so `destroy --delete-disks` deletes only those, and
 *   never a file that was there before or was replaced since.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { VmSpec } from '../manifest/types.js';
import type { HostForward } from '../model/forward.js';

export interface LaunchRecord {
  version: 1;
  vm: string;
  manifest: string;
  /** Full argv including the program, exactly as started. */
  argv: string[];
  spec: VmSpec;
  /** What `accel: auto` resolved to at start. */
  accel: 'kvm' | 'tcg';
  startedAt: string;
  /** Snapshot the VM booted from, if any. */
  bootedFrom?: string;
  /** Forwards qvm added live since the start (for telling qvm's own changes from drift). */
  liveForwards: HostForward[];
}

export interface CreatedDisk {
  path: string;
  dev: number;
  ino: number;
  createdAt: string;
}

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** Writes via a temporary file and rename, so a crash never leaves half a record. */
function writeJson(file: string, value: unknown): void {
  const temporary = `${file}.tmp-${process.pid}`;
  writeFileSync(temporary, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
  renameSync(temporary, file);
}

export function readLaunchRecord(file: string): LaunchRecord | undefined {
  const record = readJson<LaunchRecord>(file);
  return record?.version === 1 ? record : undefined;
}

export function writeLaunchRecord(file: string, record: LaunchRecord): void {
  writeJson(file, record);
}

export function createdDisksFile(vmDir: string): string {
  return path.join(vmDir, 'disks.json');
}

export function readCreatedDisks(vmDir: string): CreatedDisk[] {
  return readJson<CreatedDisk[]>(createdDisksFile(vmDir)) ?? [];
}

export function recordCreatedDisk(vmDir: string, disk: CreatedDisk): void {
  const disks = readCreatedDisks(vmDir).filter((d) => d.path !== disk.path);
  writeJson(createdDisksFile(vmDir), [...disks, disk]);
}

export function forgetCreatedDisk(vmDir: string, diskPath: string): void {
  writeJson(
    createdDisksFile(vmDir),
    readCreatedDisks(vmDir).filter((d) => d.path !== diskPath),
  );
}
