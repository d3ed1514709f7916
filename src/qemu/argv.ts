/**
 * The qemu-system-x86_64 command line for a VM. Pure: the same launch spec and paths always give the same argv,
 * which is what lets the planner compare the command line a VM runs with against the one the manifest asks for.
 *
 * Values are passed as separate argv items (no shell). QEMU's own option syntax is the remaining injection
 * route: in `-drive file=PATH,...` a comma in PATH would start a new option, so commas are doubled, which is
 * QEMU's escape.
 */
import { formatHostfwd, type HostForward } from '../model/forward.js';
import type { VmPaths } from '../runtime/paths.js';

/** The emulator qvm runs; found on PATH. */
export const QEMU_SYSTEM = 'qemu-system-x86_64';

/** The netdev every VM's user network gets; hostfwd_add/remove name it. */
export const NETDEV_ID = 'net0';

/**
 * The device set qvm builds: `-nodefaults`, then only what the manifest asks for, plus the serial port and a
 * VGA. A launch records it, because QEMU cannot load a snapshot or a saved state into another device set:
 * one taken by a qvm that started QEMU with its default devices (floppy, IDE CD-ROM, parallel port, the NIC's
 * boot ROM) is never loaded into this one.
 */
export const DEVICE_SET = 'nodefaults';

/**
 * Everything a QEMU process is started with, resolved: no defaults left to apply, `auto` already decided. The
 * planner builds it from the manifest; the launch record keeps it, so a later plan can say what changed.
 */
export interface LaunchSpec {
  name: string;
  memoryMiB: number;
  cpus: number;
  accel: 'kvm' | 'tcg';
  /** Always DEVICE_SET for a launch qvm builds now; a record without it was started with QEMU's defaults. */
  devices: typeof DEVICE_SET;
  nic: string;
  /** Forwards to put on the command line. */
  forwards: HostForward[];
  disk?: { path: string; format: string };
  cdrom?: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  /** The cloud-init NoCloud seed: a folder served read-only as a FAT drive labelled cidata. */
  seed?: { dir: string; instanceId: string };
  /** A qemu-guest-agent channel on the VM's agent socket. */
  agent?: true;
  /** Host folders shared over virtio-9p. */
  mounts?: { host: string; tag: string; readonly: boolean }[];
  /** Data disks, after the OS disk. */
  dataDisks?: { path: string; format: string; serial: string }[];
  /** VNC on the VM's vnc socket, or on a TCP address. */
  display?: { vnc: 'socket' } | { vnc: 'tcp'; address: string; port: number };
  /** Extra arguments from the manifest, passed as they are. */
  args: string[];
  /** Boot from this snapshot (-loadvm). */
  loadvm?: string;
}

/** Escapes a value for QEMU's `key=value,key=value` option syntax. */
export function optionValue(value: string): string {
  return value.replace(/,/g, ',,');
}

/** The argv (without the program name) that starts this VM daemonized and headless. */
export function buildQemuArgs(spec: LaunchSpec, paths: VmPaths): string[] {
  const args: string[] = [
    '-name',
    `${spec.name},process=qvm-${spec.name}`,
    '-accel',
    spec.accel,
    '-m',
    String(spec.memoryMiB),
    '-smp',
    String(spec.cpus),
    '-display',
    'none',
    // QEMU's default devices cost boot time and do nothing here: a Debian initramfs spends seconds probing
    // the floppy controller ("floppy: error 10"). Every device is added below, explicitly.
    '-nodefaults',
    // A VGA even with no display: `qvm screenshot` (QMP screendump) needs one. -vga, not -device VGA, so an
    // `args: [-vga, ...]` replaces it instead of adding a second card.
    '-vga',
    'std',
    '-daemonize',
    '-pidfile',
    paths.pidfile,
    // Keep the process when the guest powers off: qvm then sees runstate "shutdown" and knows it was the guest.
    '-no-shutdown',
    '-qmp',
    `unix:${optionValue(paths.qmp)},server=on,wait=off`,
    '-qmp',
    `unix:${optionValue(paths.events)},server=on,wait=off`,
    '-monitor',
    `unix:${optionValue(paths.hmp)},server=on,wait=off`,
    '-chardev',
    `socket,id=serial0,path=${optionValue(paths.serial)},server=on,wait=off,logfile=${optionValue(paths.serialLog)},logappend=on`,
    '-serial',
    'chardev:serial0',
    // After -daemonize QEMU points stderr at /dev/null unless -D is given: then its messages go to this file.
    '-D',
    paths.qemuLog,
    '-netdev',
    ['user', `id=${NETDEV_ID}`, ...spec.forwards.map((f) => `hostfwd=${formatHostfwd(f)}`)].join(','),
    '-device',
    nicDevice(spec.nic),
  ];
  args.push(...blockDevices(spec));
  if (spec.cdrom) {
    args.push(
      '-drive',
      `file=${optionValue(spec.cdrom)},format=raw,media=cdrom,readonly=on,if=ide,id=cdrom0`,
    );
    // Disk first, then CD: an empty disk falls through to the installer, an installed one boots itself.
    args.push('-boot', 'order=cd');
  }
  if (spec.agent) {
    args.push(
      '-chardev',
      `socket,id=qga0,path=${optionValue(paths.agent)},server=on,wait=off`,
      '-device',
      'virtio-serial-pci,id=vser0',
      '-device',
      'virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0',
    );
  }
  (spec.mounts ?? []).forEach((m, i) => {
    // security_model=none: files keep their real owner and mode on the host (an executable made in the guest
    // stays executable); mapped-xattr would hide them in xattrs and leave 0600 files behind.
    args.push(
      '-fsdev',
      `local,id=fs${i},path=${optionValue(m.host)},security_model=none${m.readonly ? ',readonly=on' : ''}`,
      '-device',
      `virtio-9p-pci,fsdev=fs${i},mount_tag=${m.tag}`,
    );
  });
  if (spec.display) {
    // -display none stays: no window on the host; VNC is a server beside it.
    args.push(
      '-vnc',
      spec.display.vnc === 'socket'
        ? `unix:${optionValue(paths.vnc)}`
        : `${spec.display.address}:${spec.display.port - 5900}`,
    );
  }
  if (spec.kernel) args.push('-kernel', spec.kernel);
  if (spec.initrd) args.push('-initrd', spec.initrd);
  if (spec.append !== undefined) args.push('-append', spec.append);
  args.push(...spec.args);
  if (spec.loadvm) args.push('-loadvm', spec.loadvm);
  return args;
}

/**
 * The NIC on the user network, without its option ROM: SeaBIOS boots disks and CD-ROMs by itself, and a NIC
 * ROM (iPXE) only adds a network boot attempt that keeps a core busy for seconds when there is nothing to boot.
 * Every model `-nic model=help` lists is PCI; ne2k_isa (ISA, -device only) has no romfile property.
 */
function nicDevice(model: string): string {
  return `${model},netdev=${NETDEV_ID}${model === 'ne2k_isa' ? '' : ',romfile='}`;
}

/**
 * The virtio disks: the OS disk, the data disks, then the cloud-init seed.
 *
 * QEMU quirk: `-drive if=virtio` makes its device after every `-device` of the command line, so a data disk
 * given as `-device virtio-blk-pci` (the only way to set its serial) would come before the OS disk in PCI
 * order and the guest would name it vda. With data disks every disk is therefore `if=none` plus a `-device`,
 * in this order. Without data disks the command line stays as earlier qvm versions wrote it, so their VMs
 * need no restart.
 */
function blockDevices(spec: LaunchSpec): string[] {
  const out: string[] = [];
  // QEMU's vvfat driver serves a host folder as a FAT drive; read-only, it is skipped by savevm, so warm
  // snapshots still work. cloud-init's NoCloud finds it by its label.
  const seed = spec.seed
    ? `format=raw,readonly=on,file.driver=vvfat,file.dir=${optionValue(spec.seed.dir)},file.label=cidata,id=seed0`
    : undefined;
  const data = spec.dataDisks ?? [];
  if (data.length === 0) {
    if (spec.disk)
      out.push('-drive', `file=${optionValue(spec.disk.path)},format=${spec.disk.format},if=virtio,id=disk0`);
    if (seed) out.push('-drive', `if=virtio,${seed}`);
    return out;
  }
  if (spec.disk) {
    // bootindex 1: with -kernel, QEMU gives bootindex 0 to the kernel loader.
    out.push(
      '-drive',
      `file=${optionValue(spec.disk.path)},format=${spec.disk.format},if=none,id=disk0`,
      '-device',
      'virtio-blk-pci,drive=disk0,bootindex=1',
    );
  }
  data.forEach((d, i) => {
    out.push(
      '-drive',
      `file=${optionValue(d.path)},format=${d.format},if=none,id=data${i}`,
      '-device',
      `virtio-blk-pci,drive=data${i},serial=${d.serial}`,
    );
  });
  if (seed) out.push('-drive', `if=none,${seed}`, '-device', 'virtio-blk-pci,drive=seed0');
  return out;
}

/**
 * The parts of a command line that decide whether a running VM must restart: everything except its forwards
 * (changed live) and -loadvm (only matters at boot). Applied to both the running process's argv and the
 * desired one before comparing.
 */
export function restartRelevantArgs(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '-loadvm') {
      i++;
      continue;
    }
    if (arg === '-netdev' && args[i + 1]?.startsWith('user,')) {
      out.push(arg, stripHostfwd(args[i + 1]!));
      i++;
      continue;
    }
    out.push(arg);
  }
  return out;
}

function stripHostfwd(netdev: string): string {
  // Split on single commas only: ",," is an escaped comma inside a value.
  const parts = netdev.split(/(?<!,),(?!,)/);
  return parts.filter((p) => !p.startsWith('hostfwd=')).join(',');
}

/** One line per option, for showing a command line as a diff. */
export function argvLines(args: readonly string[]): string[] {
  const lines: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    if (arg.startsWith('-') && next !== undefined && !next.startsWith('-')) {
      lines.push(`${arg} ${next}`);
      i++;
    } else {
      lines.push(arg);
    }
  }
  return lines;
}
