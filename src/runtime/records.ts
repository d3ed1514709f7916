/**
 * What qvm remembers about what it did, next to the VM's sockets. None of it is read as the state of the
 * world (observation asks QEMU and /proc); it answers questions the world cannot:
 * - launch.json: how a running process was started, valid only while that process (same pid, same argv)
 *   runs. Lets the plan say "memory 512M -> 1G" instead of only "the command line changed".
 * - disks.json (state root): each disk qvm created or first opened, with its inode and format. qvm opens a
 *   disk in the format it recorded, never the one its content suggests, and `destroy --delete-disks` deletes
 *   only disks qvm created, never a file that was there before or was replaced since.
 * - saved-state.json (state root): the VM was hibernated by qvm. Only with this record is the hibernation
 *   snapshot ever loaded: a tag on the disk alone may be left over from an interrupted save, and loading it
 *   would revert the disk.
 *
 * Records on disk have types of their own, versioned, and are checked when read: a record written by another
 * qvm version, or damaged, is reported as unreadable, never trusted and never a crash.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { RuntimeDirError } from '../errors.js';
import type { HostForward } from '../model/forward.js';
import { ensurePrivateDir } from './paths.js';

/** How a process was started, as launch.json keeps it: the launch spec without what only matters at boot. */
export interface RecordedLaunch {
  memoryMiB: number;
  cpus: number;
  accel: 'kvm' | 'tcg';
  /** qvm's device set (qemu/argv.ts DEVICE_SET); absent in records of a qvm that used QEMU's defaults. */
  devices?: string;
  nic: string;
  forwards: HostForward[];
  disk?: { path: string; format: string };
  cdrom?: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  seed?: { dir: string; instanceId: string };
  agent?: true;
  mounts?: { host: string; tag: string; readonly: boolean }[];
  dataDisks?: { path: string; format: string; serial: string }[];
  display?: { vnc: 'socket' } | { vnc: 'tcp'; address: string; port: number };
  args: string[];
}

export interface LaunchRecord {
  version: 2;
  vm: string;
  /** The manifest file that declared the VM when it was started. */
  manifest: string;
  /** Full argv including the program, exactly as started. */
  argv: string[];
  launch: RecordedLaunch;
  /** The VM's stop timeout when it was started: how long a stop waits once the manifest no longer lists it. */
  stopTimeoutMs: number;
  startedAt: string;
  /** Snapshot the VM booted from, if any. */
  bootedFrom?: string;
  /** Forwards qvm added live since the start (for telling qvm's own changes from drift). */
  liveForwards: HostForward[];
}

/** A record file that exists but cannot be used: why, for the plan's notes. */
export interface UnreadableRecord {
  unreadable: string;
}

/** A disk as qvm first met it: the file (by inode, so a replaced file is not taken for it) and its format. */
export interface KnownDisk {
  path: string;
  dev: number;
  ino: number;
  /** The format qvm created it with or first opened it as; it is always opened as this. */
  format: string;
  /** qvm created this file (only then may `destroy --delete-disks` delete it). */
  created: boolean;
  at: string;
  /** The image qvm made it from, as an overlay: an image changed in the manifest later is told apart by it. */
  image?: { url?: string; sha256?: string; sha512?: string; path?: string };
  /** A data disk (`disks:`): `destroy --delete-disks` keeps it unless --delete-data-disks is given too. */
  role?: 'data';
}

/** A hibernation qvm carried out: written after the VM's process ended, removed before it is resumed. */
export interface SavedStateRecord {
  version: 1;
  vm: string;
  tag: string;
  savedAt: string;
  /** The disk the state is in, by inode: a different file at that path does not hold this state. */
  disk: { path: string; dev: number; ino: number };
  /** How the VM ran when it was saved; QEMU resumes only with the same devices and memory. */
  launch?: RecordedLaunch;
}

type ReadResult = { value: unknown } | { missing: true } | UnreadableRecord;

function readJson(file: string): ReadResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { missing: true };
    return { unreadable: `cannot read ${file}: ${(error as Error).message}` };
  }
  try {
    return { value: JSON.parse(text) as unknown };
  } catch {
    return { unreadable: `${file} is not valid JSON` };
  }
}

/**
 * Replaces `file` with `data` (mode 0600) through a temporary file and a rename, so a reader sees the old
 * content or the new, never half; `durable` also syncs the file before the rename. Throws what the file
 * system throws, and leaves no temporary file behind.
 */
export function replaceFile(file: string, data: string, options: { durable?: boolean } = {}): void {
  const temporary = `${file}.tmp-${process.pid}`;
  try {
    const fd = openSync(temporary, 'w', 0o600);
    try {
      writeSync(fd, data);
      if (options.durable) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, file);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
}

/**
 * Writes a record so a crash never leaves half of it (replaceFile); `durable` also syncs the file and its
 * folder, so the record survives a power cut. The folder is created private when missing. A write that fails
 * (a full or read-only disk) is a RuntimeDirError naming the file.
 */
function writeJson(file: string, value: unknown, options: { durable?: boolean } = {}): void {
  try {
    ensurePrivateDir(path.dirname(file));
    replaceFile(file, `${JSON.stringify(value, null, 2)}\n`, options);
    if (options.durable) syncFolder(path.dirname(file));
  } catch (error) {
    if (error instanceof RuntimeDirError) throw error;
    throw new RuntimeDirError(`cannot write ${file}: ${errnoText(error)}`, { cause: error });
  }
}

function syncFolder(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Removes a record file; a failure is a RuntimeDirError naming it. */
export function removeRecord(file: string): void {
  try {
    rmSync(file, { force: true });
  } catch (error) {
    throw new RuntimeDirError(`cannot remove ${file}: ${errnoText(error)}`, { cause: error });
  }
}

/** An fs error in words, with its code: "no space left on device (ENOSPC)". */
export function errnoText(error: unknown): string {
  const e = error as NodeJS.ErrnoException;
  const words: Record<string, string> = {
    ENOSPC: 'no space left on device',
    EROFS: 'read-only file system',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EDQUOT: 'disk quota exceeded',
    ENOENT: 'no such file or folder',
  };
  return e.code && words[e.code] ? `${words[e.code]} (${e.code})` : (e.message ?? String(error));
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isString = (v: unknown): v is string => typeof v === 'string';
const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every(isString);
const optional = (v: unknown, check: (x: unknown) => boolean) => v === undefined || check(v);

function isForward(v: unknown): v is HostForward {
  return (
    isObject(v) &&
    (v.proto === 'tcp' || v.proto === 'udp') &&
    isString(v.hostAddress) &&
    typeof v.hostPort === 'number' &&
    isString(v.guestAddress) &&
    typeof v.guestPort === 'number'
  );
}

function isRecordedLaunch(v: unknown): v is RecordedLaunch {
  return (
    isObject(v) &&
    typeof v.memoryMiB === 'number' &&
    typeof v.cpus === 'number' &&
    (v.accel === 'kvm' || v.accel === 'tcg') &&
    optional(v.devices, isString) &&
    isString(v.nic) &&
    Array.isArray(v.forwards) &&
    v.forwards.every(isForward) &&
    optional(v.disk, (d) => isObject(d) && isString(d.path) && isString(d.format)) &&
    optional(v.cdrom, isString) &&
    optional(v.kernel, isString) &&
    optional(v.initrd, isString) &&
    optional(v.append, isString) &&
    optional(v.seed, (x) => isObject(x) && isString(x.dir) && isString(x.instanceId)) &&
    optional(v.agent, (x) => x === true) &&
    optional(v.mounts, Array.isArray) &&
    optional(v.dataDisks, Array.isArray) &&
    optional(v.display, isObject) &&
    isStringArray(v.args)
  );
}

/** The forwards of a record without the extra keys older records kept (the manifest index). */
function plainForwards(forwards: HostForward[]): HostForward[] {
  return forwards.map(({ proto, hostAddress, hostPort, guestAddress, guestPort }) => ({
    proto,
    hostAddress,
    hostPort,
    guestAddress,
    guestPort,
  }));
}

/**
 * Version 1 (qvm 0.1) kept the manifest's VmSpec; its restart-relevant fields are the launch, with the disk
 * format read from the -drive argument it was started with.
 */
function fromVersion1(v: Record<string, unknown>): LaunchRecord | undefined {
  const spec = v.spec;
  if (!isObject(spec) || !isStringArray(v.argv) || (v.accel !== 'kvm' && v.accel !== 'tcg')) return undefined;
  const drive = v.argv.find((a) => a.startsWith('file=') && a.includes(',id=disk0'));
  const diskSpec = isObject(spec.disk) && isString(spec.disk.path) ? spec.disk.path : undefined;
  const launch = {
    ...spec,
    accel: v.accel,
    forwards: Array.isArray(spec.forwards) ? spec.forwards : [],
    disk: diskSpec
      ? { path: diskSpec, format: /,format=([^,]+),/.exec(drive ?? '')?.[1] ?? 'qcow2' }
      : undefined,
  };
  if (!isRecordedLaunch(launch)) return undefined;
  const liveForwards = Array.isArray(v.liveForwards) ? v.liveForwards.filter(isForward) : [];
  return {
    version: 2,
    vm: String(v.vm),
    manifest: String(v.manifest),
    argv: v.argv,
    launch: {
      memoryMiB: launch.memoryMiB,
      cpus: launch.cpus,
      accel: launch.accel,
      nic: launch.nic,
      forwards: plainForwards(launch.forwards),
      ...(launch.disk ? { disk: launch.disk } : {}),
      ...(launch.cdrom !== undefined ? { cdrom: launch.cdrom } : {}),
      ...(launch.kernel !== undefined ? { kernel: launch.kernel } : {}),
      ...(launch.initrd !== undefined ? { initrd: launch.initrd } : {}),
      ...(launch.append !== undefined ? { append: launch.append } : {}),
      args: launch.args,
    },
    stopTimeoutMs: typeof spec.stopTimeoutMs === 'number' ? spec.stopTimeoutMs : 30_000,
    startedAt: String(v.startedAt),
    ...(isString(v.bootedFrom) ? { bootedFrom: v.bootedFrom } : {}),
    liveForwards: plainForwards(liveForwards),
  };
}

/** Checks a parsed launch.json; records of version 1 are converted. */
function parseLaunchRecord(v: unknown, file = 'launch.json'): LaunchRecord | UnreadableRecord {
  if (isObject(v) && v.version === 1) {
    return fromVersion1(v) ?? { unreadable: `${file} (version 1) does not have the expected fields` };
  }
  if (!isObject(v) || v.version !== 2) {
    const version = isObject(v) ? JSON.stringify(v.version) : 'none';
    return { unreadable: `${file} has version ${version}, which this qvm does not read` };
  }
  const ok =
    isString(v.vm) &&
    isString(v.manifest) &&
    isStringArray(v.argv) &&
    isRecordedLaunch(v.launch) &&
    typeof v.stopTimeoutMs === 'number' &&
    isString(v.startedAt) &&
    optional(v.bootedFrom, isString) &&
    Array.isArray(v.liveForwards) &&
    v.liveForwards.every(isForward);
  return ok ? (v as unknown as LaunchRecord) : { unreadable: `${file} does not have the expected fields` };
}

/** The launch record, undefined when there is none, or why it cannot be used. */
export function readLaunchRecord(file: string): LaunchRecord | UnreadableRecord | undefined {
  const read = readJson(file);
  if ('missing' in read) return undefined;
  if ('unreadable' in read) return read;
  return parseLaunchRecord(read.value, file);
}

/** Writes launch.json atomically. */
export function writeLaunchRecord(file: string, record: LaunchRecord): void {
  writeJson(file, record);
}

function isKnownDisk(v: unknown): v is KnownDisk {
  return (
    isObject(v) &&
    isString(v.path) &&
    typeof v.dev === 'number' &&
    typeof v.ino === 'number' &&
    isString(v.format) &&
    typeof v.created === 'boolean'
  );
}

/** The disks qvm knows for a VM; entries that are not well formed are ignored (never deleted by mistake). */
export function readKnownDisks(file: string): KnownDisk[] {
  const read = readJson(file);
  if (!('value' in read) || !Array.isArray(read.value)) return [];
  return read.value.filter(isKnownDisk);
}

/** Records a disk (replacing an earlier record of the same path). */
export function recordKnownDisk(file: string, disk: KnownDisk): void {
  const disks = readKnownDisks(file).filter((d) => d.path !== disk.path);
  writeJson(file, [...disks, disk]);
}

/** Removes a disk from the record (deleted, or no longer the file qvm knew). */
export function forgetKnownDisk(file: string, diskPath: string): void {
  writeJson(
    file,
    readKnownDisks(file).filter((d) => d.path !== diskPath),
  );
}

/** The hibernation record, undefined when there is none, or why it cannot be used. */
export function readSavedState(file: string): SavedStateRecord | UnreadableRecord | undefined {
  const read = readJson(file);
  if ('missing' in read) return undefined;
  if ('unreadable' in read) return read;
  const v = read.value;
  const ok =
    isObject(v) &&
    v.version === 1 &&
    isString(v.vm) &&
    isString(v.tag) &&
    isString(v.savedAt) &&
    isObject(v.disk) &&
    isString(v.disk.path) &&
    typeof v.disk.dev === 'number' &&
    typeof v.disk.ino === 'number' &&
    optional(v.launch, isRecordedLaunch);
  return ok
    ? (v as unknown as SavedStateRecord)
    : { unreadable: `${file} does not have the expected fields` };
}

/** Writes the hibernation record durably (fsync'd file, then rename). */
export function writeSavedState(file: string, record: SavedStateRecord): void {
  writeJson(file, record, { durable: true });
}

/** How a VM ran when qvm saved one of its snapshots: QEMU loads a snapshot only into the same configuration. */
export interface SnapshotRecord {
  tag: string;
  savedAt: string;
  launch: RecordedLaunch;
}

/** The VM's snapshot records, by tag; records that are not well formed are ignored. */
export function readSnapshotRecords(file: string): Record<string, SnapshotRecord> {
  const read = readJson(file);
  if (!('value' in read) || !isObject(read.value)) return {};
  const out: Record<string, SnapshotRecord> = {};
  for (const [tag, v] of Object.entries(read.value)) {
    if (isObject(v) && isString(v.savedAt) && isRecordedLaunch(v.launch)) {
      out[tag] = { tag, savedAt: v.savedAt, launch: v.launch };
    }
  }
  return out;
}

/** Records how the VM ran when a snapshot was saved (replacing an older record of that tag). */
export function recordSnapshot(file: string, record: SnapshotRecord): void {
  writeJson(file, { ...readSnapshotRecords(file), [record.tag]: record });
}
