/**
 * The one part of Nomad that runs here: the exported demo job's QEMU, started with the argv the qemu driver
 * builds, from files fetched the way the client fetches artifacts. It boots the demo guest, answers HTTP
 * through the loopback-only forward, gives the guest the args' -m (not the driver's), and powers off on the
 * driver's graceful-shutdown command within the job's KillTimeout.
 *
 * The demo is exported with `accel: tcg`: with the manifest's auto, the job asks for kvm:tcg, and this
 * machine's /dev/kvm opens but hangs guests (the case qvm's probe exists for; MAPPING.md's accel row).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HmpClient } from '../../src/qemu/hmp.js';
import { qvm } from '../helpers/cli.js';
import {
  freePorts,
  GUEST_HELLO,
  GUEST_INITRD,
  GUEST_KERNEL,
  listeningAddresses,
  url,
  waitForHttp,
} from '../helpers/env.js';
import { type ImageServer, startImageServer } from '../helpers/image-server.js';
import {
  allocatePorts,
  driverArgv,
  fetchArtifacts,
  type NomadJobFile,
  renderTemplates,
} from '../helpers/nomad-qemu-driver.js';
import { isAlive, registerPid, removeDir, tempDir, waitUntil } from '../helpers/qemu.js';
import { scaleOutFixture } from '../helpers/scale-out.js';

const root = tempDir('qvm-nomad-');
const allocDir = path.join(root, 'alloc');
const taskDir = path.join(allocDir, 'qemu');
let server: ImageServer;
let qemu: ChildProcess | undefined;
let serial = '';
let port: number;
let job: NomadJobFile;
let argv: string[];

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
}

beforeAll(async () => {
  [port] = (await freePorts(1)) as [number];
  // examples/demo.yaml, with the guest's files where they are built, a free port for 8080, and accel: tcg.
  const demo = readFileSync('examples/demo.yaml', 'utf8')
    .replace('../guest/out/vmlinuz', GUEST_KERNEL)
    .replace('../guest/out/initrd.gz', GUEST_INITRD)
    .replace('host: 8080', `host: ${port}`)
    .concat('    accel: tcg\n');
  writeFileSync(path.join(root, 'demo.yaml'), demo);
  // The files the job names, served as --artifact-base serves them: BASE/VM/FILE.
  const disk = path.join(root, 'demo.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '64M']);
  server = await startImageServer({
    '/qvm/demo/vmlinuz': GUEST_KERNEL,
    '/qvm/demo/initrd.gz': GUEST_INITRD,
    '/qvm/demo/demo.qcow2': disk,
  });
  const exported = await qvm(
    ['export', '--to', 'nomad', '-f', 'demo.yaml', '--artifact-base', `${server.origin}/qvm`],
    { cwd: root },
  );
  expect(exported.exitCode, exported.stderr).toBe(0);
  job = JSON.parse(exported.stdout) as NomadJobFile;
  const task = job.Job.TaskGroups[0]!.Tasks[0]!;
  mkdirSync(taskDir, { recursive: true });
  await fetchArtifacts(task, taskDir);
  renderTemplates(task, taskDir);
  argv = driverArgv(task, taskDir, allocatePorts(job));
  qemu = spawn(argv[0]!, argv.slice(1), { cwd: taskDir, stdio: ['pipe', 'pipe', 'pipe'] });
  registerPid(qemu.pid!);
  qemu.stdout!.on('data', (chunk: Buffer) => {
    serial += chunk.toString('utf8');
  });
  qemu.stderr!.on('data', (chunk: Buffer) => {
    serial += chunk.toString('utf8');
  });
}, 60_000);

afterAll(async () => {
  if (qemu?.pid && isAlive(qemu.pid)) qemu.kill('SIGKILL');
  await server?.close();
  removeDir(root);
});

describe('the exported demo job, run as the Nomad qemu driver runs it', () => {
  it("starts QEMU with the command line of the notes' smoke-nomad-argv.log", () => {
    const logged = scaleOutFixture('smoke-nomad-argv.txt')
      .split('\n')[0]!
      .replace(/^argv: /, '');
    const expected = logged.replace('TASKDIR', allocDir).replace('38871', String(port));
    expect(argv.join(' ')).toBe(expected);
  });

  it('answers HTTP through the forward, bound to loopback only', async () => {
    const { body } = await waitForHttp(url(port), 90_000, 250);
    expect(body).toContain(GUEST_HELLO);
    expect(listeningAddresses(port)).toEqual(['0100007F']);
  }, 100_000);

  it("gives the guest the args' -m 256, not the driver's -m 384M", async () => {
    const hmp = await HmpClient.connect(path.join(taskDir, 'qm.sock'));
    try {
      expect(await hmp.hmp('info memory_size_summary')).toContain('base memory: 268435456');
    } finally {
      await hmp.close();
    }
  });

  it("powers off on the driver's graceful shutdown within the job's KillTimeout", async () => {
    const killTimeoutMs = job.Job.TaskGroups[0]!.Tasks[0]!.KillTimeout! / 1e6;
    expect(killTimeoutMs).toBe(15_000);
    // What StopTask does with graceful_shutdown: one line to the HMP socket, then wait up to KillTimeout.
    const socket = net.connect(path.join(taskDir, 'qm.sock'));
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => socket.end('system_powerdown\n', resolve));
      socket.once('error', reject);
    });
    // The driver SIGKILLs QEMU once KillTimeout has passed: waiting that long is the driver's own deadline, and
    // exit status 0 (no signal) says the guest powered off before it.
    await waitUntil(() => qemu!.exitCode !== null, killTimeoutMs);
    expect(await exited(qemu!)).toBe(0);
    expect(qemu!.signalCode).toBeNull();
    expect(serial).toContain('reboot: Power down');
  }, 30_000);
});

describe('an exported job with cloudInit: and ssh:, run as the driver runs it', () => {
  const dir = path.join(root, 'seed');
  const seedTask = path.join(dir, 'alloc', 'qemu');
  let child: ChildProcess | undefined;

  afterAll(() => {
    if (child?.pid && isAlive(child.pid)) child.kill('SIGKILL');
  });

  it('renders the seed into local/cidata and QEMU serves it read-only as the cidata drive', async () => {
    mkdirSync(seedTask, { recursive: true });
    writeFileSync(
      path.join(dir, 'm.yaml'),
      [
        'vms:',
        '  dev:',
        '    memory: 64M',
        '    accel: tcg',
        '    ssh: { user: dev }',
        '    cloudInit:',
        '      userData: |',
        '        #cloud-config',
        '        write_files: [{path: /etc/motd, content: "{{ not a nomad template }}"}]',
        '',
      ].join('\n'),
    );
    writeFileSync(path.join(dir, 'id.pub'), 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPx7 me@laptop\n');
    const exported = await qvm(['export', '--to', 'nomad', '-f', 'm.yaml', '--ssh-key', 'id.pub'], {
      cwd: dir,
    });
    expect(exported.exitCode, exported.stderr).toBe(0);
    const seedJob = JSON.parse(exported.stdout) as NomadJobFile;
    const task = seedJob.Job.TaskGroups[0]!.Tasks[0]!;
    renderTemplates(task, seedTask);
    const userData = readFileSync(path.join(seedTask, 'local/cidata/user-data'), 'utf8');
    expect(userData).toContain('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPx7 me@laptop');
    expect(userData).toContain('{{ not a nomad template }}');
    expect(userData).not.toContain('ssh_keys');
    // ssh: without a port is a dynamic port; the scheduler picks it.
    const [sshPort] = (await freePorts(1)) as [number];
    const seedArgv = driverArgv(task, seedTask, allocatePorts(seedJob, { ssh: sshPort }));
    // -S: the CPU stays stopped; only QEMU's drives are looked at.
    child = spawn(seedArgv[0]!, [...seedArgv.slice(1), '-S'], { cwd: seedTask, stdio: 'ignore' });
    registerPid(child.pid!);
    const socket = path.join(seedTask, 'qm.sock');
    await waitUntil(() => {
      try {
        return readFileSync('/proc/net/unix', 'utf8').includes(socket);
      } catch {
        return false;
      }
    }, 10_000);
    const hmp = await HmpClient.connect(socket);
    try {
      const block = await hmp.hmp('info block');
      expect(block).toMatch(
        /seed0 \(#block\d+\): json:\{"driver": "raw", "file": \{"dir": "local\/cidata", "driver": "vvfat", "label": "cidata"\}\} \(raw, read-only\)/,
      );
      // The placeholder image_path is a drive without a device (if=none): the guest does not see it.
      const image0 = /^image0 .*\n(?:[ \t]+.*\n)*/m.exec(`${block}\n`)?.[0] ?? '';
      expect(image0).toMatch(/^image0 \(#block\d+\): local\/qvm-no-image\.img \(raw\)\n/);
      expect(image0).not.toContain('Attached to');
      expect(listeningAddresses(sshPort)).toEqual(['0100007F']);
      await hmp.hmp('quit').catch(() => undefined);
    } finally {
      await hmp.close().catch(() => undefined);
    }
    expect(await exited(child)).toBe(0);
  }, 30_000);
});

describe('an exported job with agent:, disks: and display: vnc, as the driver starts it', () => {
  const dir = path.join(root, 'guest');
  const task = path.join(dir, 'alloc', 'qemu');
  let child: ChildProcess | undefined;

  afterAll(() => {
    if (child?.pid && isAlive(child.pid)) child.kill('SIGKILL');
  });

  it("puts the OS disk first, the data disk's serial, the agent's channel and VNC in the task directory", async () => {
    mkdirSync(path.join(dir, 'disks'), { recursive: true });
    mkdirSync(task, { recursive: true });
    writeFileSync(
      path.join(dir, 'm.yaml'),
      [
        'vms:',
        '  dev:',
        '    memory: 64M',
        '    accel: tcg',
        '    disk: { path: disks/dev.qcow2, size: 16M }',
        '    agent: true',
        '    disks: [{ path: disks/data.qcow2, size: 16M }]',
        '    display: vnc',
        '',
      ].join('\n'),
    );
    for (const disk of ['dev.qcow2', 'data.qcow2']) {
      const file = path.join(dir, 'disks', disk);
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '16M']);
      server.setFile(`/qvm/dev/${disk}`, file);
    }
    const exported = await qvm(
      ['export', '--to', 'nomad', '-f', 'm.yaml', '--artifact-base', `${server.origin}/qvm`],
      { cwd: dir },
    );
    expect(exported.exitCode, exported.stderr).toBe(0);
    const devJob = JSON.parse(exported.stdout) as NomadJobFile;
    const devTask = devJob.Job.TaskGroups[0]!.Tasks[0]!;
    await fetchArtifacts(devTask, task);
    const devArgv = driverArgv(devTask, task, allocatePorts(devJob));
    // -S: the CPU stays stopped; only QEMU's devices are looked at.
    child = spawn(devArgv[0]!, [...devArgv.slice(1), '-S'], { cwd: task, stdio: 'ignore' });
    registerPid(child.pid!);
    const socket = path.join(task, 'qm.sock');
    await waitUntil(() => {
      try {
        return readFileSync('/proc/net/unix', 'utf8').includes(socket);
      } catch {
        return false;
      }
    }, 10_000);
    const hmp = await HmpClient.connect(socket);
    try {
      // Each virtio disk: its PCI slot, its drive and its serial. The driver's image0 (the OS disk) is the
      // first virtio disk in PCI order, so the guest names it vda, and the data disk has its serial.
      const qtree = await hmp.hmp('info qtree');
      const disks = [
        ...qtree.matchAll(
          /dev: virtio-blk-pci, id ""\s[\s\S]*?addr = ([0-9a-f]+)\.0\s[\s\S]*?drive = "(\w+)"\s[\s\S]*?serial = "([^"]*)"/g,
        ),
      ]
        .map(([, slot, drive, serial]) => ({ slot: Number.parseInt(slot!, 16), drive, serial }))
        .sort((a, b) => a.slot - b.slot)
        .map(({ drive, serial }) => ({ drive, serial }));
      expect(disks).toEqual([
        { drive: 'image0', serial: '' },
        { drive: 'data0', serial: 'data' },
      ]);
      const block = await hmp.hmp('info block');
      expect(block).toMatch(/^image0 \(#block\d+\): local\/dev\.qcow2 \(qcow2\)\n\s+Attached to:/m);
      expect(block).toMatch(/^data0 \(#block\d+\): local\/data\.qcow2 \(qcow2\)\n\s+Attached to:/m);
      // guest_agent's channel on qa.sock, and VNC on vnc.sock beside it (relative to QEMU's working directory).
      expect(await hmp.hmp('info chardev')).toContain(
        `qga0: filename=disconnected:unix:${path.join(task, 'qa.sock')},server=on`,
      );
      expect(await hmp.hmp('info vnc')).toContain('Server: :vnc.sock (unix)');
      expect(statSync(path.join(task, 'vnc.sock')).isSocket()).toBe(true);
      await hmp.hmp('quit').catch(() => undefined);
    } finally {
      await hmp.close().catch(() => undefined);
    }
    expect(await exited(child)).toBe(0);
  }, 30_000);
});
