/**
 * Reads the real world for every VM of a manifest, in parallel: the process (pidfile checked against
 * /proc), QMP status, forwards (`info usernet`), snapshots (`info snapshots` while running, qemu-img while
 * stopped) and the disk. No state file is trusted as the state of a VM.
 */
import { existsSync, readdirSync } from 'node:fs';
import { isQvmError, MonitorConnectError } from '../errors.js';
import type { Manifest, VmSpec } from '../manifest/types.js';
import { sameForward } from '../model/forward.js';
import { VM_NAME } from '../model/names.js';
import { kvmUsable } from '../qemu/accel.js';
import { imageInfo } from '../qemu/img.js';
import { connectMonitor } from '../qemu/monitor.js';
import { parseSnapshots } from '../qemu/parse/snapshots.js';
import { parseStatus } from '../qemu/parse/status.js';
import { parseUsernet } from '../qemu/parse/usernet.js';
import { QmpClient } from '../qemu/qmp.js';
import { ensurePrivateDir, kvmProbeCache, type Namespace, runtimeRoot, vmPaths } from '../runtime/paths.js';
import { checkPidfile } from '../runtime/process.js';
import { readLaunchRecord } from '../runtime/records.js';
import { checkPort } from './ports.js';
import type { DiskState, HostFacts, Observation, ObservedVm, PortConflict } from './types.js';

export interface ObserveOptions {
  /** Deadline for each monitor conversation. */
  timeoutMs: number;
}

/** Facts about the host that the plan depends on. The KVM probe's answer is cached in the runtime root. */
async function hostFacts(): Promise<HostFacts> {
  const root = runtimeRoot();
  let cache: string | undefined;
  try {
    ensurePrivateDir(root);
    cache = kvmProbeCache(root);
  } catch {
    cache = undefined;
  }
  const kvm = await kvmUsable(cache);
  return { kvmUsable: kvm.usable, kvmReason: kvm.reason };
}

/** Observes every VM of the manifest and the running VMs of its namespace that it no longer lists. */
export async function observe(
  manifest: Manifest,
  namespace: Namespace,
  options: ObserveOptions,
): Promise<Observation> {
  const names = new Set(manifest.vms.map((v) => v.name));
  const orphanNames = listNamespaceVms(namespace).filter((name) => !names.has(name));
  const [vms, orphans, host] = await Promise.all([
    Promise.all(manifest.vms.map((spec) => observeVm(spec.name, namespace, spec, options))),
    Promise.all(orphanNames.map((name) => observeVm(name, namespace, undefined, options))),
    hostFacts(),
  ]);
  const byName = new Map(vms.map((v) => [v.name, v]));
  return {
    vms: byName,
    orphans: orphans.filter((o) => o.state !== 'stopped'),
    host,
    portConflicts: await findPortConflicts(manifest, byName, namespace),
  };
}

/**
 * Checks the host ports of forwards that are wanted but not yet set up on their VM. A port held by one of this
 * manifest's own VMs is not a conflict (a forward moving between two of them); anything else is.
 */
async function findPortConflicts(
  manifest: Manifest,
  observed: Map<string, ObservedVm>,
  namespace: Namespace,
): Promise<PortConflict[]> {
  const checks: Promise<PortConflict | undefined>[] = [];
  for (const spec of manifest.vms) {
    if (spec.state !== 'running') continue;
    const vm = observed.get(spec.name);
    if (vm?.state === 'unknown') continue;
    const have = vm?.state === 'running' && vm.runstate !== 'shutdown' ? vm.forwards : [];
    for (const forward of spec.forwards) {
      if (have.some((h) => sameForward(h, forward))) continue;
      checks.push(
        checkPort(forward.proto, forward.hostAddress, forward.hostPort).then((result) => {
          if (result.free) return undefined;
          if (result.vm && result.vm.namespaceDir === namespace.dir) return undefined;
          return { vm: spec.name, index: forward.index, holder: result.holder };
        }),
      );
    }
  }
  return (await Promise.all(checks)).filter((c): c is PortConflict => c !== undefined);
}

/** VM folders in a namespace: every VM this namespace has ever started and not destroyed. */
export function listNamespaceVms(namespace: Namespace): string[] {
  try {
    return readdirSync(namespace.dir, { withFileTypes: true })
      .filter((e) => e.isDirectory() && VM_NAME.test(e.name))
      .map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
}

/** One VM: a spec when the manifest lists it (for the disk and adoption), none for an orphan. */
export async function observeVm(
  name: string,
  namespace: Namespace,
  spec: VmSpec | undefined,
  options: ObserveOptions,
): Promise<ObservedVm> {
  if (spec?.monitor) return observeAdopted(spec, options);
  const paths = vmPaths(namespace, name);
  const pidfile = checkPidfile(paths.pidfile);
  if (pidfile.kind !== 'ours') {
    const disk = spec?.disk ? await observeDisk(spec.disk.path) : undefined;
    const stale =
      pidfile.kind === 'stale'
        ? `${pidfile.reason}; its pidfile is stale`
        : existsSync(paths.qmp)
          ? 'a monitor socket was left by a QEMU that is gone'
          : undefined;
    return { name, adopted: false, state: 'stopped', ...(disk ? { disk } : {}), ...(stale ? { stale } : {}) };
  }
  const { process } = pidfile;
  const record = readLaunchRecord(paths.launch);
  const launch = record && !('unreadable' in record) ? record : undefined;
  const common = {
    name,
    adopted: false,
    pid: process.pid,
  };
  try {
    const qmp = await QmpClient.connect(paths.qmp, { timeoutMs: options.timeoutMs });
    try {
      const runstate = await qmp.queryStatus();
      const forwards = parseUsernet(await qmp.hmp('info usernet'));
      const snapshots = parseSnapshots(await qmp.hmp('info snapshots')).loadable.map((s) => s.tag);
      const diskPath = spec?.disk?.path ?? launch?.launch.disk?.path;
      const disk = diskPath ? await observeDisk(diskPath, snapshots) : undefined;
      return {
        ...common,
        state: 'running',
        startedAtMs: process.startedAtMs,
        runstate,
        argv: process.argv,
        ...(launch && sameArgv(launch.argv, process.argv) ? { launch } : {}),
        ...(record && 'unreadable' in record ? { launchUnreadable: record.unreadable } : {}),
        forwards,
        snapshots,
        ...(disk ? { disk } : {}),
      };
    } finally {
      await qmp.close();
    }
  } catch (error) {
    if (!isQvmError(error)) throw error;
    return { ...common, state: 'unknown', error: error.message };
  }
}

async function observeAdopted(spec: VmSpec, options: ObserveOptions): Promise<ObservedVm> {
  const socket = spec.monitor!;
  const base = { name: spec.name, adopted: true };
  if (!existsSync(socket)) return { ...base, state: 'stopped' };
  try {
    const monitor = await connectMonitor(socket, { timeoutMs: options.timeoutMs });
    try {
      const status = parseStatus(await monitor.hmp('info status'));
      const forwards = parseUsernet(await monitor.hmp('info usernet'));
      const snapshots = parseSnapshots(await monitor.hmp('info snapshots')).loadable.map((s) => s.tag);
      return { ...base, state: 'running', runstate: status?.status ?? 'unknown', forwards, snapshots };
    } finally {
      await monitor.close();
    }
  } catch (error) {
    if (!isQvmError(error)) throw error;
    // A socket nobody listens on: the adopted QEMU has exited.
    if (error instanceof MonitorConnectError) {
      return { ...base, state: 'stopped', stale: error.message };
    }
    return { ...base, state: 'unknown', error: error.message };
  }
}

/** Facts about a disk file (format, size, snapshots); a file that cannot be read is data, not a throw. */
async function observeDisk(file: string, knownSnapshots?: string[]): Promise<DiskState> {
  if (!existsSync(file)) return { path: file, exists: false };
  try {
    const info = await imageInfo(file);
    return {
      path: file,
      exists: true,
      format: info.format,
      virtualSizeBytes: info.virtualSizeBytes,
      snapshots: knownSnapshots ?? info.snapshots,
    };
  } catch (error) {
    if (!isQvmError(error)) throw error;
    return { path: file, exists: true, error: error.message };
  }
}

function sameArgv(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
