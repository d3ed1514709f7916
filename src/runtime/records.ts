/**
 * What qvm remembers about what it did, next to the VM's sockets. None of it is read as the state of the
 * world (observation asks QEMU and /proc); it answers questions the world cannot:
 * - launch.json: how a running process was started, valid only while that process (same pid, same argv)
 *   runs. Lets the plan say "memory 512M -> 1G" instead of only "the command line changed".
 * - disks.json: disks qvm created, with their inode, so `destroy --delete-disks` deletes only those, and
 *   never a file that was there before or was replaced since.
 *
 * Records on disk have types of their own, versioned, and are checked when read: a record written by another
 * qvm version, or damaged, is reported as unreadable, never trusted and never a crash.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { HostForward } from '../model/forward.js';

/** How a process was started, as launch.json keeps it: the launch spec without what only matters at boot. */
export interface RecordedLaunch {
  memoryMiB: number;
  cpus: number;
  accel: 'kvm' | 'tcg';
  nic: string;
  forwards: HostForward[];
  disk?: { path: string; format: string };
  cdrom?: string;
  kernel?: string;
  initrd?: string;
  append?: string;
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

export interface CreatedDisk {
  path: string;
  dev: number;
  ino: number;
  createdAt: string;
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

/** Writes via a temporary file and rename, so a crash never leaves half a record. */
function writeJson(file: string, value: unknown): void {
  const temporary = `${file}.tmp-${process.pid}`;
  writeFileSync(temporary, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
  renameSync(temporary, file);
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
    isString(v.nic) &&
    Array.isArray(v.forwards) &&
    v.forwards.every(isForward) &&
    optional(v.disk, (d) => isObject(d) && isString(d.path) && isString(d.format)) &&
    optional(v.cdrom, isString) &&
    optional(v.kernel, isString) &&
    optional(v.initrd, isString) &&
    optional(v.append, isString) &&
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

function isCreatedDisk(v: unknown): v is CreatedDisk {
  return (
    isObject(v) &&
    isString(v.path) &&
    typeof v.dev === 'number' &&
    typeof v.ino === 'number' &&
    isString(v.createdAt)
  );
}

/** The disks qvm created for a VM; entries that are not well formed are ignored (never deleted by mistake). */
export function readCreatedDisks(file: string): CreatedDisk[] {
  const read = readJson(file);
  if (!('value' in read) || !Array.isArray(read.value)) return [];
  return read.value.filter(isCreatedDisk);
}

/** Adds a disk qvm just created to the VM's disks.json. */
export function recordCreatedDisk(file: string, disk: CreatedDisk): void {
  const disks = readCreatedDisks(file).filter((d) => d.path !== disk.path);
  writeJson(file, [...disks, disk]);
}

/** Removes a disk from the VM's disks.json (deleted, or no longer the file qvm created). */
export function forgetCreatedDisk(file: string, diskPath: string): void {
  writeJson(
    file,
    readCreatedDisks(file).filter((d) => d.path !== diskPath),
  );
}
