/**
 * What both exporters share: the warning collector, where a VM's files come from, the forwards (with the one
 * qvm adds for `ssh:`), and the cloud-init seed as the guest will see it. Pure: no file is read here.
 */
import path from 'node:path';
import { buildSeed, type GuestMount, mergeUserData, type ShareType } from '../guest/cloud-init.js';
import {
  type DataDiskSpec,
  type ForwardSpec,
  SSH_FORWARD_ADDRESS,
  SSH_FORWARD_INDEX,
  type VmSpec,
} from '../manifest/types.js';
import type { HostForward } from '../model/forward.js';
import type { ExportOptions, ExportWarning } from './types.js';

/** Collects one VM's warnings in the order the fields are mapped. */
export class Warnings {
  readonly list: ExportWarning[] = [];
  constructor(readonly vm: string) {}
  add(field: string, message: string): void {
    this.list.push({ vm: this.vm, field, message });
  }
}

/** The last part of a path or URL (query and fragment left out). */
export function baseName(pathOrUrl: string): string {
  const clean = pathOrUrl.replace(/[?#].*$/, '').replace(/\/+$/, '');
  return clean.slice(clean.lastIndexOf('/') + 1) || 'file';
}

/**
 * File names go-getter unpacks unless told `archive=false` (its decompressors and archivers): qvm uses every
 * file as it is, so an initrd.gz must stay gzipped.
 */
const ARCHIVE_SUFFIXES = ['.zip', '.tar', '.tgz', '.tbz2', '.txz', '.tzst', '.gz', '.bz2', '.xz', '.zst'];

export function unpackedByGoGetter(name: string): boolean {
  return ARCHIVE_SUFFIXES.some((suffix) => name.toLowerCase().endsWith(suffix));
}

/** A file the engine has to fetch: a URL it can reach, or (no --artifact-base) the path on this machine. */
export interface FetchedFile {
  /** The manifest field it comes from (`kernel`, `disk`, `image`, ...), for warnings. */
  field: string;
  /** Its name inside the task or image. */
  name: string;
  /** What the engine fetches: a URL, or an absolute path on this machine when `local` is true. */
  source: string;
  /** The path on this machine, when the file is local. */
  localPath?: string;
  /** A digest the manifest pins: `sha256:HEX` or `sha512:HEX`. */
  checksum?: string;
}

/** The URL --artifact-base serves a VM's file NAME at: BASE/VM/NAME. */
function servedAt(base: string, vm: string, name: string): string {
  return `${base.replace(/\/+$/, '')}/${encodeURIComponent(vm)}/${encodeURIComponent(name)}`;
}

/** Where a local file comes from for an engine: BASE/VM/NAME with --artifact-base, else its own path. */
export function localFile(vm: string, field: string, localPath: string, options: ExportOptions): FetchedFile {
  const name = baseName(localPath);
  return {
    field,
    name,
    source: options.artifactBase ? servedAt(options.artifactBase, vm, name) : localPath,
    localPath,
  };
}

/** The image a VM's disk is made from, as a file to fetch (a download keeps its URL and digest). */
export function imageFile(spec: VmSpec, options: ExportOptions): FetchedFile | undefined {
  const image = spec.image;
  if (!image) return undefined;
  if (image.kind === 'path') return localFile(spec.name, 'image', image.path, options);
  const checksum =
    image.sha256 !== undefined
      ? `sha256:${image.sha256}`
      : image.sha512 !== undefined
        ? `sha512:${image.sha512}`
        : undefined;
  if (image.url.startsWith('file:')) {
    // A file URL with a digest is still a file on this machine.
    const file = localFile(spec.name, 'image', decodeURIComponent(new URL(image.url).pathname), options);
    return { ...file, ...(checksum ? { checksum } : {}) };
  }
  return { field: 'image', name: baseName(image.url), source: image.url, ...(checksum ? { checksum } : {}) };
}

/** The manifest field of a data disk, for warnings and to find its file: `disks[0]`. */
export function dataDiskField(d: DataDiskSpec): string {
  return `disks[${d.index}]`;
}

/**
 * Every file of a VM that an engine may fetch, in one order and named by uniqueNames: the kernel, the initrd,
 * the disk's content (its image, its backing image, or the disk file itself), the data disks, the ISO. Both
 * engines take their files from this one list, so a file has the same name, and the same URL under
 * --artifact-base, in a Nomad job and in KubeVirt documents.
 */
export function vmFiles(spec: VmSpec, options: ExportOptions): FetchedFile[] {
  const files: FetchedFile[] = [];
  const local = (field: string, file: string) => files.push(localFile(spec.name, field, file, options));
  if (spec.kernel) local('kernel', spec.kernel);
  if (spec.initrd) local('initrd', spec.initrd);
  const image = imageFile(spec, options);
  if (image) files.push(image);
  else if (spec.disk) local('disk', spec.disk.backing ?? spec.disk.path);
  for (const d of spec.dataDisks) local(dataDiskField(d), d.path);
  if (spec.cdrom) local('cdrom', spec.cdrom);
  return uniqueNames(spec.name, files, options);
}

/** A local path for a warning: relative to the manifest's folder when the options give it. */
export function shownPath(file: string, options: ExportOptions): string {
  return options.relativeTo ? path.relative(options.relativeTo, file) || '.' : file;
}

/**
 * Makes the names of a VM's files unique (two files called `disk.img` from two folders): a later one is named
 * after its field (`disks-0-disk.img`). A local file served from --artifact-base is served under that name,
 * so two of them never share a URL.
 */
function uniqueNames(vm: string, files: FetchedFile[], options: ExportOptions): FetchedFile[] {
  const taken = new Set<string>();
  return files.map((file) => {
    let name = file.name;
    if (taken.has(name)) name = `${file.field.replace(/[^a-z0-9]+/gi, '-').replace(/-+$/, '')}-${file.name}`;
    for (let n = 2; taken.has(name); n++) name = `${n}-${file.name}`;
    taken.add(name);
    if (name === file.name) return file;
    const base = file.localPath !== undefined ? options.artifactBase : undefined;
    return { ...file, name, ...(base ? { source: servedAt(base, vm, name) } : {}) };
  });
}

/** A forward as exported: the manifest's, or the one qvm adds for `ssh:` (whose host port may be unknown). */
export interface ExportForward extends Omit<HostForward, 'hostPort'> {
  /** Undefined for `ssh:` without a port: qvm picks one on this machine; the engine picks its own. */
  hostPort: number | undefined;
  /** The manifest field, for warnings: `forwards[0]`, or `ssh`. */
  field: string;
  /** Index in the manifest's list, -1 for the ssh forward. */
  index: number;
}

/** The VM's forwards, with the ssh forward qvm would add (loopback, to the guest's port 22). */
export function exportForwards(spec: VmSpec): ExportForward[] {
  const own: ExportForward[] = spec.forwards
    .filter((f: ForwardSpec) => f.index !== SSH_FORWARD_INDEX)
    .map((f) => ({ ...f, field: `forwards[${f.index}]` }));
  if (!spec.ssh) return own;
  return [
    ...own,
    {
      proto: 'tcp',
      hostAddress: SSH_FORWARD_ADDRESS,
      hostPort: spec.ssh.port,
      guestAddress: '',
      guestPort: 22,
      field: 'ssh',
      index: SSH_FORWARD_INDEX,
    },
  ];
}

/** `tcp 127.0.0.1:8080 -> :80`, with PORT for a port the engine picks. */
export function describeExportForward(f: ExportForward): string {
  return `${f.proto} ${f.hostAddress}:${f.hostPort ?? 'PORT'} -> ${f.guestAddress}:${f.guestPort}`;
}

/** The cloud-init seed the guest gets, with the `ssh:` user authorized for the given public keys. */
export interface ExportSeed {
  instanceId: string;
  metaData: string;
  userData: string;
  networkConfig?: string;
}

/** The shares the guest mounts from its seed, and how they reach it. */
export interface ExportShares {
  mounts: GuestMount[];
  type: ShareType;
}

/**
 * The seed of a VM with `cloudInit:` or `ssh:`, merged the way qvm merges it (guest/cloud-init.ts) but with no
 * host key: qvm's private host key for the VM stays on this machine, and the guest generates its own. SHARES
 * are the `mounts:` the engine attaches (none when it attaches none).
 */
export function exportSeed(
  spec: VmSpec,
  options: ExportOptions,
  warnings: Warnings,
  shares?: ExportShares,
): ExportSeed | undefined {
  if (!spec.cloudInit && !spec.ssh) return undefined;
  let userData = spec.cloudInit?.userData;
  const keys = spec.ssh ? (options.sshKeys ?? []) : [];
  if (spec.ssh) {
    if (keys.length === 0) {
      warnings.add(
        'ssh',
        `no --ssh-key given, so the user ${spec.ssh.user} is not created (qvm's own key stays on this machine); pass --ssh-key FILE.pub to authorize a public key`,
      );
    }
    for (const key of keys) userData = mergeUserData(userData, { user: spec.ssh.user, authorizedKey: key });
    warnings.add(
      'ssh',
      "host-key pinning does not carry over: qvm's host key for this VM stays on this machine and the guest generates its own; check its fingerprint on first login",
    );
  }
  // The shares' mount points under the ssh user's home are given to that user, as qvm does, when the seed
  // creates the user (the key is in the user data already, so this adds no second copy of it).
  const owner =
    spec.ssh && keys.length && shares?.mounts.length
      ? { user: spec.ssh.user, authorizedKey: keys[keys.length - 1]! }
      : undefined;
  const seed = buildSeed(
    spec.name,
    { ...spec.cloudInit, ...(userData !== undefined ? { userData } : {}) },
    owner,
    shares?.mounts,
    shares?.type,
  );
  return {
    instanceId: seed.instanceId,
    metaData: seed['meta-data'],
    userData: seed['user-data'],
    ...(seed['network-config'] !== undefined ? { networkConfig: seed['network-config'] } : {}),
  };
}

/** A record with its keys in order: for maps whose order carries no meaning (labels, options, meta). */
export function sorted<V>(record: Record<string, V>): Record<string, V> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Milliseconds as whole seconds, rounded up (a grace period is never shortened). */
export function ceilSeconds(ms: number): number {
  return Math.ceil(ms / 1000);
}
