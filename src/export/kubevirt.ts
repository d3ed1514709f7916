/**
 * A VM as KubeVirt documents (KubeVirt v1.9.0, Kubernetes core/v1): a `VirtualMachine`, and a `Service` per kind
 * of forward address. Disks, data disks included, are DataVolumes (persistent, as qvm's disks are), files that
 * KubeVirt can only take from a container image (kernel boot, ISOs) are named in --registry, shared folders
 * are virtiofs filesystems on PersistentVolumeClaims, and the cloud-init seed is a `cloudInitNoCloud` volume.
 * KubeVirt attaches the guest agent's channel and a VNC server (reached through its API) to every VM by
 * itself. See MAPPING.md in the scale-out notes for each row and its source.
 */
import type { DataDiskSpec, MountSpec, VmSpec } from '../manifest/types.js';
import { isLoopback } from '../model/forward.js';
import { formatDuration } from '../model/units.js';
import {
  baseName,
  ceilSeconds,
  dataDiskField,
  describeExportForward,
  type ExportForward,
  exportForwards,
  exportSeed,
  type FetchedFile,
  shownPath,
  sorted,
  vmFiles,
  Warnings,
} from './common.js';
import type { ExportOptions, ExportWarning } from './types.js';

/** NIC models KubeVirt's admission webhook accepts (pkg/network/admitter/netiface.go validInterfaceModels). */
const INTERFACE_MODELS = new Set(['e1000', 'e1000e', 'igb', 'ne2k_pci', 'pcnet', 'rtl8139', 'virtio']);
/** QEMU's names for virtio-net, which KubeVirt calls virtio. */
const VIRTIO_NET = new Set(['virtio-net-pci', 'virtio-net', 'virtio']);
/** Where a registry image's files are expected when --registry is not given: an image loaded into the nodes. */
const LOCAL_REGISTRY = 'localhost/qvm';
const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'qvm' };
const VM_LABEL = 'qvm/vm';

export interface KubevirtExport {
  documents: Record<string, unknown>[];
  warnings: ExportWarning[];
}

/** A Kubernetes quantity in binary units: 64M -> 64Mi, 2G -> 2Gi, else bytes. */
export function quantity(bytes: number): string {
  for (const [unit, shift] of [
    ['Ti', 40],
    ['Gi', 30],
    ['Mi', 20],
    ['Ki', 10],
  ] as const) {
    const scale = 2 ** shift;
    if (bytes >= scale && bytes % scale === 0) return `${bytes / scale}${unit}`;
  }
  return String(bytes);
}

/**
 * The object name for a VM: qvm allows a trailing `-` (`web-`), a DNS-1123 label does not. `taken` holds the
 * names of the other VMs exported with it, so a renamed VM never collides with one of them.
 */
export function kubernetesName(vm: string, taken: ReadonlySet<string>): string {
  if (!vm.endsWith('-')) return vm;
  const stem = vm.replace(/-+$/, '');
  if (!taken.has(stem)) return stem;
  for (let n = 2; ; n++) if (!taken.has(`${stem}-${n}`)) return `${stem}-${n}`;
}

/** The VirtualMachine (and Services) for one VM, named NAME in the cluster. */
export function kubevirtDocuments(spec: VmSpec, options: ExportOptions, name: string): KubevirtExport {
  const warnings = new Warnings(spec.name);
  if (name !== spec.name)
    warnings.add(
      'name',
      `"${spec.name}" is not a DNS-1123 label (it ends with "-"): the VirtualMachine is named ${name}`,
    );
  const registry = registryOf(spec, options, warnings);
  const files = vmFiles(spec, options);
  const storage = diskStorage(spec, name, osDiskFile(spec, files), options, warnings);
  const data = dataDisks(spec, name, files, options, warnings);
  const cdrom = cdromVolume(spec, name, registry, options, warnings);
  const shares = filesystems(spec, name, options, warnings);
  const seed = exportSeed(
    spec,
    options,
    warnings,
    spec.mounts.length ? { mounts: spec.mounts, type: 'virtiofs' } : undefined,
  );
  mountWarnings(spec, seed !== undefined, warnings);
  const forwards = exportForwards(spec);
  const disks = [
    ...(storage ? [{ name: 'disk', ...(cdrom ? { bootOrder: 1 } : {}), disk: { bus: 'virtio' } }] : []),
    ...(cdrom ? [{ name: 'cdrom', ...(storage ? { bootOrder: 2 } : {}), cdrom: { bus: 'sata' } }] : []),
    ...data.map((d) => d.disk),
    ...(seed ? [{ name: 'cloudinit', disk: { bus: 'virtio' } }] : []),
  ];
  const volumes = [
    ...(storage ? [{ name: 'disk', dataVolume: { name: `${name}-disk` } }] : []),
    ...(cdrom ? [{ name: 'cdrom', containerDisk: cdrom }] : []),
    ...data.map((d) => d.volume),
    ...shares.map((f) => f.volume),
    ...(seed
      ? [
          {
            name: 'cloudinit',
            cloudInitNoCloud: {
              userData: seed.userData,
              ...(seed.networkConfig !== undefined ? { networkData: seed.networkConfig } : {}),
            },
          },
        ]
      : []),
  ];
  const firmware = kernelBoot(spec, name, registry, options, warnings);
  const domain = {
    cpu: { cores: spec.cpus },
    memory: { guest: quantity(spec.memoryMiB * 2 ** 20) },
    ...(firmware ? { firmware } : {}),
    devices: {
      ...(disks.length ? { disks } : {}),
      ...(shares.length ? { filesystems: shares.map((f) => f.filesystem) } : {}),
      interfaces: [networkInterface(spec, forwards, options, warnings)],
      ...display(spec, name, warnings),
    },
  };
  accel(spec, warnings);
  const readinessProbe = readiness(spec, forwards, warnings);
  const dataVolumeTemplates = [
    ...(storage ? [{ metadata: { name: `${name}-disk` }, spec: storage }] : []),
    ...data.map((d) => d.template),
  ];
  const vmSpec = {
    runStrategy: runStrategy(spec, warnings),
    ...(dataVolumeTemplates.length ? { dataVolumeTemplates } : {}),
    template: {
      metadata: { labels: { [VM_LABEL]: name } },
      spec: {
        terminationGracePeriodSeconds: gracePeriod(spec, warnings),
        domain,
        networks: [{ name: 'default', pod: {} }],
        ...(volumes.length ? { volumes } : {}),
        ...(readinessProbe ? { readinessProbe } : {}),
      },
    },
  };
  if (spec.args.length)
    warnings.add(
      'args',
      `dropped (${spec.args.join(' ')}): KubeVirt passes nothing to QEMU; only a hook sidecar (Sidecar feature gate) can edit the domain XML`,
    );
  if (spec.snapshot !== undefined)
    warnings.add(
      'snapshot',
      `not exported: a VirtualMachineSnapshot is disk-only and restored with the VM stopped, so there is no RAM state ${spec.snapshot} to resume; the guest boots cold`,
    );
  warnings.add(
    'updates',
    `a later change to this VirtualMachine is not applied by restarting it, as qvm apply does: CPU sockets, memory and hotpluggable volumes go live, anything else sets RestartRequired and waits for virtctl restart${forwards.length ? " (forwards: a Service's ports change live, the interface's ports do not)" : ''}`,
  );
  const vm = {
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachine',
    metadata: {
      name,
      labels: sorted({ ...MANAGED_BY, [VM_LABEL]: name }),
      annotations: { 'qvm/source': spec.source },
    },
    spec: vmSpec,
  };
  return { documents: [vm, ...services(name, forwards, warnings)], warnings: warnings.list };
}

function registryOf(spec: VmSpec, options: ExportOptions, warnings: Warnings): string {
  if (options.registry) return options.registry.replace(/\/+$/, '');
  if (spec.kernel || spec.cdrom)
    warnings.add(
      spec.kernel ? 'kernel' : 'cdrom',
      `no --registry: the container image is named under ${LOCAL_REGISTRY}, an image loaded into the nodes by hand; pass --registry REGISTRY to pull it from a registry`,
    );
  return LOCAL_REGISTRY;
}

/** Where an imported disk's content comes from: http with --artifact-base or a URL, else an upload. */
function importSource(
  file: FetchedFile,
  dataVolume: string,
  options: ExportOptions,
  warnings: Warnings,
): Record<string, unknown> {
  if (file.localPath === undefined || file.source !== file.localPath) return { http: { url: file.source } };
  const shown = shownPath(file.localPath, options);
  warnings.add(
    file.field,
    `${shown} is a file on this machine and no --artifact-base was given: the DataVolume waits for an upload (from the manifest's folder: virtctl image-upload dv ${dataVolume} --no-create --image-path=${shown})`,
  );
  return { upload: {} };
}

/**
 * The file the VM's disk is imported from: its image, its backing image, or the disk file itself; undefined
 * for no disk, or a blank disk (one qvm would create).
 */
function osDiskFile(spec: VmSpec, files: FetchedFile[]): FetchedFile | undefined {
  if (spec.image) return files.find((f) => f.field === 'image');
  const disk = spec.disk;
  if (!disk || (disk.sizeBytes !== undefined && !disk.backing)) return undefined;
  const file = files.find((f) => f.field === 'disk')!;
  return disk.backing ? { ...file, field: 'disk.backing' } : file;
}

/** The DataVolume spec of the VM's disk, from FILE (see osDiskFile): blank when qvm would create it, else imported. */
function diskStorage(
  spec: VmSpec,
  name: string,
  file: FetchedFile | undefined,
  options: ExportOptions,
  warnings: Warnings,
): Record<string, unknown> | undefined {
  const disk = spec.disk;
  const image = spec.image ? file : undefined;
  if (!disk && !image) return undefined;
  const dataVolume = `${name}-disk`;
  const size = disk?.sizeBytes;
  let source: Record<string, unknown>;
  if (image) {
    source = importSource(image, dataVolume, options, warnings);
    if (image.checksum)
      warnings.add(
        'image',
        `CDI's http source has no checksum field: the cluster imports ${image.source} without checking ${image.checksum.split(':')[0]} (qvm refuses an image that does not match)`,
      );
    warnings.add(
      'image',
      'the DataVolume is a full copy of the image, not a qcow2 overlay of a shared cached image',
    );
  } else if (disk?.backing) {
    source = importSource(file!, dataVolume, options, warnings);
    warnings.add(
      'disk.backing',
      'the DataVolume is a full copy of the backing image, not an overlay sharing it (clone a golden PVC with source.pvc to share storage)',
    );
  } else if (size !== undefined) {
    source = { blank: {} };
  } else {
    source = importSource(file!, dataVolume, options, warnings);
  }
  if (size === undefined && !('blank' in source))
    warnings.add(
      'disk.size',
      "not given: CDI needs storage.resources.requests.storage of at least the image's virtual size (qemu-img info); add disk.size to the manifest",
    );
  return {
    source,
    storage: size !== undefined ? { resources: { requests: { storage: quantity(size) } } } : {},
  };
}

/** A data disk as KubeVirt attaches it: its DataVolume template, the volume and the disk with its serial. */
interface DataDisk {
  template: Record<string, unknown>;
  volume: Record<string, unknown>;
  disk: Record<string, unknown>;
}

/**
 * The data disks' volume names, from their serials, so that reordering `disks:` renames no DataVolume (a new
 * name would be a new, blank volume and the old one deleted with the VM's template): `data-SERIAL` in the
 * lower case a DNS label needs, with the index added where two serials differ only in case.
 */
export function dataVolumeNames(disks: DataDiskSpec[]): string[] {
  const taken = new Set<string>();
  return disks.map((d) => {
    const slug = d.serial
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '');
    const stem = `data-${slug || d.index}`;
    let volume = stem;
    for (let n = d.index; taken.has(volume); n++) volume = `${stem}-${n}`;
    taken.add(volume);
    return volume;
  });
}

/**
 * The data disks, after the OS disk and the CD-ROM, with their serials: blank DataVolumes of their size
 * (created when missing, never overwritten, as qvm does), or without a size imported from their file.
 */
function dataDisks(
  spec: VmSpec,
  name: string,
  files: FetchedFile[],
  options: ExportOptions,
  warnings: Warnings,
): DataDisk[] {
  const volumes = dataVolumeNames(spec.dataDisks);
  return spec.dataDisks.map((d, i) => {
    const field = dataDiskField(d);
    const volume = volumes[i]!;
    const dataVolume = `${name}-${volume}`;
    const source =
      d.sizeBytes === undefined
        ? importSource(files.find((f) => f.field === field)!, dataVolume, options, warnings)
        : { blank: {} };
    if (d.sizeBytes === undefined)
      warnings.add(
        `${field}.size`,
        `not given: CDI needs storage.resources.requests.storage of at least the image's virtual size (qemu-img info); add a size to ${field} in the manifest`,
      );
    warnings.add(
      field,
      `the DataVolume ${dataVolume} is in the VirtualMachine's dataVolumeTemplates, so deleting the VirtualMachine deletes the disk (qvm keeps a data disk unless destroy --delete-data-disks; kubectl delete --cascade=orphan keeps it)`,
    );
    return {
      template: {
        metadata: { name: dataVolume },
        spec: {
          source,
          storage:
            d.sizeBytes !== undefined ? { resources: { requests: { storage: quantity(d.sizeBytes) } } } : {},
        },
      },
      volume: { name: volume, dataVolume: { name: dataVolume } },
      disk: { name: volume, disk: { bus: 'virtio' }, serial: d.serial },
    };
  });
}

/** A shared folder as KubeVirt attaches it: a virtiofs filesystem named by qvm's tag, on a claim. */
interface Filesystem {
  filesystem: Record<string, unknown>;
  volume: Record<string, unknown>;
}

/** The PersistentVolumeClaim that holds a shared folder's files in the cluster. */
function claimOf(name: string, m: MountSpec): string {
  return `${name}-${m.tag}`;
}

/**
 * Each `mounts:` entry as a virtiofs filesystem (its name is the tag the guest mounts, qvm's qvm0, qvm1, ...)
 * on a PersistentVolumeClaim, read-only unless writable. No KubeVirt volume shares a folder of this machine.
 */
function filesystems(spec: VmSpec, name: string, options: ExportOptions, warnings: Warnings): Filesystem[] {
  return spec.mounts.map((m) => {
    const claim = claimOf(name, m);
    warnings.add(
      `mounts[${m.index}]`,
      `becomes the virtiofs filesystem ${m.tag} on the PersistentVolumeClaim ${claim}${m.writable ? '' : ' (read-only)'}, which must exist and hold what ${shownPath(m.host, options)} holds: KubeVirt cannot share a folder of this machine, and nothing copies it there or back`,
    );
    return {
      filesystem: { name: m.tag, virtiofs: {} },
      volume: { name: m.tag, persistentVolumeClaim: { claimName: claim, readOnly: !m.writable } },
    };
  });
}

/** What every virtiofs share needs from the cluster and from the guest. */
function mountWarnings(spec: VmSpec, seeded: boolean, warnings: Warnings): void {
  if (!spec.mounts.length) return;
  warnings.add(
    'mounts',
    `virtiofs on a PersistentVolumeClaim needs the EnableVirtioFsStorageVolumes feature gate (Alpha in KubeVirt v1.9.0) in the KubeVirt CR, else the VM is refused; the guest mounts virtiofs (Linux 5.4 or later), not 9p${seeded ? ', as its seed says' : `: mount -t virtiofs ${spec.mounts[0]!.tag} DIR`}`,
  );
}

/**
 * KubeVirt gives every VM a VNC server on a private socket, reached through its API (virtctl vnc), as qvm's
 * `display: vnc` socket is reached through qvm vnc; autoattachGraphicsDevice says the VM wants it. An address
 * and port have no equivalent.
 */
function display(spec: VmSpec, name: string, warnings: Warnings): Record<string, unknown> {
  const d = spec.display;
  if (!d) return {};
  if (d.kind === 'vnc-tcp')
    warnings.add(
      'display',
      `VNC on ${d.address}:${d.port} has no equivalent: KubeVirt serves the screen only through the Kubernetes API; virtctl vnc --proxy-only --address ${d.address} --port ${d.port} ${name} serves it there on the machine that runs virtctl`,
    );
  return { autoattachGraphicsDevice: true };
}

/** The ISO as a containerDisk: read-only, so an ephemeral container image loses nothing. */
function cdromVolume(
  spec: VmSpec,
  name: string,
  registry: string,
  options: ExportOptions,
  warnings: Warnings,
): Record<string, unknown> | undefined {
  if (!spec.cdrom) return undefined;
  const iso = baseName(spec.cdrom);
  const image = `${registry}/${name}-cdrom:latest`;
  warnings.add(
    'cdrom',
    `${shownPath(spec.cdrom, options)} is a file on this machine: bake it into a containerDisk image (FROM scratch, ADD --chown=107:107 ${iso} /disk/) and push it as ${image}`,
  );
  return { image, path: `/disk/${iso}` };
}

function kernelBoot(
  spec: VmSpec,
  name: string,
  registry: string,
  options: ExportOptions,
  warnings: Warnings,
): Record<string, unknown> | undefined {
  if (!spec.kernel) return undefined;
  const kernel = baseName(spec.kernel);
  let initrd = spec.initrd ? baseName(spec.initrd) : undefined;
  if (initrd === kernel) initrd = `initrd-${initrd}`;
  const image = `${registry}/${name}-boot:latest`;
  warnings.add(
    'kernel',
    `${[spec.kernel, spec.initrd]
      .filter((f): f is string => f !== undefined)
      .map((f) => shownPath(f, options))
      .join(
        ' and ',
      )} ${spec.initrd ? 'are files' : 'is a file'} on this machine: bake ${spec.initrd ? 'them' : 'it'} into a container image (FROM scratch, ADD --chown=107:107 ${[kernel, initrd].filter(Boolean).join(' ')} /boot/) and push it as ${image}`,
  );
  return {
    kernelBoot: {
      container: {
        image,
        kernelPath: `/boot/${kernel}`,
        ...(initrd ? { initrdPath: `/boot/${initrd}` } : {}),
        imagePullPolicy: 'IfNotPresent',
      },
      ...(spec.append !== undefined ? { kernelArgs: spec.append } : {}),
    },
  };
}

function interfaceModel(spec: VmSpec, warnings: Warnings): string {
  if (VIRTIO_NET.has(spec.nic)) return 'virtio';
  if (INTERFACE_MODELS.has(spec.nic)) return spec.nic;
  warnings.add('nic', `${spec.nic} is not a KubeVirt interface model: the interface is virtio`);
  return 'virtio';
}

function portName(f: ExportForward): string {
  return f.field === 'ssh' ? 'ssh' : `fwd-${f.proto}-${f.hostPort}`;
}

/** The pod-network interface: qvm's NIC model, the binding, and the guest ports it forwards. */
function networkInterface(
  spec: VmSpec,
  forwards: ExportForward[],
  options: ExportOptions,
  warnings: Warnings,
): Record<string, unknown> {
  const model = interfaceModel(spec, warnings);
  const slirp = options.network === 'slirp';
  if (slirp)
    warnings.add(
      'nic',
      "the slirp network binding plugin gives the guest qvm's user network (10.0.2.15, gateway 10.0.2.2); an admin must register it in the KubeVirt CR (spec.configuration.network.binding.slirp.sidecarImage)",
    );
  else
    warnings.add(
      'nic',
      "masquerade gives the guest 10.0.2.2/24 with gateway 10.0.2.1 by DHCP, not qvm's 10.0.2.15 and 10.0.2.2: a guest with static addresses needs --network slirp",
    );
  const ports: Record<string, unknown>[] = [];
  for (const f of forwards) {
    if (ports.some((p) => p.port === f.guestPort && p.protocol === f.proto.toUpperCase())) continue;
    ports.push({ name: portName(f), port: f.guestPort, protocol: f.proto.toUpperCase() });
    if (f.guestAddress !== '')
      warnings.add(
        f.field,
        `guest address ${f.guestAddress} has no equivalent: KubeVirt forwards to the VM's own address`,
      );
  }
  if (ports.length === 0 && !slirp)
    warnings.add(
      'forwards',
      "none: with masquerade and no ports listed, every guest port is reachable at the pod's address from inside the cluster (qvm exposes nothing)",
    );
  return {
    name: 'default',
    model,
    ...(slirp ? { binding: { name: 'slirp' } } : { masquerade: {} }),
    ...(ports.length ? { ports } : {}),
  };
}

/** Which Service a forward belongs to: loopback ones in ClusterIP, every-interface ones in a LoadBalancer. */
function serviceGroup(f: ExportForward): string {
  if (isLoopback(f.hostAddress)) return 'cluster';
  if (f.hostAddress === '0.0.0.0') return 'lb';
  return `ip:${f.hostAddress}`;
}

function services(name: string, forwards: ExportForward[], warnings: Warnings): Record<string, unknown>[] {
  const groups = new Map<string, ExportForward[]>();
  for (const f of forwards) groups.set(serviceGroup(f), [...(groups.get(serviceGroup(f)) ?? []), f]);
  const order = [...groups.keys()].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
  return order.map((group) => {
    const members = groups.get(group)!;
    const address = group.startsWith('ip:') ? group.slice(3) : undefined;
    const serviceName =
      group === 'cluster'
        ? name
        : group === 'lb'
          ? `${name}-lb`
          : `${name}-ip-${address!.replace(/\./g, '-')}`;
    const ports: Record<string, unknown>[] = [];
    for (const f of members) {
      const port = f.hostPort ?? f.guestPort;
      const protocol = f.proto.toUpperCase();
      if (ports.some((p) => p.port === port && p.protocol === protocol)) {
        warnings.add(
          f.field,
          `${describeExportForward(f)} shares port ${port} with another forward of the Service ${serviceName}: left out`,
        );
        continue;
      }
      ports.push({ name: portName(f), protocol, port, targetPort: f.guestPort });
      warnings.add(f.field, forwardMessage(f, serviceName, name, group));
    }
    const why =
      group === 'cluster'
        ? 'qvm binds loopback only; ClusterIP is cluster-internal'
        : group === 'lb'
          ? 'qvm binds every interface; a LoadBalancer exposes it outside the cluster'
          : `qvm binds ${address}; the nodes accept it as an external IP`;
    return {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: {
        name: serviceName,
        labels: sorted({ ...MANAGED_BY, [VM_LABEL]: name }),
        annotations: {
          'qvm/forward': `${members.map((f) => describeExportForward(f).replace(' -> ', ' -> guest ')).join('; ')} (${why})`,
        },
      },
      spec: {
        type: group === 'lb' ? 'LoadBalancer' : 'ClusterIP',
        selector: { [VM_LABEL]: name },
        ports,
        ...(address ? { externalIPs: [address] } : {}),
      },
    };
  });
}

/** Services in a stable order: the loopback one (named as the VM), the LoadBalancer, then by address. */
function rank(group: string): number {
  return group === 'cluster' ? 0 : group === 'lb' ? 1 : 2;
}

function forwardMessage(f: ExportForward, service: string, vm: string, group: string): string {
  const rule = describeExportForward(f);
  if (group === 'cluster')
    return `${rule} is loopback-only in qvm; the ClusterIP Service ${service} is reachable from the whole cluster (the closest loopback-only equivalent is virtctl port-forward vm/${vm} ${f.hostPort ?? f.guestPort}:${f.guestPort} on your machine)`;
  if (group === 'lb')
    return `${rule} is on every interface in qvm: the LoadBalancer Service ${service} keeps port ${f.hostPort}, and needs a load-balancer implementation in the cluster`;
  return `${rule} is bound to ${f.hostAddress} in qvm: the Service ${service} lists it in externalIPs, which works only where that address routes to the nodes`;
}

function accel(spec: VmSpec, warnings: Warnings): void {
  if (spec.accel === 'tcg')
    warnings.add(
      'accel',
      'tcg cannot be chosen per VM: the VM runs on KVM and needs a node with KVM unless the KubeVirt CR sets developerConfiguration.useEmulation (cluster-wide)',
    );
  if (spec.accel === 'auto')
    warnings.add(
      'accel',
      'auto becomes KVM: nodes without KVM are not used unless the KubeVirt CR sets developerConfiguration.useEmulation',
    );
}

function runStrategy(spec: VmSpec, warnings: Warnings): string {
  if (spec.state === 'saved')
    warnings.add(
      'state',
      'saved has no equivalent (virtctl pause keeps the VM in memory, a memory dump is not resumable): the VM is Halted and boots cold when started',
    );
  if (spec.state !== 'running') return 'Halted';
  if (spec.restart !== 'never')
    warnings.add(
      'restart',
      `${spec.restart}: KubeVirt starts the VM again with its own crash-loop back-off, not qvm's (1s doubling up to 5 min)`,
    );
  return { 'on-failure': 'RerunOnFailure', always: 'Always', never: 'Once' }[spec.restart];
}

function gracePeriod(spec: VmSpec, warnings: Warnings): number {
  const seconds = ceilSeconds(spec.stopTimeoutMs);
  if (seconds * 1000 !== spec.stopTimeoutMs)
    warnings.add(
      'stopTimeout',
      `${formatDuration(spec.stopTimeoutMs)} is rounded up to ${seconds}s: terminationGracePeriodSeconds is whole seconds`,
    );
  return seconds;
}

/** The readiness probe: the guest agent's ping, or a probe of the guest port the ready forward leads to. */
function readiness(
  spec: VmSpec,
  forwards: ExportForward[],
  warnings: Warnings,
): Record<string, unknown> | undefined {
  const ready = spec.ready;
  if (!ready) return undefined;
  const handler = probeHandler(ready, forwards, warnings);
  if (!handler) return undefined;
  const periodSeconds = Math.min(10, Math.max(1, Math.floor(ready.timeoutMs / 6000)));
  const failureThreshold = Math.max(1, Math.ceil(ready.timeoutMs / 1000 / periodSeconds));
  warnings.add(
    'ready.timeout',
    `${formatDuration(ready.timeoutMs)} has no equivalent: the probe runs every ${periodSeconds}s and the VM stays unready until it passes`,
  );
  return { ...handler, periodSeconds, timeoutSeconds: 2, failureThreshold };
}

/** What the probe does, and how that differs from qvm's check; undefined when no forward leads to the port. */
function probeHandler(
  ready: NonNullable<VmSpec['ready']>,
  forwards: ExportForward[],
  warnings: Warnings,
): Record<string, unknown> | undefined {
  if (ready.kind === 'agent') {
    warnings.add(
      'ready.agent',
      "becomes a readinessProbe guestAgentPing (KubeVirt pings the agent, as qvm does): it gates the Service's endpoints, not a deployment",
    );
    return { guestAgentPing: {} };
  }
  const forward =
    ready.kind === 'ssh'
      ? forwards.find((f) => f.field === 'ssh')
      : forwards.find((f) => f.proto === 'tcp' && f.hostPort === ready.port);
  if (!forward) return undefined;
  if (ready.kind === 'http') {
    warnings.add(
      'ready.http',
      `becomes a readinessProbe httpGet on guest port ${forward.guestPort}: it succeeds on any status from 200 to 399 (qvm waits for ${ready.status})`,
    );
    return { httpGet: { port: forward.guestPort, path: ready.path } };
  }
  warnings.add(
    ready.kind === 'ssh' ? 'ready.ssh' : 'ready.tcp',
    `becomes a readinessProbe tcpSocket on guest port ${forward.guestPort}${ready.kind === 'ssh' ? ' (KubeVirt cannot log in as qvm does)' : ''}: it gates the Service's endpoints, not a deployment`,
  );
  return { tcpSocket: { port: forward.guestPort } };
}
