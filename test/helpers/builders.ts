/** Builders for planner and renderer tests: manifests from YAML text, observations from short descriptions. */
import { expect } from 'vitest';
import { formatDiagnostic } from '../../src/errors.js';
import { parseYaml } from '../../src/manifest/load.js';
import type { Manifest } from '../../src/manifest/types.js';
import { checkManifest } from '../../src/manifest/validate.js';
import { SAVED_STATE_TAG } from '../../src/model/names.js';
import type {
  DiskState,
  Observation,
  ObservedVm,
  RunningVm,
  SavedStateObservation,
  StoppedVm,
} from '../../src/observe/types.js';
import { launchSpec } from '../../src/plan/launch.js';
import { buildQemuArgs, QEMU_SYSTEM } from '../../src/qemu/argv.js';
import type { ObservedForward } from '../../src/qemu/parse/usernet.js';
import { type Namespace, vmPaths } from '../../src/runtime/paths.js';
import type { LaunchRecord } from '../../src/runtime/records.js';

export const NS: Namespace = {
  id: 'ns',
  source: '/srv/vms/qvm.yaml',
  dir: '/run/qvm/ns',
  record: '/run/qvm/ns/namespace.json',
  lock: '/run/qvm/ns/lock',
  stateDir: '/var/lib/qvm/ns',
  sshKey: '/var/lib/qvm/ns/ssh/id_ed25519',
};

export function manifest(text: string): Manifest {
  const result = checkManifest(parseYaml(text, 'qvm.yaml'), '/srv/vms');
  expect(result.diagnostics.map(formatDiagnostic)).toEqual([]);
  return result.manifest!;
}

export function observation(
  vms: ObservedVm[],
  orphans: ObservedVm[] = [],
  kvmUsable = false,
  portConflicts: Observation['portConflicts'] = [],
): Observation {
  return {
    vms: new Map(vms.map((v) => [v.name, v])),
    orphans,
    host: {
      kvmUsable,
      kvmReason: 'test',
      qemuInstalled: true,
      memoryBytes: 64 * 2 ** 30,
      runtimeRoot: '/run/qvm',
    },
    portConflicts,
    monitorClashes: [],
  };
}

export function stopped(name: string, extra: Partial<StoppedVm> = {}): StoppedVm {
  return { name, adopted: false, state: 'stopped', ...extra };
}

export function disk(path: string, extra: Partial<DiskState> = {}): DiskState {
  return {
    path,
    exists: true,
    format: 'qcow2',
    virtualSizeBytes: 64 * 2 ** 20,
    snapshots: [],
    identity: { dev: 1, ino: 2 },
    ...extra,
  };
}

/**
 * A VM running exactly as qvm would have started it from `m`'s spec (argv and launch record), with the
 * forwards it was started with, unless overridden.
 */
export function runningAsSpecified(
  m: Manifest,
  name: string,
  extra: Partial<RunningVm> = {},
  namespace: Namespace = NS,
): RunningVm {
  const spec = m.vms.find((v) => v.name === name)!;
  const {
    name: _name,
    loadvm: _loadvm,
    ...recorded
  } = launchSpec(spec, 'tcg', spec.forwards, {
    format: 'qcow2',
  });
  const args = buildQemuArgs({ name, ...recorded }, vmPaths(namespace, name));
  const launch: LaunchRecord = {
    version: 2,
    vm: name,
    manifest: 'qvm.yaml',
    argv: [QEMU_SYSTEM, ...args],
    launch: recorded,
    stopTimeoutMs: spec.stopTimeoutMs,
    startedAt: '2026-11-26T00:00:00.000Z',
    liveForwards: [],
  };
  const forwards: ObservedForward[] = spec.forwards.map(({ index: _i, ...f }) => ({
    ...f,
    netdev: 'net0',
    guestAddress: f.guestAddress || '10.0.2.15',
  }));
  return {
    name,
    adopted: false,
    state: 'running',
    pid: 4242,
    startedAtMs: 0,
    runstate: 'running',
    argv: [QEMU_SYSTEM, ...args],
    launch,
    forwards,
    snapshots: [],
    ...(spec.disk ? { disk: disk(spec.disk.path) } : {}),
    ...extra,
  };
}

/** A disk file that does not exist yet. */
export function missingDisk(path: string): DiskState {
  return { path, format: 'qcow2', exists: false };
}

/** The hibernation record qvm writes after a save, for the disk builder's file (dev 1, ino 2). */
export function savedState(vm: string, path: string, launch?: LaunchRecord['launch']): SavedStateObservation {
  return {
    record: {
      version: 1,
      vm,
      tag: SAVED_STATE_TAG,
      savedAt: '2026-11-26T00:00:00.000Z',
      disk: { path, dev: 1, ino: 2 },
      ...(launch ? { launch } : {}),
    },
  };
}
