/**
 * From a loaded YAML document to a Manifest: schema first, then the checks a schema cannot express, then
 * defaults. Every problem is collected and located; nothing stops at the first one.
 */
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { type Diagnostic, ManifestError } from '../errors.js';
import { describeForward, hostSidesCollide, parseHostfwd } from '../qemu/hostfwd.js';
import { parseDuration, parseMemoryMiB, parseSize } from '../util/units.js';
import { type FieldPath, formatFieldPath, type LoadedYaml, loadYamlFile } from './load.js';
import { schemaDiagnostics } from './schema.js';
import {
  type Accel,
  DEFAULTS,
  type DesiredState,
  type ForwardSpec,
  type Manifest,
  type ReadySpec,
  type RestartPolicy,
  type VmSpec,
} from './types.js';

/** The manifest's raw shape once the schema has accepted it. */
interface RawForwardObject {
  proto?: 'tcp' | 'udp';
  host: number;
  guest: number;
  address?: string;
  guestAddress?: string;
}
interface RawVm {
  memory?: string | number;
  cpus?: number;
  disk?: string | { path: string; size?: string; backing?: string };
  cdrom?: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  nic?: string;
  forwards?: (string | RawForwardObject)[];
  snapshot?: string;
  state?: DesiredState;
  stopTimeout?: string | number;
  accel?: Accel;
  monitor?: string;
  args?: string[];
  restart?: RestartPolicy;
  ready?: {
    tcp?: number;
    http?: { port: number; path?: string; status?: number };
    timeout?: string | number;
  };
}

/**
 * qemu-system options that qvm sets itself. Letting `args` set them again would break how qvm finds, steers
 * or stops the VM, so they are refused with a located error instead.
 */
const MANAGED_OPTIONS = new Set([
  '-daemonize',
  '-pidfile',
  '-qmp',
  '-qmp-pretty',
  '-monitor',
  '-mon',
  '-name',
  '-loadvm',
  '-incoming',
  '-display',
  '-nographic',
  '-runas',
  '-chroot',
  '-S',
]);

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
] as const;

export interface CheckResult {
  manifest?: Manifest;
  diagnostics: Diagnostic[];
}

/**
 * Loads and checks a manifest file, or every `*.yaml` and `*.yml` in a folder (the way a GitOps repository
 * holds them). Throws ManifestError with every problem, of every file, when anything is not valid.
 */
export async function loadManifest(file: string): Promise<Manifest> {
  const absolute = path.resolve(file);
  let isFolder = false;
  try {
    isFolder = statSync(absolute).isDirectory();
  } catch {
    // a missing file is reported by loadYamlFile, located
  }
  if (!isFolder) {
    const loaded = await loadYamlFile(absolute, file);
    const result = checkManifest(loaded, path.dirname(absolute));
    if (!result.manifest) throw new ManifestError(file, result.diagnostics);
    return result.manifest;
  }
  const names = readdirSync(absolute)
    // Hidden files are editors' lock and swap files (Emacs .#a.yaml), not manifests.
    .filter((name) => /^[^.].*\.ya?ml$/.test(name))
    .sort();
  if (names.length === 0) {
    throw new ManifestError(file, [{ file, message: 'is a folder with no *.yaml or *.yml manifest in it' }]);
  }
  const results = await Promise.all(
    names.map(async (name) =>
      checkManifest(await loadYamlFile(path.join(absolute, name), path.join(file, name)), absolute),
    ),
  );
  const diagnostics = results.flatMap((r) => r.diagnostics);
  const manifests = results.flatMap((r) => (r.manifest ? [r.manifest] : []));
  const declaredIn = new Map<string, Manifest>();
  for (const m of manifests) {
    for (const vm of m.vms) {
      const first = declaredIn.get(vm.name);
      if (first) {
        const at = first.locate(['vms', vm.name]);
        diagnostics.push({
          file: m.file,
          ...m.locate(['vms', vm.name]),
          path: `vms.${vm.name}`,
          message: `is also declared in ${first.file}${at ? `:${at.line}` : ''}; a VM name must be unique across the folder`,
        });
      } else {
        declaredIn.set(vm.name, m);
      }
    }
  }
  if (diagnostics.length > 0) throw new ManifestError(file, diagnostics);
  return {
    file,
    dir: absolute,
    vms: manifests.flatMap((m) => m.vms),
    locate: (fieldPath) => {
      const owner = typeof fieldPath[1] === 'string' ? declaredIn.get(fieldPath[1]) : undefined;
      return owner?.locate(fieldPath);
    },
  };
}

/** Schema, then semantic checks, then defaults. `dir` is what relative paths are relative to. */
export function checkManifest(loaded: LoadedYaml, dir: string): CheckResult {
  if (loaded.diagnostics.length > 0) return { diagnostics: loaded.diagnostics };
  const file = loaded.file;
  if (loaded.value === undefined || loaded.value === null) {
    return {
      diagnostics: [
        { file, line: 1, column: 1, message: 'is empty; a manifest is a mapping with a `vms` key' },
      ],
    };
  }
  if (typeof loaded.value !== 'object' || Array.isArray(loaded.value)) {
    const position = loaded.locate([]);
    const kind = Array.isArray(loaded.value) ? 'a list' : `a ${typeof loaded.value}`;
    return {
      diagnostics: [
        {
          file,
          ...position,
          message: `is ${kind}, not a mapping; a manifest is a mapping with a \`vms\` key`,
        },
      ],
    };
  }

  const diagnostics = schemaDiagnostics(loaded);
  const located = (fieldPath: FieldPath, message: string): Diagnostic => ({
    file,
    ...loaded.locate(fieldPath),
    path: formatFieldPath(fieldPath),
    message,
  });
  // Semantic checks run on every field the schema accepted, so one pass reports every problem.
  const schemaErrorPaths = diagnostics.map((d) => d.path ?? '');
  const schemaAccepted = (fieldPath: FieldPath) => {
    const prefix = formatFieldPath(fieldPath);
    return !schemaErrorPaths.some(
      (p) => p === prefix || p.startsWith(`${prefix}.`) || p.startsWith(`${prefix}[`),
    );
  };

  const rawVms = ((loaded.value as { vms?: unknown }).vms ?? {}) as Record<string, RawVm>;
  const vms: VmSpec[] = [];
  const claimed: { forward: ForwardSpec; vm: string }[] = [];
  const resolvePath = (p: string) => path.resolve(dir, p);

  if (typeof rawVms === 'object' && rawVms !== null && !Array.isArray(rawVms)) {
    for (const [name, raw] of Object.entries(rawVms)) {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) continue;
      const at = (...rest: (string | number)[]): FieldPath => ['vms', name, ...rest];
      const accepted = (...rest: (string | number)[]) => schemaAccepted(at(...rest));
      const problems: Diagnostic[] = [];

      const forwards: ForwardSpec[] = [];
      (Array.isArray(raw.forwards) ? raw.forwards : []).forEach((item, index) => {
        if (!accepted('forwards', index)) return;
        if (typeof item === 'string') {
          const parsed = parseHostfwd(item);
          if (!parsed.ok) {
            problems.push(located(at('forwards', index), `${parsed.reason}, got ${JSON.stringify(item)}`));
            return;
          }
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
      for (const forward of forwards) {
        const earlier = claimed.find((c) => hostSidesCollide(c.forward, forward));
        if (earlier) {
          const otherPath = ['vms', earlier.vm, 'forwards', earlier.forward.index];
          const where = loaded.locate(otherPath);
          const other = formatFieldPath(otherPath);
          problems.push(
            located(
              at('forwards', forward.index),
              `${describeForward(forward)} claims the same host port as ${other}` +
                (where ? ` (line ${where.line})` : ''),
            ),
          );
        } else {
          claimed.push({ forward, vm: name });
        }
      }

      if (raw.kernel === undefined) {
        for (const field of ['initrd', 'append'] as const) {
          if (raw[field] !== undefined)
            problems.push(located(at(field), 'needs `kernel` (direct kernel boot)'));
        }
      }

      (Array.isArray(raw.args) ? raw.args : []).forEach((arg, index) => {
        if (!accepted('args', index)) return;
        const option = arg.startsWith('--') ? arg.slice(1) : arg;
        if (MANAGED_OPTIONS.has(option)) {
          problems.push(
            located(
              at('args', index),
              `${arg} is managed by qvm and cannot be passed in args, got ${JSON.stringify(arg)}`,
            ),
          );
        }
      });

      const disk =
        raw.disk === undefined || !accepted('disk')
          ? undefined
          : typeof raw.disk === 'string'
            ? { path: resolvePath(raw.disk) }
            : {
                path: resolvePath(raw.disk.path),
                ...(raw.disk.size ? { sizeBytes: parseSize(raw.disk.size)! } : {}),
                ...(raw.disk.backing ? { backing: resolvePath(raw.disk.backing) } : {}),
              };

      if (raw.monitor !== undefined) {
        if (raw.snapshot !== undefined) {
          problems.push(
            located(
              at('snapshot'),
              'cannot be used with `monitor`: qvm does not start an adopted VM, so it cannot boot it from a snapshot',
            ),
          );
        }
        if (raw.state === 'saved') {
          problems.push(
            located(
              at('state'),
              'saved cannot be used with `monitor`: qvm could not start an adopted VM again to resume it',
            ),
          );
        }
      } else if (!disk && raw.disk === undefined && (raw.snapshot !== undefined || raw.state === 'saved')) {
        const field = raw.snapshot !== undefined ? 'snapshot' : 'state';
        if (accepted(field)) {
          problems.push(
            located(
              at(field),
              "needs a qcow2 `disk`: QEMU saves snapshots (RAM and devices) into the VM's qcow2 disk",
            ),
          );
        }
      }

      // savevm needs every writable drive to support snapshots: a writable raw drive or pflash in args fails it
      // halfway (QEMU: "Device 'pflash1' is writable but does not support snapshots").
      if ((raw.snapshot !== undefined || raw.state === 'saved') && Array.isArray(raw.args)) {
        raw.args.forEach((arg, index) => {
          const option = raw.args![index - 1];
          if (option !== '-drive' && option !== '--drive') return;
          const parts = arg.split(/(?<!,),(?!,)/);
          const format = parts.find((p) => p.startsWith('format='))?.slice(7);
          const readonly = parts.some(
            (p) => p === 'readonly=on' || p === 'readonly' || p === 'readonly=true',
          );
          if (!readonly && format !== 'qcow2') {
            problems.push(
              located(
                at('args', index),
                `is a writable ${format ?? 'raw'} drive, and snapshots (snapshot:, state: saved) need every writable drive to be qcow2: add readonly=on, or use a qcow2 image with format=qcow2`,
              ),
            );
          }
        });
      }

      let ready: ReadySpec | undefined;
      if (raw.ready !== undefined && accepted('ready')) {
        const r = raw.ready;
        const kinds = (['tcp', 'http'] as const).filter((k) => r[k] !== undefined);
        if (kinds.length !== 1) {
          problems.push(located(at('ready'), 'needs exactly one of tcp or http'));
        } else {
          const port = r.tcp ?? r.http!.port;
          const forward = forwards.find((f) => f.proto === 'tcp' && f.hostPort === port);
          if (!forward) {
            problems.push(
              located(
                at('ready', ...(r.tcp !== undefined ? ['tcp'] : ['http', 'port'])),
                `must be the host port of one of this VM's tcp forwards, got ${port}`,
              ),
            );
          } else {
            // A forward on every interface is probed on loopback.
            const host = forward.hostAddress === '0.0.0.0' ? '127.0.0.1' : forward.hostAddress;
            const timeoutMs = r.timeout === undefined ? DEFAULTS.readyTimeoutMs : parseDuration(r.timeout)!;
            ready =
              r.tcp !== undefined
                ? { kind: 'tcp', host, port, timeoutMs }
                : {
                    kind: 'http',
                    host,
                    port,
                    path: r.http!.path ?? '/',
                    status: r.http!.status ?? 200,
                    timeoutMs,
                  };
          }
        }
      }

      diagnostics.push(...problems);
      if (problems.length > 0 || !accepted()) continue;

      vms.push({
        name,
        memoryMiB: raw.memory === undefined ? DEFAULTS.memoryMiB : parseMemoryMiB(raw.memory)!,
        cpus: raw.cpus ?? DEFAULTS.cpus,
        ...(disk ? { disk } : {}),
        ...(raw.cdrom !== undefined ? { cdrom: resolvePath(raw.cdrom) } : {}),
        ...(raw.kernel !== undefined ? { kernel: resolvePath(raw.kernel) } : {}),
        ...(raw.initrd !== undefined ? { initrd: resolvePath(raw.initrd) } : {}),
        ...(raw.append !== undefined ? { append: raw.append } : {}),
        nic: raw.nic ?? DEFAULTS.nic,
        forwards,
        ...(raw.snapshot !== undefined ? { snapshot: raw.snapshot } : {}),
        state: raw.state ?? DEFAULTS.state,
        stopTimeoutMs:
          raw.stopTimeout === undefined ? DEFAULTS.stopTimeoutMs : parseDuration(raw.stopTimeout)!,
        accel: raw.accel ?? DEFAULTS.accel,
        ...(raw.monitor !== undefined ? { monitor: resolvePath(raw.monitor) } : {}),
        args: raw.args ?? [],
        restart: raw.restart ?? DEFAULTS.restart,
        ...(ready ? { ready } : {}),
        source: file,
        ...(raw.monitor !== undefined
          ? { adoptedIgnores: RESTART_CLASS_FIELDS.filter((f) => raw[f] !== undefined) }
          : {}),
      });
    }
  }

  if (diagnostics.length > 0) {
    diagnostics.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
    return { diagnostics };
  }
  return { manifest: { file, dir, vms, locate: (p) => loaded.locate(p) }, diagnostics: [] };
}
