/**
 * The defaults step: a checked VM document to the VmSpec the rest of qvm uses. Pure, and only run on VMs every
 * checker passed, so it can trust what it reads.
 */
import { homedir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseHostfwd } from '../model/forward.js';
import { parseDuration, parseMemoryMiB, parseSize } from '../model/units.js';
import type { VmDocument } from './document.js';
import { readTextOrFile } from './text.js';
import {
  type CloudInitSpec,
  type DataDiskSpec,
  DEFAULTS,
  type DiskSpec,
  type DisplaySpec,
  type ForwardSpec,
  type ImageSpec,
  type MountSpec,
  type ReadySpec,
  type VmSpec,
} from './types.js';

function optional<K extends string, V>(key: K, value: V | undefined): { [k in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [k in K]?: V };
}

/** Fields only a restart can change; on an adopted VM (started outside qvm) they cannot apply. */
const RESTART_CLASS_FIELDS = [
  'memory',
  'cpus',
  'disk',
  'cdrom',
  'kernel',
  'initrd',
  'append',
  'nic',
  'accel',
  'args',
  'agent',
  'mounts',
  'disks',
  'display',
] as const;

/** The VM's forwards that parse, with the loopback default filled in; unparsable rules are a checker's finding. */
export function forwardsOf(doc: VmDocument): ForwardSpec[] {
  const forwards: ForwardSpec[] = [];
  (Array.isArray(doc.raw.forwards) ? doc.raw.forwards : []).forEach((item, index) => {
    if (!doc.accepted('forwards', index)) return;
    if (typeof item === 'string') {
      const parsed = parseHostfwd(item);
      if (!parsed.ok) return;
      const f = parsed.value;
      forwards.push({ ...f, hostAddress: f.hostAddress || DEFAULTS.forwardAddress, index });
    } else {
      forwards.push({
        proto: item.proto ?? 'tcp',
        hostAddress: item.address ?? DEFAULTS.forwardAddress,
        hostPort: item.host,
        guestAddress: item.guestAddress ?? '',
        guestPort: item.guest,
        index,
      });
    }
  });
  return forwards;
}

/** The forward a readiness port names, or undefined when it names none of the VM's tcp forwards. */
export function readyForward(forwards: ForwardSpec[], port: number): ForwardSpec | undefined {
  return forwards.find((f) => f.proto === 'tcp' && f.hostPort === port);
}

function diskOf(doc: VmDocument): DiskSpec | undefined {
  const disk = doc.raw.disk;
  if (disk === undefined) return undefined;
  if (typeof disk === 'string') return { path: doc.resolve(disk), format: 'qcow2' };
  return {
    path: doc.resolve(disk.path),
    format: disk.format ?? 'qcow2',
    ...(disk.size ? { sizeBytes: parseSize(disk.size)! } : {}),
    ...(disk.backing
      ? { backing: doc.resolve(disk.backing), backingFormat: disk.backingFormat ?? 'qcow2' }
      : {}),
  };
}

function readyOf(doc: VmDocument, forwards: ForwardSpec[]): ReadySpec | undefined {
  const r = doc.raw.ready;
  if (r === undefined) return undefined;
  const timeoutMs = r.timeout === undefined ? DEFAULTS.readyTimeoutMs : parseDuration(r.timeout)!;
  if (r.ssh) return { kind: 'ssh', timeoutMs };
  if (r.agent) return { kind: 'agent', timeoutMs };
  const port = r.tcp ?? r.http!.port;
  const forward = readyForward(forwards, port)!;
  // A forward on every interface is probed on loopback.
  const host = forward.hostAddress === '0.0.0.0' ? '127.0.0.1' : forward.hostAddress;
  return r.tcp !== undefined
    ? { kind: 'tcp', host, port, timeoutMs }
    : { kind: 'http', host, port, path: r.http!.path ?? '/', status: r.http!.status ?? 200, timeoutMs };
}

/** A data disk's default serial: its file name without the extension, cut to the 20 bytes virtio-blk keeps. */
export function defaultSerial(diskPath: string): string {
  const base = path.basename(diskPath).replace(/\.[^.]*$/, '') || 'disk';
  return base.replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 20);
}

function dataDisksOf(doc: VmDocument): DataDiskSpec[] {
  return (doc.raw.disks ?? []).map((d, index) => ({
    path: doc.resolve(d.path),
    format: d.format ?? 'qcow2',
    ...(d.size ? { sizeBytes: parseSize(d.size)! } : {}),
    serial: d.serial ?? defaultSerial(d.path),
    index,
  }));
}

function mountsOf(doc: VmDocument): MountSpec[] {
  return (doc.raw.mounts ?? []).map((m, index) => ({
    host: expandHome(m.host, doc),
    guest: m.guest.replace(/(.)\/+$/, '$1'),
    writable: m.writable ?? false,
    tag: `qvm${index}`,
    index,
  }));
}

/** `~/x` is in the user's home folder (as a shell would say); anything else is relative to the manifest. */
function expandHome(p: string, doc: VmDocument): string {
  if (p === '~' || p.startsWith('~/')) return path.join(homedir(), p.slice(1));
  return doc.resolve(p);
}

export function displayOf(doc: VmDocument): DisplaySpec | undefined {
  const d = doc.raw.display;
  if (d === undefined) return undefined;
  if (d === 'vnc') return { kind: 'vnc-socket' };
  return { kind: 'vnc-tcp', address: d.vnc.address ?? DEFAULTS.forwardAddress, port: d.vnc.port };
}

/** The image a VM names: a catalogue entry or an inline source (downloads), else a local file's path. */
function imageOf(doc: VmDocument): ImageSpec | undefined {
  const image = doc.raw.image;
  if (image === undefined) return undefined;
  const source = typeof image === 'string' ? doc.catalog[image] : image;
  if (!source) return { kind: 'path', path: doc.resolve(image as string) };
  // A file URL with no digest is a local image file, used where it is.
  if (source.url.startsWith('file:') && source.sha256 === undefined && source.sha512 === undefined)
    return { kind: 'path', path: fileURLToPath(source.url) };
  const lower = (hex: string | undefined) => (hex === undefined ? {} : hex.toLowerCase());
  return {
    kind: 'url',
    url: source.url,
    ...(source.sha256 !== undefined ? { sha256: lower(source.sha256) as string } : {}),
    ...(source.sha512 !== undefined ? { sha512: lower(source.sha512) as string } : {}),
    ...(typeof image === 'string' ? { name: image } : {}),
  };
}

/** cloud-init data with its files read (the checker has made sure they can be). */
function cloudInitOf(doc: VmDocument): CloudInitSpec | undefined {
  const ci = doc.raw.cloudInit;
  if (ci === undefined) return undefined;
  const text = (key: 'userData' | 'networkConfig') => {
    const value = ci[key];
    if (value === undefined) return {};
    const read = readTextOrFile(doc, key, value);
    return read.ok ? { [key]: read.text } : {};
  };
  return { ...text('userData'), ...text('networkConfig') };
}

/** The VmSpec of a VM that passed every check. */
export function toVmSpec(doc: VmDocument): VmSpec {
  const raw = doc.raw;
  const forwards = forwardsOf(doc);
  const disk = diskOf(doc);
  const ready = readyOf(doc, forwards);
  return {
    name: doc.name,
    memoryMiB: raw.memory === undefined ? DEFAULTS.memoryMiB : parseMemoryMiB(raw.memory)!,
    cpus: raw.cpus ?? DEFAULTS.cpus,
    ...(disk ? { disk } : {}),
    ...optional('image', imageOf(doc)),
    ...optional('cloudInit', cloudInitOf(doc)),
    ...(raw.ssh !== undefined
      ? { ssh: { user: raw.ssh.user, ...(raw.ssh.port !== undefined ? { port: raw.ssh.port } : {}) } }
      : {}),
    agent: raw.agent ?? false,
    mounts: mountsOf(doc),
    dataDisks: dataDisksOf(doc),
    ...optional('display', displayOf(doc)),
    ...(raw.cdrom !== undefined ? { cdrom: doc.resolve(raw.cdrom) } : {}),
    ...(raw.kernel !== undefined ? { kernel: doc.resolve(raw.kernel) } : {}),
    ...(raw.initrd !== undefined ? { initrd: doc.resolve(raw.initrd) } : {}),
    ...(raw.append !== undefined ? { append: raw.append } : {}),
    nic: raw.nic ?? DEFAULTS.nic,
    forwards,
    ...(raw.snapshot !== undefined ? { snapshot: raw.snapshot } : {}),
    state: raw.state ?? DEFAULTS.state,
    stopTimeoutMs: raw.stopTimeout === undefined ? DEFAULTS.stopTimeoutMs : parseDuration(raw.stopTimeout)!,
    accel: raw.accel ?? DEFAULTS.accel,
    ...(raw.monitor !== undefined ? { monitor: doc.resolve(raw.monitor) } : {}),
    args: raw.args ?? [],
    restart: raw.restart ?? DEFAULTS.restart,
    ...(ready ? { ready } : {}),
    source: doc.file,
    ...(raw.monitor !== undefined
      ? { adoptedIgnores: RESTART_CLASS_FIELDS.filter((f) => raw[f] !== undefined) }
      : {}),
  };
}
