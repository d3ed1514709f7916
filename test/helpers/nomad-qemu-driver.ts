/**
 * The part of a Nomad client that a `qemu` task needs, done here the way Nomad v2.0.5 does it, so an exported
 * job's QEMU can run on this machine (which has no Nomad): fetch the artifacts (go-getter semantics: `.gz`
 * is unpacked unless `archive=false`, `checksum` is verified), render the templates, interpolate
 * `${NOMAD_HOST_PORT_<label>}`, and build the argv as drivers/qemu/driver.go StartTask does: its own options
 * (`-machine type=pc,accel=A -name IMAGE -m MEMORY_MBM -drive file=IMAGE,if=IF,id=image0 -nographic`, the
 * `-monitor` for graceful_shutdown, the agent's channel for guest_agent), then Config.args, then `-enable-kvm`
 * for accelerator kvm. The notes' smoke-nomad-argv.log is that argv for the demo.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';

/** The fields of a Nomad job this client reads (the rest of the job is the scheduler's business). */
export interface NomadTask {
  Config: {
    image_path: string;
    drive_interface?: string;
    accelerator?: string;
    machine_type?: string;
    graceful_shutdown?: boolean;
    guest_agent?: boolean;
    args?: string[];
  };
  Resources: { MemoryMB: number };
  KillTimeout?: number;
  Artifacts?: { GetterSource: string; GetterOptions?: Record<string, string>; RelativeDest: string }[];
  Templates?: { EmbeddedTmpl: string; DestPath: string; LeftDelim?: string; RightDelim?: string }[];
}

export interface NomadJobFile {
  Job: {
    TaskGroups: {
      Networks?: { ReservedPorts?: { Label: string; Value: number }[]; DynamicPorts?: { Label: string }[] }[];
      Tasks: NomadTask[];
    }[];
  };
}

/** What the scheduler decided: the host port of each port label (static ones are their Value). */
export function allocatePorts(
  job: NomadJobFile,
  dynamic: Record<string, number> = {},
): Record<string, number> {
  const ports: Record<string, number> = {};
  for (const network of job.Job.TaskGroups[0]!.Networks ?? []) {
    for (const p of network.ReservedPorts ?? []) ports[p.Label] = p.Value;
    for (const p of network.DynamicPorts ?? []) {
      const port = dynamic[p.Label];
      if (port === undefined) throw new Error(`no port given for the dynamic label ${p.Label}`);
      ports[p.Label] = port;
    }
  }
  return ports;
}

/** Downloads each artifact into TASKDIR as go-getter does in file mode. */
export async function fetchArtifacts(task: NomadTask, taskDir: string): Promise<void> {
  for (const artifact of task.Artifacts ?? []) {
    const response = await fetch(artifact.GetterSource);
    if (!response.ok) throw new Error(`${artifact.GetterSource}: HTTP ${response.status}`);
    let body = Buffer.from(await response.arrayBuffer());
    const checksum = artifact.GetterOptions?.checksum;
    if (checksum) {
      const [algorithm, hex] = checksum.split(':');
      const actual = createHash(algorithm!).update(body).digest('hex');
      if (actual !== hex) throw new Error(`${artifact.GetterSource}: checksum mismatch`);
    }
    // go-getter unpacks by extension unless archive=false (the initrd must reach QEMU still gzipped).
    if (artifact.GetterOptions?.archive !== 'false' && artifact.GetterSource.endsWith('.gz'))
      body = gunzipSync(body);
    const dest = path.join(taskDir, artifact.RelativeDest);
    mkdirSync(path.dirname(dest), { recursive: true });
    writeFileSync(dest, body);
  }
}

/** Writes each template; the exporter's templates hold no template actions, so rendering is writing. */
export function renderTemplates(task: NomadTask, taskDir: string): void {
  for (const t of task.Templates ?? []) {
    const left = t.LeftDelim ?? '{{';
    if (t.EmbeddedTmpl.includes(left)) throw new Error(`${t.DestPath}: has template actions (${left})`);
    const dest = path.join(taskDir, t.DestPath);
    mkdirSync(path.dirname(dest), { recursive: true });
    writeFileSync(dest, t.EmbeddedTmpl);
  }
}

/** `${NOMAD_HOST_PORT_<label>}` as the client's task environment interpolates it in Config strings. */
function interpolate(text: string, ports: Record<string, number>): string {
  return text.replace(/\$\{NOMAD_HOST_PORT_([A-Za-z0-9_]+)\}/g, (whole, label: string) =>
    ports[label] === undefined ? whole : String(ports[label]),
  );
}

/** The absolute path of qemu-system-x86_64, as the driver finds it (LookPath, then EvalSymlinks). */
export function qemuBinary(): string {
  return realpathSync(
    execFileSync('sh', ['-c', 'command -v qemu-system-x86_64'], { encoding: 'utf8' }).trim(),
  );
}

/** The full argv (program first) that the driver starts for TASK in TASKDIR. */
export function driverArgv(task: NomadTask, taskDir: string, ports: Record<string, number>): string[] {
  const config = task.Config;
  const accelerator = config.accelerator ?? 'tcg';
  const imagePath = interpolate(config.image_path, ports);
  const argv = [
    qemuBinary(),
    '-machine',
    `type=${config.machine_type ?? 'pc'},accel=${accelerator}`,
    '-name',
    path.basename(imagePath),
    '-m',
    `${task.Resources.MemoryMB}M`,
    '-drive',
    `file=${imagePath},if=${config.drive_interface ?? 'ide'},id=image0`,
    '-nographic',
  ];
  if (config.graceful_shutdown)
    argv.push('-monitor', `unix:${path.join(taskDir, 'qm.sock')},server=on,wait=off`);
  if (config.guest_agent)
    argv.push(
      '-chardev',
      `socket,path=${path.join(taskDir, 'qa.sock')},server=on,wait=off,id=qga0`,
      '-device',
      'virtio-serial',
      '-device',
      'virtserialport,chardev=qga0,name=org.qemu.guest_agent.0',
    );
  argv.push(...(config.args ?? []).map((a) => interpolate(a, ports)));
  if (accelerator === 'kvm') argv.push('-enable-kvm');
  return argv;
}
