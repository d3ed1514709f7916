/** The launch of a VM's QEMU, built from its spec: the one place manifest fields become a LaunchSpec. */
import type { VmSpec } from '../manifest/types.js';
import { type HostForward, isLoopback } from '../model/forward.js';
import { buildQemuArgs, DEVICE_SET, type LaunchSpec } from '../qemu/argv.js';
import type { VmPaths } from '../runtime/paths.js';
import type { BootFrom, Launch, PlannedForward } from './types.js';

/** The resolved launch spec of a VM: `accel` decided, forwards and the disk's format given. */
export function launchSpec(
  spec: VmSpec,
  accel: 'kvm' | 'tcg',
  forwards: HostForward[],
  disk: { format?: string } | undefined,
  bootFrom?: BootFrom,
): LaunchSpec {
  return {
    name: spec.name,
    memoryMiB: spec.memoryMiB,
    cpus: spec.cpus,
    accel,
    devices: DEVICE_SET,
    nic: spec.nic,
    forwards: forwards.map(plainForward),
    ...(spec.disk ? { disk: { path: spec.disk.path, format: disk?.format ?? 'qcow2' } } : {}),
    ...(spec.cdrom !== undefined ? { cdrom: spec.cdrom } : {}),
    ...(spec.kernel !== undefined ? { kernel: spec.kernel } : {}),
    ...(spec.initrd !== undefined ? { initrd: spec.initrd } : {}),
    ...(spec.append !== undefined ? { append: spec.append } : {}),
    ...(spec.seed ? { seed: spec.seed } : {}),
    ...(spec.agent ? { agent: true as const } : {}),
    ...(spec.mounts.length
      ? { mounts: spec.mounts.map((m) => ({ host: m.host, tag: m.tag, readonly: !m.writable })) }
      : {}),
    ...(spec.dataDisks.length
      ? { dataDisks: spec.dataDisks.map((d) => ({ path: d.path, format: d.format, serial: d.serial })) }
      : {}),
    ...(spec.display
      ? {
          display:
            spec.display.kind === 'vnc-socket'
              ? { vnc: 'socket' as const }
              : { vnc: 'tcp' as const, address: spec.display.address, port: spec.display.port },
        }
      : {}),
    args: spec.args,
    ...(bootFrom ? { loadvm: bootFrom.tag } : {}),
  };
}

/** A launch: the spec, its argv, and what the launch record keeps beside them. */
export function launchOf(spec: VmSpec, launch: LaunchSpec, paths: VmPaths): Launch {
  return {
    spec: launch,
    args: buildQemuArgs(launch, paths),
    stopTimeoutMs: spec.stopTimeoutMs,
    source: spec.source,
  };
}

/** A forward with only its QEMU fields (a ForwardSpec also carries its manifest index). */
export function plainForward(f: HostForward): HostForward {
  return {
    proto: f.proto,
    hostAddress: f.hostAddress,
    hostPort: f.hostPort,
    guestAddress: f.guestAddress,
    guestPort: f.guestPort,
  };
}

/** Forwards as the plan carries them, each saying whether other machines can reach it. */
export function planned(forwards: HostForward[]): PlannedForward[] {
  return forwards.map((f) => ({ ...plainForward(f), exposed: !isLoopback(f.hostAddress) }));
}
