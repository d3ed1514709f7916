/**
 * Each approximate (≈) or impossible (✗) row of the scale-out notes' MAPPING.md, and the rows for the fields
 * added since (image, ssh, files without a source, and the guest integration: agent, ready.agent, mounts,
 * disks, display): the warning appears, naming the VM, the field and what the engine does instead, and
 * `qvm export --strict` fails on it without writing anything.
 */
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { exportManifest } from '../../src/export/export.js';
import type { ExportTarget } from '../../src/export/types.js';
import { qvmInProcess } from '../helpers/cli-in-process.js';
import { manifestFrom } from '../helpers/scale-out.js';

/** [MAPPING.md row, engine, VM name, the VM's fields (YAML, under the VM), warning field, warning message] */
const ROWS: [string, ExportTarget, string, string, string, string][] = [
  [
    'VM name ≈',
    'kubevirt',
    'web-',
    'accel: kvm\n',
    'name',
    '"web-" is not a DNS-1123 label (it ends with "-"): the VirtualMachine is named web',
  ],
  [
    'memory ≈',
    'nomad',
    'web',
    'accel: kvm\n    restart: always\n',
    'memory',
    'Nomad limits the whole QEMU process to Resources.MemoryMB (hashicorp/nomad#27392): the job reserves 640 MB (guest 512M + 128 MB for QEMU) and gives the guest -m 512 in args',
  ],
  [
    'cpus ≈',
    'nomad',
    'web',
    'accel: kvm\n    restart: always\n',
    'cpus',
    '-smp 1 in args (the driver adds -smp only with kvm and reserved cores); Nomad schedules the task by Resources.CPU = 500 MHz, a CPU share, not a reserved core',
  ],
  [
    'disk path ≈ (artifact), never overwrites ✗',
    'nomad',
    'web',
    'disk: disks/web.qcow2\n',
    'disk',
    'the disk is an artifact, downloaded again into every new allocation: a job update or a reschedule starts from a fresh copy and loses what the guest wrote (qvm keeps its disk and never overwrites it)',
  ],
  [
    'disk.size ✗',
    'nomad',
    'web',
    'disk: {path: disks/web.qcow2, size: 8G}\n',
    'disk.size',
    'the qemu driver creates no disk: the job downloads web.qcow2; make it once (qemu-img create -f qcow2 web.qcow2 8G) and serve it',
  ],
  [
    'disk.backing ✗',
    'nomad',
    'web',
    'disk: {path: disks/web.qcow2, backing: images/base.qcow2}\n',
    'disk.backing',
    'the qemu driver makes no overlay: the backing image itself is downloaded into the allocation and is the disk the guest writes',
  ],
  [
    'disk.backing ≈',
    'kubevirt',
    'web',
    'disk: {path: disks/web.qcow2, backing: images/base.qcow2}\n',
    'disk.backing',
    'the DataVolume is a full copy of the backing image, not an overlay sharing it (clone a golden PVC with source.pvc to share storage)',
  ],
  [
    'cdrom ≈',
    'nomad',
    'web',
    'cdrom: iso/install.iso\n',
    'cdrom',
    'the driver has no CD-ROM attribute: the ISO is an artifact attached through args (-drive ...,media=cdrom and -boot order=cd), as qvm attaches it',
  ],
  [
    'kernel, initrd, append ≈',
    'nomad',
    'web',
    'kernel: boot/vmlinuz\n    initrd: boot/initrd.gz\n    append: console=ttyS0\n',
    'kernel',
    'the driver has no direct kernel boot: the kernel (and initrd) are artifacts passed through args (-kernel, -initrd, -append), and image_path is still required',
  ],
  [
    'kernel, initrd, append ≈',
    'kubevirt',
    'web',
    'kernel: boot/vmlinuz\n    initrd: boot/initrd.gz\n    append: console=ttyS0\n',
    'kernel',
    'boot/vmlinuz and boot/initrd.gz are files on this machine: bake them into a container image (FROM scratch, ADD --chown=107:107 vmlinuz initrd.gz /boot/) and push it as localhost/qvm/web-boot:latest',
  ],
  [
    'nic ≈',
    'kubevirt',
    'web',
    'nic: vmxnet3\n',
    'nic',
    'vmxnet3 is not a KubeVirt interface model: the interface is virtio',
  ],
  [
    'forwards ≈',
    'nomad',
    'web',
    'forwards: [{host: 8080, guest: 80}]\n',
    'forwards[0]',
    "tcp 127.0.0.1:8080 -> :80 is bound to 127.0.0.1 on the Nomad client through args (the driver's port_map would bind every interface, tcp and udp); the port is reserved on the node's network for scheduling",
  ],
  [
    'forwards[].address ✗ (loopback)',
    'kubevirt',
    'web',
    'forwards: [{host: 8080, guest: 80}]\n',
    'forwards[0]',
    'tcp 127.0.0.1:8080 -> :80 is loopback-only in qvm; the ClusterIP Service web is reachable from the whole cluster (the closest loopback-only equivalent is virtctl port-forward vm/web 8080:80 on your machine)',
  ],
  [
    'forwards[].address ✗ (0.0.0.0)',
    'kubevirt',
    'web',
    'forwards: [{host: 8080, guest: 80, address: 0.0.0.0}]\n',
    'forwards[0]',
    'tcp 0.0.0.0:8080 -> :80 is on every interface in qvm: the LoadBalancer Service web-lb keeps port 8080, and needs a load-balancer implementation in the cluster',
  ],
  [
    'forwards[].address ✗ (an address)',
    'kubevirt',
    'web',
    'forwards: [{host: 8080, guest: 80, address: 192.0.2.10}]\n',
    'forwards[0]',
    'tcp 192.0.2.10:8080 -> :80 is bound to 192.0.2.10 in qvm: the Service web-ip-192-0-2-10 lists it in externalIPs, which works only where that address routes to the nodes',
  ],
  [
    'forwards[].guestAddress ✗',
    'kubevirt',
    'web',
    'forwards: ["tcp::8080-10.0.2.20:80"]\n',
    'forwards[0]',
    "guest address 10.0.2.20 has no equivalent: KubeVirt forwards to the VM's own address",
  ],
  [
    'live forward changes ✗',
    'nomad',
    'web',
    'forwards: [{host: 8080, guest: 80}]\n',
    'updates',
    'any later change to this job, forwards included (qvm changes those live), is a destructive update: Nomad stops the VM gracefully and starts a new allocation, perhaps on another node (nomad job plan says "forces create/destroy update")',
  ],
  [
    'live forward changes ≈',
    'kubevirt',
    'web',
    'forwards: [{host: 8080, guest: 80}]\n',
    'updates',
    "a later change to this VirtualMachine is not applied by restarting it, as qvm apply does: CPU sockets, memory and hotpluggable volumes go live, anything else sets RestartRequired and waits for virtctl restart (forwards: a Service's ports change live, the interface's ports do not)",
  ],
  [
    'snapshot ✗',
    'nomad',
    'web',
    'disk: disks/web.qcow2\n    snapshot: warm\n',
    'snapshot',
    'not exported: the qcow2 comes fresh from the artifact, so there is no snapshot warm to -loadvm; the guest boots cold',
  ],
  [
    'snapshot ✗',
    'kubevirt',
    'web',
    'disk: disks/web.qcow2\n    snapshot: warm\n',
    'snapshot',
    'not exported: a VirtualMachineSnapshot is disk-only and restored with the VM stopped, so there is no RAM state warm to resume; the guest boots cold',
  ],
  [
    'state: stopped ≈',
    'nomad',
    'web',
    'state: stopped\n',
    'state',
    'stopped becomes Count 0: Nomad stops the allocation, and a later Count 1 starts a new one from fresh artifacts, not the stopped VM',
  ],
  [
    'state: saved ✗',
    'nomad',
    'web',
    'disk: disks/web.qcow2\n    state: saved\n',
    'state',
    'saved has no equivalent (no savevm, no resume): the job has Count 0, and a later Count 1 boots the guest cold from fresh artifacts',
  ],
  [
    'state: saved ✗',
    'kubevirt',
    'web',
    'disk: disks/web.qcow2\n    state: saved\n',
    'state',
    'saved has no equivalent (virtctl pause keeps the VM in memory, a memory dump is not resumable): the VM is Halted and boots cold when started',
  ],
  [
    'stopTimeout ≈ (max_kill_timeout)',
    'nomad',
    'web',
    'stopTimeout: 2m\n',
    'stopTimeout',
    "KillTimeout 2m is capped by the client's max_kill_timeout (30s unless the client sets it higher): QEMU may be killed before the guest has shut down",
  ],
  [
    'stopTimeout ≈ (whole seconds)',
    'kubevirt',
    'web',
    'stopTimeout: 2500ms\n',
    'stopTimeout',
    '2.5s is rounded up to 3s: terminationGracePeriodSeconds is whole seconds',
  ],
  [
    'accel: tcg ✗',
    'kubevirt',
    'web',
    'accel: tcg\n',
    'accel',
    'tcg cannot be chosen per VM: the VM runs on KVM and needs a node with KVM unless the KubeVirt CR sets developerConfiguration.useEmulation (cluster-wide)',
  ],
  [
    'accel: auto ≈',
    'nomad',
    'web',
    'disk: disks/web.qcow2\n',
    'accel',
    'auto becomes accelerator "kvm:tcg": QEMU falls back to TCG when KVM fails to initialise, but not when /dev/kvm opens and hangs guests (the case qvm probes for); write accel: kvm or tcg to choose',
  ],
  [
    'accel: auto ≈',
    'kubevirt',
    'web',
    'disk: disks/web.qcow2\n',
    'accel',
    'auto becomes KVM: nodes without KVM are not used unless the KubeVirt CR sets developerConfiguration.useEmulation',
  ],
  [
    'args ✗',
    'kubevirt',
    'web',
    'args: [-vga, std]\n',
    'args',
    'dropped (-vga std): KubeVirt passes nothing to QEMU; only a hook sidecar (Sidecar feature gate) can edit the domain XML',
  ],
  [
    'ready: {tcp} ≈',
    'nomad',
    'web',
    'forwards: [{host: 8080, guest: 80}]\n    ready: {tcp: 8080}\n',
    'ready.tcp',
    "becomes a Nomad tcp check: it gates the deployment's health, not a qvm apply",
  ],
  [
    'ready: {tcp} ≈',
    'kubevirt',
    'web',
    'forwards: [{host: 8080, guest: 80}]\n    ready: {tcp: 8080}\n',
    'ready.tcp',
    "becomes a readinessProbe tcpSocket on guest port 80: it gates the Service's endpoints, not a deployment",
  ],
  [
    'ready: {http} ≈',
    'nomad',
    'web',
    'forwards: [{host: 8080, guest: 80}]\n    ready: {http: {port: 8080, path: /health, status: 302}, timeout: 30s}\n',
    'ready.http',
    'a Nomad http check passes on any 2xx answer, so status 302 cannot be expressed (qvm waits for 302)',
  ],
  [
    'ready: {http} ≈',
    'kubevirt',
    'web',
    'forwards: [{host: 8080, guest: 80}]\n    ready: {http: {port: 8080, path: /health, status: 302}, timeout: 30s}\n',
    'ready.http',
    'becomes a readinessProbe httpGet on guest port 80: it succeeds on any status from 200 to 399 (qvm waits for 302)',
  ],
  [
    'ready.timeout ≈',
    'nomad',
    'web',
    'forwards: [{host: 8080, guest: 80}]\n    ready: {http: {port: 8080, path: /health, status: 302}, timeout: 30s}\n',
    'ready.timeout',
    "becomes the deployment's HealthyDeadline (30s), with the check every 5s",
  ],
  [
    'ready.timeout ≈',
    'kubevirt',
    'web',
    'forwards: [{host: 8080, guest: 80}]\n    ready: {http: {port: 8080, path: /health, status: 302}, timeout: 30s}\n',
    'ready.timeout',
    '30s has no equivalent: the probe runs every 5s and the VM stays unready until it passes',
  ],
  [
    'restart: on-failure ≈',
    'nomad',
    'web',
    'disk: disks/web.qcow2\n',
    'restart',
    'on-failure is approximated: a service job also restarts QEMU after the guest powers itself off (qvm leaves it down), 5s after it exits, 10 times in 30 minutes (qvm backs off from 1s doubling up to 5 min)',
  ],
  [
    'restart: never ≈',
    'nomad',
    'web',
    'restart: never\n',
    'restart',
    'never: no restart and no rescheduling; Nomad marks the allocation failed when QEMU exits, also after the guest powers off, and only a new job version starts it again',
  ],
  [
    'restart back-off ≈',
    'nomad',
    'web',
    'accel: kvm\n    restart: always\n',
    'restart',
    'always: Nomad restarts QEMU 5s after it exits, 10 times in 30 minutes, then waits out the interval (qvm backs off from 1s doubling up to 5 min)',
  ],
  [
    'restart back-off ≈',
    'kubevirt',
    'web',
    'accel: kvm\n    restart: always\n',
    'restart',
    "always: KubeVirt starts the VM again with its own crash-loop back-off, not qvm's (1s doubling up to 5 min)",
  ],
  [
    'restart-class edits ≈',
    'kubevirt',
    'web',
    'disk: disks/web.qcow2\n',
    'updates',
    'a later change to this VirtualMachine is not applied by restarting it, as qvm apply does: CPU sockets, memory and hotpluggable volumes go live, anything else sets RestartRequired and waits for virtctl restart',
  ],
  [
    'restart-class edits ≈',
    'nomad',
    'web',
    'disk: disks/web.qcow2\n',
    'updates',
    'any later change to this job is a destructive update: Nomad stops the VM gracefully and starts a new allocation, perhaps on another node (nomad job plan says "forces create/destroy update")',
  ],
  [
    'guest networking (§2)',
    'kubevirt',
    'web',
    'disk: disks/web.qcow2\n',
    'nic',
    "masquerade gives the guest 10.0.2.2/24 with gateway 10.0.2.1 by DHCP, not qvm's 10.0.2.15 and 10.0.2.2: a guest with static addresses needs --network slirp",
  ],
  [
    'image: digest (no CDI checksum)',
    'kubevirt',
    'web',
    'image: {url: "https://images.example.org/base.qcow2", sha256: "' +
      'a'.repeat(64) +
      '"}\n    disk: {path: disks/web.qcow2, size: 8G}\n',
    'image',
    "CDI's http source has no checksum field: the cluster imports https://images.example.org/base.qcow2 without checking sha256 (qvm refuses an image that does not match)",
  ],
  [
    'image: disk.size',
    'nomad',
    'web',
    'image: {url: "https://images.example.org/base.qcow2", sha256: "' +
      'a'.repeat(64) +
      '"}\n    disk: {path: disks/web.qcow2, size: 8G}\n',
    'disk.size',
    "the qemu driver does not grow the image to 8G: the disk has the image's own size (grow it with qemu-img resize in a prestart task, or in the guest)",
  ],
  [
    'ssh: host key',
    'nomad',
    'web',
    'ssh: {user: dev}\n',
    'ssh',
    "host-key pinning does not carry over: qvm's host key for this VM stays on this machine and the guest generates its own; check its fingerprint on first login",
  ],
  [
    'ssh: host key',
    'kubevirt',
    'web',
    'ssh: {user: dev}\n',
    'ssh',
    "host-key pinning does not carry over: qvm's host key for this VM stays on this machine and the guest generates its own; check its fingerprint on first login",
  ],
  [
    'ssh: port',
    'nomad',
    'web',
    'ssh: {user: dev}\n',
    'ssh',
    'the ssh forward (tcp 127.0.0.1:PORT -> :22) gets a dynamic port on the Nomad client, bound to 127.0.0.1 there: nomad alloc status shows it; qvm ssh does not reach it',
  ],
  [
    'local file, no --artifact-base',
    'nomad',
    'web',
    'disk: disks/web.qcow2\n',
    'disk',
    'no --artifact-base: the artifact is /srv/vms/disks/web.qcow2, a path on this machine that every Nomad client must have; serve disks/web.qcow2 over http and pass --artifact-base URL',
  ],
  [
    'local file, no --artifact-base',
    'kubevirt',
    'web',
    'disk: disks/web.qcow2\n',
    'disk',
    "disks/web.qcow2 is a file on this machine and no --artifact-base was given: the DataVolume waits for an upload (from the manifest's folder: virtctl image-upload dv web-disk --no-create --image-path=disks/web.qcow2)",
  ],
  [
    'no --registry',
    'kubevirt',
    'web',
    'kernel: boot/vmlinuz\n    initrd: boot/initrd.gz\n    append: console=ttyS0\n',
    'kernel',
    'no --registry: the container image is named under localhost/qvm, an image loaded into the nodes by hand; pass --registry REGISTRY to pull it from a registry',
  ],
  [
    'agent ≈ (the channel, not its uses)',
    'nomad',
    'web',
    'agent: true\n',
    'agent',
    "the driver adds the agent's channel (guest_agent: qa.sock in the task directory on the Nomad client), but Nomad does not use it: a stop is graceful_shutdown's ACPI power button only (qvm asks the agent first), and qvm exec and qvm status do not reach it",
  ],
  [
    'ready: {agent} ✗',
    'nomad',
    'web',
    'agent: true\n    ready: {agent: true}\n',
    'ready.agent',
    'has no Nomad check equivalent: the job is healthy once the task runs',
  ],
  [
    'ready: {agent} ≈',
    'kubevirt',
    'web',
    'agent: true\n    ready: {agent: true}\n',
    'ready.agent',
    "becomes a readinessProbe guestAgentPing (KubeVirt pings the agent, as qvm does): it gates the Service's endpoints, not a deployment",
  ],
  [
    'mounts ✗',
    'nomad',
    'web',
    'mounts: [{host: ./src, guest: /home/dev/src}]\n',
    'mounts[0]',
    'not exported: the qemu driver mounts no volumes, so the guest gets nothing at /home/dev/src (where qvm shares src); to share a folder that every client has, add to args: -fsdev local,id=fs0,path=DIR,security_model=none,readonly=on -device virtio-9p-pci,fsdev=fs0,mount_tag=qvm0',
  ],
  [
    'mounts ≈ (a claim, not a folder of this machine)',
    'kubevirt',
    'web',
    'mounts: [{host: ./src, guest: /home/dev/src, writable: true}]\n',
    'mounts[0]',
    'becomes the virtiofs filesystem qvm0 on the PersistentVolumeClaim web-qvm0, which must exist and hold what src holds: KubeVirt cannot share a folder of this machine, and nothing copies it there or back',
  ],
  [
    'mounts ≈ (virtiofs, no seed)',
    'kubevirt',
    'web',
    'mounts: [{host: ./src, guest: /home/dev/src}]\n',
    'mounts',
    'virtiofs on a PersistentVolumeClaim needs the EnableVirtioFsStorageVolumes feature gate (Alpha in KubeVirt v1.9.0) in the KubeVirt CR, else the VM is refused; the guest mounts virtiofs (Linux 5.4 or later), not 9p: mount -t virtiofs qvm0 DIR',
  ],
  [
    'mounts ≈ (virtiofs, from the seed)',
    'kubevirt',
    'web',
    'mounts: [{host: ./src, guest: /home/dev/src}]\n    ssh: {user: dev}\n',
    'mounts',
    'virtiofs on a PersistentVolumeClaim needs the EnableVirtioFsStorageVolumes feature gate (Alpha in KubeVirt v1.9.0) in the KubeVirt CR, else the VM is refused; the guest mounts virtiofs (Linux 5.4 or later), not 9p, as its seed says',
  ],
  [
    'disks ✗ (artifact)',
    'nomad',
    'web',
    'disks: [{path: disks/data.qcow2}]\n',
    'disks[0]',
    'the data disk is an artifact, downloaded again into every new allocation: a job update or a reschedule starts from a fresh copy and loses what the guest wrote (qvm keeps a data disk even through destroy --delete-disks)',
  ],
  [
    'disks[].size ✗',
    'nomad',
    'web',
    'disks: [{path: disks/data.qcow2, size: 50G}]\n',
    'disks[0].size',
    'the qemu driver creates no disk: the job downloads data.qcow2; make it once (qemu-img create -f qcow2 data.qcow2 50G) and serve it',
  ],
  [
    'disks ≈ (deleted with the VirtualMachine)',
    'kubevirt',
    'web',
    'disks: [{path: disks/data.qcow2, size: 50G}]\n',
    'disks[0]',
    "the DataVolume web-data-data is in the VirtualMachine's dataVolumeTemplates, so deleting the VirtualMachine deletes the disk (qvm keeps a data disk unless destroy --delete-data-disks; kubectl delete --cascade=orphan keeps it)",
  ],
  [
    'disks[].size not given',
    'kubevirt',
    'web',
    'disks: [{path: disks/data.qcow2}]\n',
    'disks[0].size',
    "not given: CDI needs storage.resources.requests.storage of at least the image's virtual size (qemu-img info); add a size to disks[0] in the manifest",
  ],
  [
    'disks: local file, no --artifact-base',
    'kubevirt',
    'web',
    'disks: [{path: disks/data.qcow2}]\n',
    'disks[0]',
    "disks/data.qcow2 is a file on this machine and no --artifact-base was given: the DataVolume waits for an upload (from the manifest's folder: virtctl image-upload dv web-data-data --no-create --image-path=disks/data.qcow2)",
  ],
  [
    'display: vnc ≈',
    'nomad',
    'web',
    'display: vnc\n',
    'display',
    "VNC is served on vnc.sock in the task directory on the Nomad client (beside the driver's qm.sock): reach it on that node; qvm vnc and qvm screenshot do not reach it",
  ],
  [
    'display: {vnc: {port}} ≈',
    'nomad',
    'web',
    'display: {vnc: {port: 5901}}\n',
    'display',
    "VNC on 127.0.0.1:5901 of the Nomad client through args (-vnc 127.0.0.1:1); the port is reserved on the node's network for scheduling; qvm vnc and qvm screenshot do not reach it",
  ],
  [
    'display: {vnc: {port}} ✗',
    'kubevirt',
    'web',
    'display: {vnc: {port: 5901}}\n',
    'display',
    'VNC on 127.0.0.1:5901 has no equivalent: KubeVirt serves the screen only through the Kubernetes API; virtctl vnc --proxy-only --address 127.0.0.1 --port 5901 web serves it there on the machine that runs virtctl',
  ],
];

const dir = mkdtempSync(path.join(tmpdir(), 'qvm-export-warn-'));

describe.each(ROWS)('%s, %s', (_row, target, vm, body, field, message) => {
  const text = `vms:\n  ${vm}:\n    ${body}`;

  it(`warns on ${field}`, () => {
    const manifest = manifestFrom(text);
    const { warnings } = exportManifest(manifest, target, manifest.vms, {});
    expect(warnings).toContainEqual({ vm, field, message });
  });

  it('fails with --strict, printing the warning and writing nothing', async () => {
    const sub = mkdtempSync(path.join(dir, 'm-'));
    const file = path.join(sub, 'm.yaml');
    writeFileSync(file, text);
    const out = path.join(sub, 'out');
    const r = await qvmInProcess(['export', '--to', target, '-f', file, '--strict', '-o', out]);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toBe('');
    // manifestFrom puts the manifest in /srv/vms; here it is in SUB.
    expect(r.stderr.split('\n')).toContain(
      `warning: ${vm}: ${field}: ${message.replaceAll('/srv/vms/', `${sub}/`)}`,
    );
    expect(r.stderr).toMatch(/\nerror: \d+ warnings? with --strict: nothing written\n$/);
    expect(readdirSync(sub)).toEqual(['m.yaml']);
  });
});

describe('without --strict', () => {
  it('prints the same warnings and exits 0', async () => {
    const file = path.join(dir, 'plain.yaml');
    writeFileSync(file, 'vms:\n  web:\n    forwards: [{host: 8080, guest: 80}]\n');
    const r = await qvmInProcess(['export', '--to', 'kubevirt', '-f', file]);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toContain(
      'warning: web: forwards[0]: tcp 127.0.0.1:8080 -> :80 is loopback-only in qvm; the ClusterIP Service web is reachable from the whole cluster',
    );
    expect(r.stdout).toMatch(/^# qvm export --to kubevirt: VM web of /);
  });

  it('has no warning at all where an engine is faithful', () => {
    // accel kvm, restart never and no forwards: KubeVirt expresses all of it (nothing runs, nothing is exposed
    // with the slirp binding and no ports). The agent and a VNC socket too: KubeVirt gives every VM the
    // agent's channel (used for shutdown as qvm uses it) and a private VNC socket reached through its API.
    const manifest = manifestFrom(
      'vms:\n  web:\n    accel: kvm\n    restart: never\n    memory: 1G\n    agent: true\n    display: vnc\n',
    );
    const { warnings } = exportManifest(manifest, 'kubevirt', manifest.vms, { network: 'slirp' });
    expect(warnings.map((w) => w.field)).toEqual(['nic', 'updates']);
  });
});
