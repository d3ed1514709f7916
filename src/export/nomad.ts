/**
 * A VM as a Nomad job for the `qemu` task driver (Nomad v2.0.5), in the JSON form `nomad job run -json` reads.
 * One job per VM: each VM is planned, deployed and stopped on its own, as qvm plans each VM on its own, and a
 * change to one VM's job is a destructive update of that VM only (a job with a group per VM would put every
 * VM's group in one job version, so a typo fix in one VM's job file redeploys the others' file too).
 *
 * The driver builds `-machine type=pc,accel=A -name N -m MEMORY_MB M -drive file=IMAGE,if=IF,id=image0
 * -nographic [-monitor unix:TASKDIR/qm.sock,...] [the guest agent's channel on TASKDIR/qa.sock]` and appends
 * `args`. qvm's own command line goes into args: the guest's `-m` (QEMU takes the last one, so MemoryMB can
 * carry QEMU's overhead), `-smp`, the data disks, the kernel, VNC, and a user network with loopback-bound
 * forwards (the driver's port_map binds every interface, tcp and udp). See MAPPING.md in the scale-out notes
 * for each row and its source.
 */
import type { VmSpec } from '../manifest/types.js';
import { isLoopback } from '../model/forward.js';
import { formatDuration, formatMemory, formatSize } from '../model/units.js';
import { NETDEV_ID, optionValue } from '../qemu/argv.js';
import {
  dataDiskField,
  describeExportForward,
  type ExportForward,
  type ExportSeed,
  exportForwards,
  exportSeed,
  type FetchedFile,
  shownPath,
  sorted,
  unpackedByGoGetter,
  vmFiles,
  Warnings,
} from './common.js';
import type { ExportOptions, ExportWarning } from './types.js';

const NS_PER_MS = 1_000_000;
/** Memory the QEMU process needs beyond the guest's RAM: at least 128 MiB, an eighth of the guest's above 1G. */
export function qemuOverheadMiB(guestMiB: number): number {
  return Math.max(128, Math.ceil(guestMiB / 8));
}
/** The driver refuses a task outside these bounds ("Qemu memory assignment out of bounds"). */
const MEMORY_MB_MIN = 128;
const MEMORY_MB_MAX = 4_000_000;
/** CPU shares Nomad reserves per vCPU (MHz), the figure of the worked example. */
const CPU_MHZ_PER_VCPU = 500;
/** Nomad clients cap KillTimeout at their max_kill_timeout, 30s unless configured. */
const DEFAULT_MAX_KILL_TIMEOUT_MS = 30_000;
/** Restarts in place: 10 within 30 minutes, 5 s apart, then wait for the interval (never give up). */
const RESTART_DELAY = {
  Attempts: 10,
  Interval: 1_800_000 * NS_PER_MS,
  Delay: 5_000 * NS_PER_MS,
  Mode: 'delay',
};
/** Where the cloud-init seed's files are rendered in the task directory, and the drive that serves them. */
const SEED_DIR = 'local/cidata';
/** The file image_path names when the VM's disk is not image_path's (raw disks, VMs without a disk). */
const PLACEHOLDER = 'local/qvm-no-image.img';
/**
 * The VNC socket of `display: vnc`, relative to QEMU's working directory, the task directory: beside the
 * driver's qm.sock and qa.sock, and short whatever the client's data_dir (a unix socket path has a length limit).
 */
const VNC_SOCKET = 'vnc.sock';
/** QEMU's VNC display N listens on TCP port 5900 + N. */
const VNC_BASE_PORT = 5900;

export interface NomadExport {
  job: Record<string, unknown>;
  warnings: ExportWarning[];
}

/** The Nomad job (`{"Job": ...}`) for one VM, and what it could not carry over. */
export function nomadJob(spec: VmSpec, options: ExportOptions): NomadExport {
  const warnings = new Warnings(spec.name);
  const seed = exportSeed(spec, options, warnings);
  const files = collectFiles(spec, options, warnings);
  const disk = diskDrive(spec, files, warnings);
  const forwards = exportForwards(spec);
  const ports = portsOf(forwards, spec);
  const args = [
    ...['-smp', String(spec.cpus), '-m', String(spec.memoryMiB)],
    ...disk.args,
    ...dataDiskArgs(spec, files, warnings),
    ...(seed ? seedArgs(disk.devices) : []),
    ...cdromArgs(files, warnings),
    ...displayArgs(spec, warnings),
    ...kernelArgs(spec, files, warnings),
    ...networkArgs(spec, forwards, ports),
    ...spec.args,
  ];
  const config = {
    image_path: disk.imagePath,
    drive_interface: disk.driveInterface,
    accelerator: accelerator(spec, warnings),
    graceful_shutdown: true,
    ...(spec.agent ? { guest_agent: true } : {}),
    args,
  };
  agentWarnings(spec, warnings);
  mountWarnings(spec, options, warnings);
  const memoryMB = memory(spec, warnings);
  cpus(spec, warnings);
  killTimeout(spec, warnings);
  forwardWarnings(forwards, warnings);
  stateWarnings(spec, warnings);
  argsWarnings(spec, args, warnings);
  const task = {
    Name: 'qemu',
    Driver: 'qemu',
    Config: config,
    Resources: { CPU: CPU_MHZ_PER_VCPU * spec.cpus, MemoryMB: memoryMB },
    KillTimeout: spec.stopTimeoutMs * NS_PER_MS,
    ...(files.length ? { Artifacts: files.map(artifact) } : {}),
    ...(seed || disk.placeholder ? { Templates: templates(seed, disk.placeholder) } : {}),
  };
  const ready = readiness(spec, forwards, ports, warnings);
  const group = {
    Name: spec.name,
    Count: spec.state === 'running' ? 1 : 0,
    ...(ports.length ? { Networks: [networkOf(ports)] } : {}),
    ...restartPolicy(spec, warnings),
    ...(ready ? { Services: [ready.service], Update: ready.update } : {}),
    Tasks: [task],
  };
  updateWarnings(forwards, warnings);
  const job = {
    Job: {
      ID: spec.name,
      Name: spec.name,
      Type: 'service',
      Datacenters: ['*'],
      // Job meta reaches every task's environment, so a change to it is a destructive update: only values that
      // change when the VM does belong here (no warnings text, no qvm version).
      Meta: sorted({ 'qvm.source': spec.source, 'qvm.vm': spec.name }),
      TaskGroups: [group],
    },
  };
  return { job, warnings: warnings.list };
}

/** The files the job downloads (common.ts vmFiles): kernel, initrd, the disk's content, the data disks, the ISO. */
function collectFiles(spec: VmSpec, options: ExportOptions, warnings: Warnings): FetchedFile[] {
  const files = vmFiles(spec, options);
  diskContentWarnings(spec, files, warnings);
  for (const file of files) {
    if (file.localPath !== undefined && file.source === file.localPath) {
      warnings.add(
        file.field,
        `no --artifact-base: the artifact is ${file.localPath}, a path on this machine that every Nomad client must have; serve ${shownPath(file.localPath, options)} over http and pass --artifact-base URL`,
      );
    }
  }
  return files;
}

/**
 * The disk starts from its content (an image, a backing image or the disk file). qvm creates a missing disk
 * (blank, or an overlay of `backing` or `image`) and keeps it; the driver creates nothing and downloads its
 * artifacts into every new allocation.
 */
function diskContentWarnings(spec: VmSpec, files: FetchedFile[], warnings: Warnings): void {
  const disk = spec.disk;
  if (spec.image) {
    if (disk?.sizeBytes !== undefined)
      warnings.add(
        'disk.size',
        `the qemu driver does not grow the image to ${formatSize(disk.sizeBytes)}: the disk has the image's own size (grow it with qemu-img resize in a prestart task, or in the guest)`,
      );
    return;
  }
  if (disk?.backing) {
    warnings.add(
      'disk.backing',
      'the qemu driver makes no overlay: the backing image itself is downloaded into the allocation and is the disk the guest writes',
    );
    return;
  }
  if (disk?.sizeBytes !== undefined) {
    const file = files.find((f) => f.field === 'disk')!;
    warnings.add(
      'disk.size',
      `the qemu driver creates no disk: the job downloads ${file.name}; make it once (qemu-img create -f ${disk.format} ${file.name} ${formatSize(disk.sizeBytes)}) and serve it`,
    );
  }
}

interface DiskDrive {
  imagePath: string;
  driveInterface: string;
  args: string[];
  /** True when image_path names a placeholder file the job writes (a template). */
  placeholder: boolean;
  /** True when every disk is a drive with if=none plus a -device (a VM with data disks), as qvm attaches them. */
  devices: boolean;
}

/**
 * image_path is required and attached with no format= (QEMU probes). A qcow2 disk is image_path, as qvm
 * attaches it (if=virtio). A raw disk is attached by args with format=raw (a probed raw image may not have
 * block 0 written: the guest could not write its partition table), and a VM without a disk gets a
 * placeholder file attached with if=none, which the guest never sees.
 *
 * With data disks every disk is attached as qvm attaches it then (qemu/argv.ts blockDevices): a drive with
 * if=none and its own -device, OS disk first, so the guest still names the OS disk vda. image_path is then
 * if=none too, and args give the driver's drive image0 its device.
 */
function diskDrive(spec: VmSpec, files: FetchedFile[], warnings: Warnings): DiskDrive {
  const content = files.find((f) => f.field === 'disk' || f.field === 'image');
  const format = spec.image ? 'qcow2' : (spec.disk?.format ?? 'qcow2');
  const devices = spec.dataDisks.length > 0;
  if (content && format === 'qcow2') {
    warnings.add(
      spec.disk ? 'disk' : 'image',
      'the disk is an artifact, downloaded again into every new allocation: a job update or a reschedule starts from a fresh copy and loses what the guest wrote (qvm keeps its disk and never overwrites it)',
    );
    return {
      imagePath: `local/${content.name}`,
      driveInterface: devices ? 'none' : 'virtio',
      args: devices ? ['-device', 'virtio-blk-pci,drive=image0,bootindex=0'] : [],
      placeholder: false,
      devices,
    };
  }
  const file = content ? `file=${optionValue(`local/${content.name}`)},format=raw` : undefined;
  const args = !file
    ? []
    : devices
      ? ['-drive', `${file},if=none,id=disk0`, '-device', 'virtio-blk-pci,drive=disk0,bootindex=0']
      : ['-drive', `${file},if=virtio,id=disk0`];
  if (content)
    warnings.add(
      'disk',
      'the disk is an artifact, downloaded again into every new allocation: a job update or a reschedule starts from a fresh copy and loses what the guest wrote (qvm keeps its disk and never overwrites it)',
    );
  return { imagePath: PLACEHOLDER, driveInterface: 'none', args, placeholder: true, devices };
}

/**
 * The data disks, after the OS disk, with their serials, as qvm attaches them. Each is an artifact: the
 * driver creates no disk and keeps none across allocations.
 */
function dataDiskArgs(spec: VmSpec, files: FetchedFile[], warnings: Warnings): string[] {
  return spec.dataDisks.flatMap((d, i) => {
    const field = dataDiskField(d);
    const file = files.find((f) => f.field === field)!;
    if (d.sizeBytes !== undefined)
      warnings.add(
        `${field}.size`,
        `the qemu driver creates no disk: the job downloads ${file.name}; make it once (qemu-img create -f ${d.format} ${file.name} ${formatSize(d.sizeBytes)}) and serve it`,
      );
    warnings.add(
      field,
      'the data disk is an artifact, downloaded again into every new allocation: a job update or a reschedule starts from a fresh copy and loses what the guest wrote (qvm keeps a data disk even through destroy --delete-disks)',
    );
    return [
      '-drive',
      `file=${optionValue(`local/${file.name}`)},format=${d.format},if=none,id=data${i}`,
      '-device',
      `virtio-blk-pci,drive=data${i},serial=${d.serial}`,
    ];
  });
}

function seedArgs(devices: boolean): string[] {
  // What qvm passes for its seed (qemu/argv.ts): the folder served read-only as a FAT drive labelled cidata,
  // after the data disks when there are some.
  const drive = `format=raw,readonly=on,file.driver=vvfat,file.dir=${SEED_DIR},file.label=cidata,id=seed0`;
  return devices
    ? ['-drive', `if=none,${drive}`, '-device', 'virtio-blk-pci,drive=seed0']
    : ['-drive', `if=virtio,${drive}`];
}

/** The channel is the driver's own (guest_agent); what qvm does through it is not. */
function agentWarnings(spec: VmSpec, warnings: Warnings): void {
  if (!spec.agent) return;
  warnings.add(
    'agent',
    "the driver adds the agent's channel (guest_agent: qa.sock in the task directory on the Nomad client), but Nomad does not use it: a stop is graceful_shutdown's ACPI power button only (qvm asks the agent first), and qvm exec and qvm status do not reach it",
  );
}

/**
 * The driver shares no folders (its capabilities: no volume mounts), and a host folder in args would tie the
 * job to the clients that have it: the warning says how, the job leaves the shares out.
 */
function mountWarnings(spec: VmSpec, options: ExportOptions, warnings: Warnings): void {
  for (const m of spec.mounts) {
    warnings.add(
      `mounts[${m.index}]`,
      `not exported: the qemu driver mounts no volumes, so the guest gets nothing at ${m.guest} (where qvm shares ${shownPath(m.host, options)}); to share a folder that every client has, add to args: -fsdev local,id=fs${m.index},path=DIR,security_model=none${m.writable ? '' : ',readonly=on'} -device virtio-9p-pci,fsdev=fs${m.index},mount_tag=${m.tag}`,
    );
  }
}

/** VNC as qvm serves it, on the Nomad client: the task directory's socket, or an address and port there. */
function displayArgs(spec: VmSpec, warnings: Warnings): string[] {
  const display = spec.display;
  if (!display) return [];
  // The driver's -nographic leaves no window, as qvm's -display none does; -vnc serves the screen beside it.
  if (display.kind === 'vnc-socket') {
    warnings.add(
      'display',
      `VNC is served on ${VNC_SOCKET} in the task directory on the Nomad client (beside the driver's qm.sock): reach it on that node; qvm vnc and qvm screenshot do not reach it`,
    );
    return ['-vnc', `unix:${VNC_SOCKET}`];
  }
  const vnc = `${display.address}:${display.port - VNC_BASE_PORT}`;
  warnings.add(
    'display',
    `VNC on ${display.address}:${display.port} of the Nomad client through args (-vnc ${vnc}); the port is reserved on the node's network for scheduling; qvm vnc and qvm screenshot do not reach it`,
  );
  return ['-vnc', vnc];
}

function cdromArgs(files: FetchedFile[], warnings: Warnings): string[] {
  const iso = files.find((f) => f.field === 'cdrom');
  if (!iso) return [];
  warnings.add(
    'cdrom',
    'the driver has no CD-ROM attribute: the ISO is an artifact attached through args (-drive ...,media=cdrom and -boot order=cd), as qvm attaches it',
  );
  return [
    '-drive',
    `file=${optionValue(`local/${iso.name}`)},format=raw,media=cdrom,readonly=on,if=ide,id=cdrom0`,
    '-boot',
    'order=cd',
  ];
}

function kernelArgs(spec: VmSpec, files: FetchedFile[], warnings: Warnings): string[] {
  const at = (field: string) => `local/${files.find((f) => f.field === field)!.name}`;
  if (spec.kernel)
    warnings.add(
      'kernel',
      'the driver has no direct kernel boot: the kernel (and initrd) are artifacts passed through args (-kernel, -initrd, -append), and image_path is still required',
    );
  return [
    ...(spec.kernel ? ['-kernel', at('kernel')] : []),
    ...(spec.initrd ? ['-initrd', at('initrd')] : []),
    ...(spec.append !== undefined ? ['-append', spec.append] : []),
  ];
}

/** A group port per host port: static for the manifest's forwards, dynamic for `ssh:` without a port. */
interface PortLabel {
  label: string;
  value?: number;
}

function portLabel(f: ExportForward): string {
  return f.field === 'ssh' ? 'ssh' : `fwd_${f.proto}_${f.hostPort}`;
}

/**
 * Nomad reserves ports by number only: a tcp and a udp forward on one port share one reservation. A VNC port
 * is reserved too, so that two VMs that serve VNC on one port are not placed on one node.
 */
function portsOf(forwards: ExportForward[], spec: VmSpec): PortLabel[] {
  const ports: PortLabel[] = [];
  for (const f of forwards) {
    if (f.hostPort === undefined) ports.push({ label: portLabel(f) });
    else if (!ports.some((p) => p.value === f.hostPort))
      ports.push({ label: portLabel(f), value: f.hostPort });
  }
  const vnc = spec.display?.kind === 'vnc-tcp' ? spec.display.port : undefined;
  if (vnc !== undefined && !ports.some((p) => p.value === vnc)) ports.push({ label: 'vnc', value: vnc });
  return ports;
}

function labelFor(f: ExportForward, ports: PortLabel[]): string {
  return f.hostPort === undefined ? portLabel(f) : ports.find((p) => p.value === f.hostPort)!.label;
}

function networkOf(ports: PortLabel[]): Record<string, unknown> {
  const reserved = ports
    .filter((p) => p.value !== undefined)
    .map((p) => ({ Label: p.label, Value: p.value }));
  const dynamic = ports.filter((p) => p.value === undefined).map((p) => ({ Label: p.label }));
  return {
    ...(reserved.length ? { ReservedPorts: reserved } : {}),
    ...(dynamic.length ? { DynamicPorts: dynamic } : {}),
  };
}

/** qvm's user network: each forward bound to its own address, the host port from Nomad's reservation. */
function networkArgs(spec: VmSpec, forwards: ExportForward[], ports: PortLabel[]): string[] {
  const rules = forwards.map(
    (f) =>
      `hostfwd=${f.proto}:${f.hostAddress}:\${NOMAD_HOST_PORT_${labelFor(f, ports)}}-${f.guestAddress}:${f.guestPort}`,
  );
  return [
    '-netdev',
    ['user', `id=${NETDEV_ID}`, ...rules].join(','),
    '-device',
    `${spec.nic},netdev=${NETDEV_ID}`,
  ];
}

function accelerator(spec: VmSpec, warnings: Warnings): string {
  if (spec.accel !== 'auto') return spec.accel;
  warnings.add(
    'accel',
    'auto becomes accelerator "kvm:tcg": QEMU falls back to TCG when KVM fails to initialise, but not when /dev/kvm opens and hangs guests (the case qvm probes for); write accel: kvm or tcg to choose',
  );
  return 'kvm:tcg';
}

function memory(spec: VmSpec, warnings: Warnings): number {
  const memoryMB = spec.memoryMiB + qemuOverheadMiB(spec.memoryMiB);
  warnings.add(
    'memory',
    `Nomad limits the whole QEMU process to Resources.MemoryMB (hashicorp/nomad#27392): the job reserves ${memoryMB} MB (guest ${formatMemory(spec.memoryMiB)} + ${qemuOverheadMiB(spec.memoryMiB)} MB for QEMU) and gives the guest -m ${spec.memoryMiB} in args`,
  );
  if (memoryMB > MEMORY_MB_MAX)
    warnings.add(
      'memory',
      `MemoryMB ${memoryMB} is above the qemu driver's limit of ${MEMORY_MB_MAX}: the task will not start`,
    );
  if (memoryMB < MEMORY_MB_MIN)
    warnings.add('memory', `MemoryMB is below the driver's minimum of ${MEMORY_MB_MIN}`);
  return memoryMB;
}

function cpus(spec: VmSpec, warnings: Warnings): void {
  warnings.add(
    'cpus',
    `-smp ${spec.cpus} in args (the driver adds -smp only with kvm and reserved cores); Nomad schedules the task by Resources.CPU = ${CPU_MHZ_PER_VCPU * spec.cpus} MHz, a CPU share, not ${spec.cpus === 1 ? 'a reserved core' : `${spec.cpus} reserved cores`}`,
  );
}

function killTimeout(spec: VmSpec, warnings: Warnings): void {
  if (spec.stopTimeoutMs > DEFAULT_MAX_KILL_TIMEOUT_MS)
    warnings.add(
      'stopTimeout',
      `KillTimeout ${formatDuration(spec.stopTimeoutMs)} is capped by the client's max_kill_timeout (30s unless the client sets it higher): QEMU may be killed before the guest has shut down`,
    );
}

function forwardWarnings(forwards: ExportForward[], warnings: Warnings): void {
  for (const f of forwards) {
    const rule = describeExportForward(f);
    if (f.field === 'ssh' && f.hostPort === undefined) {
      warnings.add(
        'ssh',
        `the ssh forward (${rule}) gets a dynamic port on the Nomad client, bound to 127.0.0.1 there: nomad alloc status shows it; qvm ssh does not reach it`,
      );
    } else if (isLoopback(f.hostAddress)) {
      warnings.add(
        f.field,
        `${rule} is bound to ${f.hostAddress} on the Nomad client through args (the driver's port_map would bind every interface, tcp and udp); the port is reserved on the node's network for scheduling`,
      );
    }
  }
}

function stateWarnings(spec: VmSpec, warnings: Warnings): void {
  if (spec.state === 'stopped')
    warnings.add(
      'state',
      'stopped becomes Count 0: Nomad stops the allocation, and a later Count 1 starts a new one from fresh artifacts, not the stopped VM',
    );
  if (spec.state === 'saved')
    warnings.add(
      'state',
      'saved has no equivalent (no savevm, no resume): the job has Count 0, and a later Count 1 boots the guest cold from fresh artifacts',
    );
  if (spec.snapshot !== undefined)
    warnings.add(
      'snapshot',
      `not exported: the qcow2 comes fresh from the artifact, so there is no snapshot ${spec.snapshot} to -loadvm; the guest boots cold`,
    );
}

/** Flags the job passes in args, so an operator can compare them with a client's args_allowlist. */
function argsWarnings(spec: VmSpec, args: string[], warnings: Warnings): void {
  const flags = [...new Set(args.filter((a) => /^-[A-Za-z]/.test(a)))];
  warnings.add(
    'args',
    `the job passes ${flags.join(' ')} in Config.args: a client with args_allowlist must list each of them`,
  );
  for (const [field, values] of [
    ['append', spec.append === undefined ? [] : [spec.append]],
    ['args', spec.args],
  ] as const) {
    if (values.some((v) => v.includes('${')))
      warnings.add(
        field,
        // biome-ignore lint/suspicious/noTemplateCurlyInString: Nomad's interpolation syntax, quoted for the user
        'contains ${...}: Nomad interpolates ${...} in the task config, so the text QEMU gets may differ',
      );
  }
}

/** A service with the readiness check, and the deployment's healthy deadline from ready.timeout. */
function readiness(
  spec: VmSpec,
  forwards: ExportForward[],
  ports: PortLabel[],
  warnings: Warnings,
): { service: Record<string, unknown>; update: Record<string, unknown> } | undefined {
  const ready = spec.ready;
  if (!ready) return undefined;
  if (ready.kind === 'agent') {
    warnings.add('ready.agent', 'has no Nomad check equivalent: the job is healthy once the task runs');
    return undefined;
  }
  const forward =
    ready.kind === 'ssh'
      ? forwards.find((f) => f.field === 'ssh')
      : forwards.find((f) => f.proto === 'tcp' && f.hostPort === ready.port);
  if (!forward) return undefined;
  const label = labelFor(forward, ports);
  const intervalMs = Math.min(10_000, Math.max(1_000, Math.floor(ready.timeoutMs / 6)));
  const check =
    ready.kind === 'http'
      ? {
          Name: 'ready',
          Type: 'http',
          Path: ready.path,
          Interval: intervalMs * NS_PER_MS,
          Timeout: 2_000 * NS_PER_MS,
        }
      : { Name: 'ready', Type: 'tcp', Interval: intervalMs * NS_PER_MS, Timeout: 2_000 * NS_PER_MS };
  if (ready.kind === 'http')
    warnings.add(
      'ready.http',
      `a Nomad http check passes on any 2xx answer${ready.status < 200 || ready.status > 299 ? `, so status ${ready.status} cannot be expressed` : ''} (qvm waits for ${ready.status})`,
    );
  if (ready.kind === 'ssh')
    warnings.add('ready.ssh', 'becomes a tcp check of the ssh port: Nomad cannot log in as qvm does');
  if (ready.kind === 'tcp')
    warnings.add('ready.tcp', "becomes a Nomad tcp check: it gates the deployment's health, not a qvm apply");
  warnings.add(
    'ready.timeout',
    `becomes the deployment's HealthyDeadline (${formatDuration(ready.timeoutMs)}), with the check every ${formatDuration(intervalMs)}`,
  );
  const service = {
    Name: `${spec.name}-ready`,
    Provider: 'nomad',
    PortLabel: label,
    // The check dials the node's address unless told otherwise, and nothing listens there for a loopback forward.
    ...(isLoopback(forward.hostAddress) ? { Address: forward.hostAddress } : {}),
    Checks: [check],
  };
  const deadlineNs = ready.timeoutMs * NS_PER_MS;
  const update = {
    HealthCheck: 'checks',
    MinHealthyTime: 0,
    HealthyDeadline: deadlineNs,
    ...(ready.timeoutMs >= 600_000 ? { ProgressDeadline: deadlineNs + 60_000 * NS_PER_MS } : {}),
  };
  return { service, update };
}

function restartPolicy(spec: VmSpec, warnings: Warnings): Record<string, unknown> {
  switch (spec.restart) {
    case 'always':
      warnings.add(
        'restart',
        'always: Nomad restarts QEMU 5s after it exits, 10 times in 30 minutes, then waits out the interval (qvm backs off from 1s doubling up to 5 min)',
      );
      return { RestartPolicy: RESTART_DELAY };
    case 'on-failure':
      warnings.add(
        'restart',
        'on-failure is approximated: a service job also restarts QEMU after the guest powers itself off (qvm leaves it down), 5s after it exits, 10 times in 30 minutes (qvm backs off from 1s doubling up to 5 min)',
      );
      return { RestartPolicy: RESTART_DELAY };
    case 'never':
      warnings.add(
        'restart',
        'never: no restart and no rescheduling; Nomad marks the allocation failed when QEMU exits, also after the guest powers off, and only a new job version starts it again',
      );
      return {
        RestartPolicy: { Attempts: 0, Mode: 'fail' },
        ReschedulePolicy: { Attempts: 0, Unlimited: false },
      };
  }
}

function updateWarnings(forwards: ExportForward[], warnings: Warnings): void {
  warnings.add(
    'updates',
    `any later change to this job${forwards.length ? ', forwards included (qvm changes those live),' : ''} is a destructive update: Nomad stops the VM gracefully and starts a new allocation, perhaps on another node (nomad job plan says "forces create/destroy update")`,
  );
}

function artifact(file: FetchedFile): Record<string, unknown> {
  const options: Record<string, string> = {};
  if (unpackedByGoGetter(file.name)) options.archive = 'false';
  if (file.checksum) options.checksum = file.checksum;
  return {
    GetterSource: file.source,
    ...(Object.keys(options).length ? { GetterOptions: sorted(options) } : {}),
    GetterMode: 'file',
    RelativeDest: `local/${file.name}`,
  };
}

/** Delimiters that do not occur in TEXT, so Nomad's template engine writes it as it is. */
function delimiters(text: string): Record<string, string> {
  if (!text.includes('{{') && !text.includes('}}')) return {};
  for (let n = 0; ; n++) {
    const left = `[[qvm${n || ''}:`;
    const right = `:qvm${n || ''}]]`;
    if (!text.includes(left) && !text.includes(right)) return { LeftDelim: left, RightDelim: right };
  }
}

function template(destPath: string, text: string): Record<string, unknown> {
  return { EmbeddedTmpl: text, DestPath: destPath, ...delimiters(text) };
}

/** The seed's files (Nomad has no cloud-init: the job writes them, QEMU's vvfat serves them) and the placeholder. */
function templates(seed: ExportSeed | undefined, placeholder: boolean): Record<string, unknown>[] {
  return [
    ...(placeholder
      ? [
          template(
            PLACEHOLDER,
            'qvm export: the qemu driver requires image_path; this file is attached with if=none, so the guest never sees it\n',
          ),
        ]
      : []),
    ...(seed
      ? [
          template(`${SEED_DIR}/meta-data`, seed.metaData),
          template(`${SEED_DIR}/user-data`, seed.userData),
          ...(seed.networkConfig !== undefined
            ? [template(`${SEED_DIR}/network-config`, seed.networkConfig)]
            : []),
        ]
      : []),
  ];
}
