/**
 * Reads the real world for every VM of a manifest, in parallel: the process (pidfile checked against
 * /proc), and, over one QMP connection per running VM, its status, forwards (`info usernet`) and disks
 * (`query-block`: format, size, snapshots, I/O errors); a stopped VM's disk through `qemu-img -f FORMAT`.
 * No state file is trusted as the state of a VM; the records qvm keeps only answer what the world cannot.
 */
import { accessSync, constants, existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { totalmem } from 'node:os';
import path from 'node:path';
import { isQvmError, MonitorConnectError } from '../errors.js';
import type { Manifest, VmSpec } from '../manifest/types.js';
import { sameForward } from '../model/forward.js';
import { VM_NAME } from '../model/names.js';
import { kvmUsable } from '../qemu/accel.js';
import { QEMU_SYSTEM } from '../qemu/argv.js';
import { connectMonitor } from '../qemu/monitor.js';
import { parseSnapshots } from '../qemu/parse/snapshots.js';
import { parseStatus } from '../qemu/parse/status.js';
import { parseUsernet } from '../qemu/parse/usernet.js';
import { type BlockDevice, QmpClient } from '../qemu/qmp.js';
import {
  ensurePrivateDir,
  kvmProbeCache,
  type Namespace,
  runtimeRoot,
  type VmPaths,
  vmPaths,
} from '../runtime/paths.js';
import { checkPidfile } from '../runtime/process.js';
import { readLaunchRecord, readSnapshotRecords } from '../runtime/records.js';
import { observeDisk, observeImage, observeSavedState } from './disk.js';
import { checkPort, qvmVmOf } from './ports.js';
import { qemuProcesses, runningElsewhere, socketOwner } from './processes.js';
import type { HostFacts, MonitorClash, Observation, ObservedVm, PortConflict, RunningVm } from './types.js';

export interface ObserveOptions {
  /** Deadline for each monitor conversation. */
  timeoutMs: number;
}

/** The drive id of a VM's disk on the command lines qvm builds. */
const DISK_DEVICE = 'disk0';

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
  const qemuInstalled = onPath(QEMU_SYSTEM);
  const kvm = qemuInstalled
    ? await kvmUsable(cache)
    : { usable: false, reason: `${QEMU_SYSTEM} is not installed` };
  return {
    kvmUsable: kvm.usable,
    kvmReason: kvm.reason,
    qemuInstalled,
    memoryBytes: totalmem() + swapBytes(),
    runtimeRoot: root,
  };
}

function onPath(program: string): boolean {
  return (process.env.PATH ?? '').split(':').some((dir) => {
    try {
      accessSync(path.join(dir || '.', program), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function swapBytes(): number {
  try {
    const kib = /^SwapTotal:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1];
    return kib ? Number(kib) * 1024 : 0;
  } catch {
    return 0;
  }
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
  markElsewhere(vms, namespace, host.runtimeRoot);
  const byName = new Map(vms.map((v) => [v.name, v]));
  return {
    vms: byName,
    orphans: orphans.filter((o) => o.state !== 'stopped'),
    host,
    portConflicts: await findPortConflicts(manifest, byName, namespace),
    monitorClashes: findMonitorClashes(manifest, host.runtimeRoot),
  };
}

/**
 * Stopped VMs whose QEMU runs under another runtime root (so this qvm does not see its pidfile): the scan of
 * /proc is only done when some VM looks stopped, which is when it matters (before starting one).
 */
function markElsewhere(vms: ObservedVm[], namespace: Namespace, root: string): void {
  if (!vms.some((v) => v.state === 'stopped' && !v.adopted)) return;
  const processes = qemuProcesses();
  for (const vm of vms) {
    if (vm.state !== 'stopped' || vm.adopted) continue;
    const elsewhere = runningElsewhere(processes, namespace.id, vm.name, root);
    if (elsewhere) vm.elsewhere = elsewhere;
  }
}

/**
 * Checks the host ports of forwards that are wanted but not yet set up on their VM, and the VNC port of a VM
 * that is to start. A port held by one of this manifest's own VMs is not a conflict (a forward moving between
 * two of them); anything else is.
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
    const up = vm?.state === 'running' && vm.runstate !== 'shutdown';
    const have = up ? vm.forwards : [];
    const check = (index: PortConflict['index'], proto: 'tcp' | 'udp', address: string, port: number) =>
      checks.push(
        checkPort(proto, address, port).then((result) => {
          if (result.free) return undefined;
          if (result.vm && result.vm.namespaceDir === namespace.dir) return undefined;
          return { vm: spec.name, index, holder: result.holder };
        }),
      );
    for (const forward of spec.forwards) {
      if (have.some((h) => sameForward(h, forward))) continue;
      check(forward.index, forward.proto, forward.hostAddress, forward.hostPort);
    }
    // A running VM's QEMU holds its own VNC port; one that is to start needs it free.
    if (!up && spec.display?.kind === 'vnc-tcp') check('vnc', 'tcp', spec.display.address, spec.display.port);
  }
  return (await Promise.all(checks)).filter((c): c is PortConflict => c !== undefined);
}

/**
 * Adopted VMs whose monitor is not a QEMU of their own: a socket inside qvm's runtime folders is a VM qvm
 * started (steering it as adopted would flip its forwards and quit it behind qvm's back), and two entries
 * whose sockets lead to one process are one QEMU.
 */
function findMonitorClashes(manifest: Manifest, root: string): MonitorClash[] {
  const clashes: MonitorClash[] = [];
  const owners = new Map<number, string>();
  const realRoot = realPath(root);
  for (const spec of manifest.vms) {
    if (!spec.monitor) continue;
    const socket = realPath(spec.monitor);
    if (socket.startsWith(`${realRoot}/`)) {
      clashes.push({
        vm: spec.name,
        message: `monitor ${spec.monitor} is inside qvm's runtime folder ${root}: it belongs to a VM qvm started, which is managed by its name, never adopted`,
      });
      continue;
    }
    const pid = socketOwner(socket);
    if (pid === undefined) continue;
    const ours = qvmVmOf(readArgv(pid));
    if (ours) {
      clashes.push({
        vm: spec.name,
        message: `monitor ${spec.monitor} belongs to QEMU pid ${pid}, VM ${ours.vm} that qvm started for ${ours.manifest}; qvm does not adopt its own VMs`,
      });
      continue;
    }
    const first = owners.get(pid);
    if (first) {
      clashes.push({
        vm: spec.name,
        message: `monitor ${spec.monitor} reaches the same QEMU (pid ${pid}) as VM ${first}; one QEMU can be one VM of the manifest`,
      });
    } else {
      owners.set(pid, spec.name);
    }
  }
  return clashes;
}

function readArgv(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

function realPath(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return path.resolve(file);
  }
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
  const savedState = observeSavedState(paths);
  const snapshotRecords = readSnapshotRecords(paths.snapshots);
  const common = {
    name,
    adopted: false,
    ...(savedState ? { savedState } : {}),
    ...(Object.keys(snapshotRecords).length ? { snapshotRecords } : {}),
  };
  const pidfile = checkPidfile(paths.pidfile);
  if (pidfile.kind !== 'ours') {
    const disk = spec?.disk ? await observeDisk(spec.disk.path, spec.disk.format, paths) : undefined;
    const dataDisks = await Promise.all(
      (spec?.dataDisks ?? []).map((d) => observeDisk(d.path, d.format, paths)),
    );
    // The image matters when the disk is still to be made, or when the base it was made from is gone.
    const needed =
      disk !== undefined &&
      (!disk.exists || (disk.backingFile !== undefined && !existsSync(disk.backingFile)));
    const image = spec?.image ? await observeImage(spec.image, needed) : undefined;
    const stale =
      pidfile.kind === 'stale'
        ? `${pidfile.reason}; its pidfile is stale`
        : existsSync(paths.qmp)
          ? 'a monitor socket was left by a QEMU that is gone'
          : undefined;
    return {
      ...common,
      state: 'stopped',
      ...(disk ? { disk } : {}),
      ...(dataDisks.length ? { dataDisks } : {}),
      ...(image ? { image } : {}),
      ...(stale ? { stale } : {}),
    };
  }
  try {
    return { ...common, ...(await observeRunning(name, spec, paths, pidfile.process, options)) };
  } catch (error) {
    if (!isQvmError(error)) throw error;
    return { ...common, state: 'unknown', pid: pidfile.process.pid, error: error.message };
  }
}

/** A VM whose QEMU qvm started runs: everything about it over one QMP connection. */
async function observeRunning(
  name: string,
  spec: VmSpec | undefined,
  paths: VmPaths,
  process: { pid: number; argv: string[]; startedAtMs: number },
  options: ObserveOptions,
): Promise<RunningVm> {
  const record = readLaunchRecord(paths.launch);
  const launch = record && !('unreadable' in record) ? record : undefined;
  const qmp = await QmpClient.connect(paths.qmp, { timeoutMs: options.timeoutMs });
  try {
    // Asked together: QEMU gets the three in one write and answers them in order.
    const [runstate, usernet, blocks] = await Promise.all([
      qmp.queryStatus(),
      qmp.hmp('info usernet'),
      qmp.queryBlock(),
    ]);
    const forwards = parseUsernet(usernet);
    const diskBlock = blocks.find((b) => b.device === DISK_DEVICE);
    const diskPath = spec?.disk?.path ?? launch?.launch.disk?.path;
    const format = spec?.disk?.format ?? launch?.launch.disk?.format ?? 'qcow2';
    const disk = diskPath ? await observeDisk(diskPath, format, paths, diskBlock) : undefined;
    const dataDisks = await Promise.all(
      (spec?.dataDisks ?? []).map((d, i) =>
        observeDisk(
          d.path,
          d.format,
          paths,
          blocks.find((b) => b.device === `data${i}`),
        ),
      ),
    );
    const ioError = blocks.find((b) => b.ioStatus !== undefined && b.ioStatus !== 'ok');
    return {
      name,
      adopted: false,
      state: 'running',
      pid: process.pid,
      startedAtMs: process.startedAtMs,
      runstate,
      argv: process.argv,
      ...(launch && sameArgv(launch.argv, process.argv) ? { launch } : {}),
      ...(record && 'unreadable' in record ? { launchUnreadable: record.unreadable } : {}),
      forwards,
      snapshots: loadableSnapshots(blocks),
      ...(disk ? { disk } : {}),
      ...(dataDisks.length ? { dataDisks } : {}),
      ...(ioError ? { ioError: ioErrorOf(ioError) } : {}),
    };
  } finally {
    await qmp.close();
  }
}

/** Snapshots `loadvm` can use: those on every writable drive that holds snapshots (qcow2). */
function loadableSnapshots(blocks: BlockDevice[]): string[] {
  const writable = blocks.filter((b) => b.inserted && !b.inserted.readOnly && b.inserted.format === 'qcow2');
  if (writable.length === 0) return [];
  const [first, ...rest] = writable.map((b) => b.inserted!.snapshots);
  return first!.filter((tag) => rest.every((tags) => tags.includes(tag)));
}

function ioErrorOf(block: BlockDevice): NonNullable<RunningVm['ioError']> {
  return { device: block.device, file: block.inserted?.file ?? block.device, status: block.ioStatus! };
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

function sameArgv(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
