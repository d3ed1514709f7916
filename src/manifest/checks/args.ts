/** `args`, the escape hatch: it may not take over what qvm manages, nor break snapshots with a writable raw drive. */
import type { Diagnostic } from '../../errors.js';
import type { VmCheck } from '../document.js';

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

/** `args` may not set an option qvm manages. */
export const checkManagedOptions: VmCheck = (doc) => {
  const out: Diagnostic[] = [];
  (Array.isArray(doc.raw.args) ? doc.raw.args : []).forEach((arg, index) => {
    if (!doc.accepted('args', index)) return;
    const option = arg.startsWith('--') ? arg.slice(1) : arg;
    if (MANAGED_OPTIONS.has(option)) {
      out.push(
        doc.problem(
          ['args', index],
          `${arg} is managed by qvm and cannot be passed in args, got ${JSON.stringify(arg)}`,
        ),
      );
    }
  });
  return out;
};

/**
 * savevm needs every writable drive to support snapshots: a writable raw drive or pflash in args fails it
 * halfway (QEMU: "Device 'pflash1' is writable but does not support snapshots").
 */
export const checkSnapshotDrives: VmCheck = (doc) => {
  const { raw } = doc;
  if ((raw.snapshot === undefined && raw.state !== 'saved') || !Array.isArray(raw.args)) return [];
  const out: Diagnostic[] = [];
  raw.args.forEach((arg, index) => {
    const option = raw.args![index - 1];
    if (option !== '-drive' && option !== '--drive') return;
    // An item the schema refused (not a string) is already reported there; it is no drive to look into.
    if (typeof arg !== 'string' || !doc.accepted('args', index)) return;
    const parts = arg.split(/(?<!,),(?!,)/);
    const format = parts.find((p) => p.startsWith('format='))?.slice(7);
    const readonly = parts.some((p) => p === 'readonly=on' || p === 'readonly' || p === 'readonly=true');
    if (!readonly && format !== 'qcow2') {
      out.push(
        doc.problem(
          ['args', index],
          `is a writable ${format ?? 'raw'} drive, and snapshots (snapshot:, state: saved) need every writable drive to be qcow2: add readonly=on, or use a qcow2 image with format=qcow2`,
        ),
      );
    }
  });
  return out;
};
