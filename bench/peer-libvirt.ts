/**
 * qvm side by side with libvirt (Debian's libvirt-daemon-system, driven by virsh), same guest, same QEMU,
 * interleaved: one monitor command, listing VMs, adding a forward to a running VM until it answers HTTP,
 * start until the guest's first HTTP answer, graceful stop until the process is gone, and starting and
 * stopping 10 VMs at once.
 *
 * libvirt is set up the way ../shared/PEERS.md describes (no systemd here): installed from Debian's packages
 * when missing (as root), /etc/libvirt/qemu.conf patched to run QEMU as root without a security driver and
 * restored at the end, virtlogd and libvirtd started as daemons and stopped by pid at the end. libvirt 9.0
 * has no user-mode port forwarding of its own, so its domains get `-netdev user,hostfwd=...` through the
 * qemu:commandline namespace, as PEERS.md says. What cannot work here is recorded in the results file.
 * Takes several minutes; run with `npm run bench -- peer-libvirt` (as root).
 */
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { GUEST_INITRD, GUEST_KERNEL } from '../test/helpers/env.js';
import { isRunning, killQemusUnder } from '../test/helpers/processes.js';
import {
  demoVm,
  freePortsDistinct,
  httpGet,
  privateDir,
  sleep,
  vmPid,
  writeVms,
} from '../test/helpers/watch.js';
import {
  describeMachine,
  expectOk,
  interleave,
  machineInfo,
  onCleanup,
  progress,
  type Results,
  type RunResult,
  ratio,
  report,
  run,
  runCleanups,
  seriesOf,
  target,
  withoutExtraCaCerts,
  writeResults,
} from './lib.js';

const QUICK_ROUNDS = 20;
const FORWARD_ROUNDS = 15;
const BOOT_ROUNDS = 5;
const PARALLEL_ROUNDS = 3;
const PARALLEL = 10;
const CONNECT = ['-c', 'qemu:///system'];
const QEMU_CONF = '/etc/libvirt/qemu.conf';
const QEMU_CONF_BACKUP = '/etc/libvirt/qemu.conf.qvm-bench-backup';
const QEMU_CONF_SETTINGS =
  '\n# Added by qvm bench/peer-libvirt.ts, removed when it ends\nuser = "root"\ngroup = "root"\ndynamic_ownership = 0\nsecurity_driver = "none"\n';
const APPEND = 'console=ttyS0 quiet panic=-1';
const PREFIX = 'qvmb-';

const machine = machineInfo();
console.log(`peer-libvirt: qvm against libvirt on ${describeMachine(machine)}`);
const notes: string[] = [];
const params: Record<string, unknown> = {
  guest: `demo guest (guest/out): 256M, TCG, virtio-net-pci, -append '${APPEND}', no disk`,
  quickRounds: QUICK_ROUNDS,
  forwardRounds: FORWARD_ROUNDS,
  bootRounds: BOOT_ROUNDS,
  parallelRounds: PARALLEL_ROUNDS,
  parallel: PARALLEL,
};

// ---------------------------------------------------------------------------------------------------------
// libvirt set-up and tear-down

async function ensureLibvirt(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Unavailable('not root: libvirt cannot be installed and set up');
  if (!(await commandExists('virsh')) || !(await commandExists('libvirtd'))) {
    console.log('  installing libvirt-daemon-system libvirt-clients from Debian');
    const install = await run(
      'apt-get',
      ['install', '-y', '-qq', '--no-install-recommends', 'libvirt-daemon-system', 'libvirt-clients'],
      { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeoutMs: 900_000 },
    );
    if (install.code !== 0)
      throw new Unavailable(`apt-get install failed: ${install.stderr.trim().slice(-500)}`);
  }
  // A backup left by a run that was killed: the original is in it.
  if (existsSync(QEMU_CONF_BACKUP)) copyFileSync(QEMU_CONF_BACKUP, QEMU_CONF);
  copyFileSync(QEMU_CONF, QEMU_CONF_BACKUP);
  onCleanup(() => {
    copyFileSync(QEMU_CONF_BACKUP, QEMU_CONF);
    unlinkSync(QEMU_CONF_BACKUP);
  });
  writeFileSync(QEMU_CONF, readFileSync(QEMU_CONF_BACKUP, 'utf8') + QEMU_CONF_SETTINGS);

  for (const daemon of ['virtlogd', 'libvirtd']) {
    const running = daemonPid(daemon);
    if (running) {
      notes.push(`${daemon} was already running (pid ${running}); it was used as it was and left running.`);
      continue;
    }
    expectOk(`${daemon} -d`, await run(daemon, ['-d'], { timeoutMs: 30_000 }));
    let pid = daemonPid(daemon);
    const deadline = Date.now() + 10_000;
    while (!pid && Date.now() < deadline) {
      await sleep(50);
      pid = daemonPid(daemon);
    }
    if (!pid) throw new Unavailable(`${daemon} -d did not write /run/${daemon}.pid`);
    const started = pid;
    onCleanup(async () => {
      process.kill(started, 'SIGTERM');
      const until = Date.now() + 15_000;
      while (isRunning(started) && Date.now() < until) await sleep(100);
      if (isRunning(started)) process.kill(started, 'SIGKILL');
    });
  }
  const deadline = Date.now() + 20_000;
  for (;;) {
    const version = await run('virsh', [...CONNECT, 'version'], { timeoutMs: 10_000 });
    if (version.code === 0) {
      params.libvirt = /Using library: libvirt (\S+)/.exec(version.stdout)?.[1] ?? 'unknown';
      break;
    }
    if (Date.now() > deadline) throw new Unavailable(`libvirtd does not answer: ${version.stderr.trim()}`);
    await sleep(200);
  }
  // Domains are removed at the end, whatever happened (registered after the daemons: runs before they stop).
  onCleanup(removeDomains);
  await removeDomains();
}

class Unavailable extends Error {}

async function commandExists(name: string): Promise<boolean> {
  return (await run('bash', ['-c', `command -v ${name}`])).code === 0;
}

function daemonPid(daemon: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(`/run/${daemon}.pid`, 'utf8').trim(), 10);
    return isRunning(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function removeDomains(): Promise<void> {
  const list = await run('virsh', [...CONNECT, 'list', '--all', '--name']);
  for (const name of list.stdout.split('\n').map((l) => l.trim())) {
    if (!name.startsWith(PREFIX)) continue;
    await run('virsh', [...CONNECT, 'destroy', name]);
    await run('virsh', [...CONNECT, 'undefine', name]);
  }
}

async function virsh(args: string[], check?: (out: string) => boolean): Promise<RunResult> {
  return expectOk(
    `virsh ${args.join(' ')}`,
    await run('virsh', [...CONNECT, ...args], { timeoutMs: 120_000 }),
    check,
  );
}

/** The demo guest as a libvirt domain, lean the way libvirt starts QEMU (-nodefaults, explicit devices). */
function domainXml(name: string, port: number): string {
  return `<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>${name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${GUEST_KERNEL}</kernel>
    <initrd>${GUEST_INITRD}</initrd>
    <cmdline>${APPEND}</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='pty'><target port='0'/></serial>
    <video><model type='none'/></video>
    <memballoon model='none'/>
    <controller type='usb' model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='user,id=net0,hostfwd=tcp:127.0.0.1:${port}-:80'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=net0,addr=0x10'/>
  </qemu:commandline>
</domain>
`;
}

/** Whether this libvirt has user-mode port forwarding of its own (the passt backend), as a note. */
async function probePasst(): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'qvm-bench-passt-'));
  const file = path.join(dir, 'passt.xml');
  const name = `${PREFIX}passt`;
  writeFileSync(
    file,
    domainXml(name, 1)
      .replace(/ *<qemu:commandline>[\s\S]*<\/qemu:commandline>\n/, '')
      .replace(
        '</devices>',
        "  <interface type='user'><backend type='passt'/><portForward proto='tcp'><range start='18080' to='80'/></portForward><model type='virtio'/></interface>\n  </devices>",
      ),
  );
  const defined = await run('virsh', [...CONNECT, 'define', file]);
  rmSync(dir, { recursive: true, force: true });
  if (defined.code === 0) {
    await run('virsh', [...CONNECT, 'undefine', name]);
    return 'This libvirt accepts a passt-backed interface with portForward (defined, not started); the comparison still uses hostfwd through <qemu:commandline> for the same network stack as qvm.';
  }
  const why = (defined.stderr.trim().split('\n').pop() ?? '').replace(/^error: /, '');
  return `libvirt here has no user-mode port forwarding of its own: a passt-backed interface is rejected at define time (${why}). Its domains get -netdev user,hostfwd=... through <qemu:commandline>, as in ../shared/PEERS.md.`;
}

function libvirtPid(name: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(`/run/libvirt/qemu/${name}.pid`, 'utf8').trim(), 10);
    return isRunning(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Timing helpers

/**
 * Polls http://127.0.0.1:PORT/ (a new request every STEP ms without waiting for the last, 300 ms each: slirp
 * holds connections open while the guest boots) until it answers 200; performance.now() of that answer.
 */
async function firstAnswer(port: number, timeoutMs = 120_000, stepMs = 20): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    let done = false;
    const tick = () => {
      if (done) return;
      if (performance.now() > deadline) {
        done = true;
        reject(new Error(`port ${port} did not answer HTTP within ${timeoutMs} ms`));
        return;
      }
      httpGet(`http://127.0.0.1:${port}/`, 300).then(
        ({ status }) => {
          if (status === 200 && !done) {
            done = true;
            resolve(performance.now());
          }
        },
        () => {},
      );
      setTimeout(tick, stepMs);
    };
    tick();
  });
}

/** Milliseconds from now until every PID has ended. */
async function untilGone(pids: number[], timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some(isRunning)) {
    if (Date.now() > deadline) throw new Error(`processes ${pids.filter(isRunning)} still running`);
    await sleep(10);
  }
}

const printedForward = (out: string) => /TCP\[HOST_FORWARD\]/.test(out);

/**
 * Waits (untimed) until libvirt itself says the domain is shut off: libvirtd notices its QEMU's exit a moment
 * after the process is gone, and a `virsh start` before that fails with "Domain is already active".
 */
async function untilShutOff(names: string[], timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const name of names) {
    while (!/shut off/.test((await run('virsh', [...CONNECT, 'domstate', name])).stdout)) {
      if (Date.now() > deadline) throw new Error(`libvirt still has ${name} active`);
      await sleep(50);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------

const runtime = privateDir('qvmbl-');
const dirOne = mkdtempSync(path.join(tmpdir(), 'qvm-bench-lv1-'));
const dirTen = mkdtempSync(path.join(tmpdir(), 'qvm-bench-lv10-'));
onCleanup(async () => {
  await killQemusUnder(runtime);
  for (const dir of [runtime, dirOne, dirTen]) rmSync(dir, { recursive: true, force: true });
});
const qvmEnv: NodeJS.ProcessEnv = {
  ...process.env,
  QVM_RUNTIME_DIR: runtime,
  QVM_STATE_DIR: `${runtime}-state`,
  NO_COLOR: '1',
};
/**
 * qvm's environment without NODE_EXTRA_CA_CERTS, for the series that show this machine's certificate
 * bundle apart (Node parses it at every start-up; see bench/startup.ts). Undefined when it is not set.
 */
const BARE_STOP = new URL('./bare-stop.mjs', import.meta.url).pathname;
const cleanEnv = process.env.NODE_EXTRA_CA_CERTS ? withoutExtraCaCerts(qvmEnv) : undefined;
const qvm = async (cwd: string, args: string[], check?: (out: string) => boolean, env = qvmEnv) =>
  expectOk(
    `qvm ${args.join(' ')}`,
    await run(process.execPath, [new URL('../bin/qvm.js', import.meta.url).pathname, ...args], {
      cwd,
      env,
      timeoutMs: 180_000,
    }),
    check,
  );

const results: Results = {
  title: 'qvm side by side with libvirt (virsh), same guest and QEMU, interleaved',
  machine,
  params,
  series: {},
  notes,
};

try {
  await ensureLibvirt();
  notes.push(await probePasst());
  const ports = await freePortsDistinct(4 + 2 * PARALLEL);
  const [lvPort, qvmPort, lvExtra, qvmExtra] = ports.splice(0, 4) as [number, number, number, number];
  const lvTenPorts = ports.splice(0, PARALLEL);
  const qvmTenPorts = ports.splice(0, PARALLEL);

  const lv = `${PREFIX}web`;
  const xmlDir = mkdtempSync(path.join(tmpdir(), 'qvm-bench-lvxml-'));
  onCleanup(() => rmSync(xmlDir, { recursive: true, force: true }));
  const define = async (name: string, port: number) => {
    const file = path.join(xmlDir, `${name}.xml`);
    writeFileSync(file, domainXml(name, port));
    await virsh(['define', file]);
  };
  await define(lv, lvPort);
  const web = (forwards: number[]) =>
    writeVms(path.join(dirOne, 'm.yaml'), {
      web: { ...demoVm('web', { forwards: forwards.map((host) => ({ host, guest: 80 })) }), disk: undefined },
    });
  web([qvmPort]);
  // The runtime root's one-time probes, outside the timings.
  await qvm(dirOne, ['status', '-f', 'm.yaml']);

  // Both running and serving before (a) to (c).
  await virsh(['start', lv]);
  await qvm(dirOne, ['apply', '-f', 'm.yaml']);
  await Promise.all([firstAnswer(lvPort), firstAnswer(qvmPort)]);
  const log = `/var/log/libvirt/qemu/${lv}.log`;
  if (existsSync(log)) {
    const taints = [...readFileSync(log, 'utf8').matchAll(/tainted: (\S+)/g)].map((m) => m[1]);
    if (taints.length)
      notes.push(`libvirt marks the domain tainted: ${[...new Set(taints)].join(', ')} (${log}).`);
  }

  const labels = {
    lvMonitor: "virsh qemu-monitor-command --hmp DOM 'info usernet'",
    qvmMonitor: 'qvm monitor VM info usernet',
    lvList: 'virsh list --all (1 VM)',
    qvmList: 'qvm status (1 VM)',
    lvForward: "virsh qemu-monitor-command --hmp DOM 'hostfwd_add ...' until HTTP answers",
    qvmForward: 'edit manifest + qvm apply until HTTP answers',
    qvmForwardClean: 'edit manifest + qvm apply until HTTP answers, without NODE_EXTRA_CA_CERTS',
    lvStart: 'virsh start until HTTP answers',
    qvmStart: 'qvm apply (start) until HTTP answers',
    qvmLeanStart: 'qvm apply (start, args: [-vga, none]) until HTTP answers',
    lvStop: 'virsh shutdown until QEMU is gone',
    qvmStop: 'qvm destroy (graceful) until QEMU is gone',
    qvmLeanStop: 'qvm destroy (graceful, args: [-vga, none]) until QEMU is gone',
    bareStop: 'bare Node QMP script (bench/bare-stop.mjs): powerdown, SHUTDOWN, quit, until QEMU is gone',
    bareStopClean:
      'bare Node QMP script (bench/bare-stop.mjs) until QEMU is gone, without NODE_EXTRA_CA_CERTS',
    qvmStartClean: 'qvm apply (start) until HTTP answers, without NODE_EXTRA_CA_CERTS',
    qvmStopClean: 'qvm destroy (graceful) until QEMU is gone, without NODE_EXTRA_CA_CERTS',
    lvStartTen: `virsh start × ${PARALLEL} in parallel, commands returned`,
    qvmStartTen: `qvm apply of ${PARALLEL} VMs, command returned`,
    lvUpTen: `virsh start × ${PARALLEL} in parallel until all answer HTTP`,
    qvmUpTen: `qvm apply of ${PARALLEL} VMs until all answer HTTP`,
    lvStopTen: `virsh shutdown × ${PARALLEL} in parallel until all QEMUs are gone`,
    qvmStopTen: `qvm destroy of ${PARALLEL} VMs until all QEMUs are gone`,
    bareStopTen: `bare Node QMP script (bench/bare-stop.mjs), ${PARALLEL} VMs at once, until all QEMUs are gone`,
  };

  // (a) one monitor command, (b) list.
  console.log('  (a) monitor command, (b) list');
  const quick = await interleave(
    {
      [labels.lvMonitor]: () => virsh(['qemu-monitor-command', '--hmp', lv, 'info usernet'], printedForward),
      [labels.qvmMonitor]: () =>
        qvm(dirOne, ['monitor', '-f', 'm.yaml', 'web', 'info', 'usernet'], printedForward),
      [labels.lvList]: () => virsh(['list', '--all'], (out) => new RegExp(`${lv}\\s+running`).test(out)),
      [labels.qvmList]: () => qvm(dirOne, ['status', '-f', 'm.yaml'], (out) => /^web\s+running\s/m.test(out)),
    },
    QUICK_ROUNDS,
    { onRound: progress('quick') },
  );

  // (c) a forward added to the running VM, until the guest answers through it; removed again untimed.
  console.log('  (c) add a forward live');
  const qvmForward = (env: NodeJS.ProcessEnv) => ({
    selfTimed: true as const,
    run: async () => {
      const start = performance.now();
      web([qvmPort, qvmExtra]);
      await qvm(
        dirOne,
        ['apply', '-f', 'm.yaml'],
        (out) => out.includes('updated live: 1 forward added'),
        env,
      );
      return (await firstAnswer(qvmExtra, 10_000, 5)) - start;
    },
    after: async () => {
      web([qvmPort]);
      await qvm(dirOne, ['apply', '-f', 'm.yaml'], (out) => out.includes('updated live'), env);
    },
  });
  const forward = await interleave(
    {
      [labels.lvForward]: {
        selfTimed: true,
        run: async () => {
          const start = performance.now();
          await virsh(
            ['qemu-monitor-command', '--hmp', lv, `hostfwd_add net0 tcp:127.0.0.1:${lvExtra}-:80`],
            (out) => out.trim() === '',
          );
          return (await firstAnswer(lvExtra, 10_000, 5)) - start;
        },
        after: () =>
          virsh(
            ['qemu-monitor-command', '--hmp', lv, `hostfwd_remove net0 tcp:127.0.0.1:${lvExtra}`],
            (out) => out.includes('removed'),
          ),
      },
      [labels.qvmForward]: qvmForward(qvmEnv),
      ...(cleanEnv ? { [labels.qvmForwardClean]: qvmForward(cleanEnv) } : {}),
    },
    FORWARD_ROUNDS,
    { onRound: progress('forward') },
  );

  // (d) start until the first HTTP answer and (e) graceful stop until the process is gone, both tools in a
  // shuffled order each round, plus qvm without its VGA (`-vga none`: the devices this domain gives QEMU;
  // qvm keeps a VGA by default for qvm screenshot).
  console.log('  (d) start until HTTP, (e) graceful stop');
  // A forward added live, to see whether it survives a restart of the domain.
  await virsh(
    ['qemu-monitor-command', '--hmp', lv, `hostfwd_add net0 tcp:127.0.0.1:${lvExtra}-:80`],
    (out) => out.trim() === '',
  );
  await virsh(['destroy', lv]);
  await qvm(dirOne, ['destroy', '-f', 'm.yaml']);
  let checkedRestart = false;
  const lean = mkdtempSync(path.join(tmpdir(), 'qvm-bench-lvlean-'));
  onCleanup(() => rmSync(lean, { recursive: true, force: true }));
  writeVms(path.join(lean, 'm.yaml'), {
    web: {
      ...demoVm('web', { forwards: [{ host: qvmExtra, guest: 80 }], args: ['-vga', 'none'] }),
      disk: undefined,
    },
  });
  const boot: Record<string, number[]> = Object.fromEntries(
    [
      labels.lvStart,
      labels.qvmStart,
      labels.qvmLeanStart,
      labels.lvStop,
      labels.qvmStop,
      labels.qvmLeanStop,
      labels.bareStop,
      ...(cleanEnv ? [labels.qvmStartClean, labels.qvmStopClean, labels.bareStopClean] : []),
    ].map((l) => [l, []]),
  );
  const cycles = {
    libvirt: async () => {
      const t0 = performance.now();
      const started = run('virsh', [...CONNECT, 'start', lv], { timeoutMs: 120_000 });
      const answered = await firstAnswer(lvPort);
      expectOk('virsh start', await started);
      boot[labels.lvStart]!.push(answered - t0);
      if (!checkedRestart) {
        checkedRestart = true;
        const usernet = (await virsh(['qemu-monitor-command', '--hmp', lv, 'info usernet'], printedForward))
          .stdout;
        notes.push(
          usernet.includes(` ${lvExtra} `)
            ? 'A forward added with hostfwd_add was still there after the domain was stopped and started again.'
            : 'A forward added with hostfwd_add is gone after the domain is stopped and started again: it lives only in the running QEMU, not in the domain XML.',
        );
        const argv = readFileSync(`/proc/${libvirtPid(lv)}/cmdline`, 'utf8').split('\0');
        if (argv.includes('-nodefaults'))
          notes.push(
            'libvirt starts QEMU with -nodefaults and explicit devices, as qvm does; this domain has no video device, and the third start series shows qvm without its VGA (args: [-vga, none]).',
          );
      }
      await sleep(500);
      const pid = libvirtPid(lv)!;
      const t1 = performance.now();
      await virsh(['shutdown', lv]);
      await untilGone([pid]);
      boot[labels.lvStop]!.push(performance.now() - t1);
      await untilShutOff([lv]);
    },
    qvm: async () => cycle(dirOne, qvmPort, labels.qvmStart, labels.qvmStop),
    lean: async () => cycle(lean, qvmExtra, labels.qvmLeanStart, labels.qvmLeanStop),
    ...(cleanEnv
      ? { clean: async () => cycle(dirOne, qvmPort, labels.qvmStartClean, labels.qvmStopClean, cleanEnv) }
      : {}),
    bare: async () => bareCycle(labels.bareStop, process.env),
    ...(cleanEnv ? { bareClean: async () => bareCycle(labels.bareStopClean, cleanEnv) } : {}),
  };
  /**
   * The floor of a graceful stop by any Node CLI: qvm starts the VM (untimed), a bare script that only speaks
   * QMP stops it (timed, like the others, until the process is gone), and qvm then forgets it (untimed).
   */
  async function bareCycle(label: string, env: NodeJS.ProcessEnv) {
    const started = run(
      process.execPath,
      [new URL('../bin/qvm.js', import.meta.url).pathname, 'apply', '-f', 'm.yaml'],
      { cwd: dirOne, env: qvmEnv, timeoutMs: 120_000 },
    );
    await firstAnswer(qvmPort);
    expectOk('qvm apply', await started);
    await sleep(500);
    const pid = vmPid(runtime, 'web')!;
    const socket = qmpSocketOf(pid);
    const t1 = performance.now();
    expectOk('bare-stop', await run(process.execPath, [BARE_STOP, socket], { env, timeoutMs: 60_000 }));
    await untilGone([pid]);
    boot[label]!.push(performance.now() - t1);
    await qvm(dirOne, ['destroy', '-f', 'm.yaml']);
  }
  async function cycle(cwd: string, port: number, startLabel: string, stopLabel: string, env = qvmEnv) {
    const t0 = performance.now();
    const started = run(
      process.execPath,
      [new URL('../bin/qvm.js', import.meta.url).pathname, 'apply', '-f', 'm.yaml'],
      { cwd, env, timeoutMs: 120_000 },
    );
    const answered = await firstAnswer(port);
    expectOk('qvm apply', await started);
    boot[startLabel]!.push(answered - t0);
    await sleep(500);
    const pid = vmPid(runtime, 'web')!;
    const t1 = performance.now();
    await qvm(cwd, ['destroy', '-f', 'm.yaml'], (out) => out.includes('guest powered off'), env);
    await untilGone([pid]);
    boot[stopLabel]!.push(performance.now() - t1);
  }
  for (let round = 0; round < BOOT_ROUNDS; round++) {
    for (const cycle of shuffle(Object.values(cycles))) await cycle();
    progress('boot')(round + 1, BOOT_ROUNDS);
  }

  // (f) 10 VMs started and stopped at once.
  console.log(`  (f) start and stop ${PARALLEL} at once`);
  const lvTen = lvTenPorts.map((_, i) => `${PREFIX}p${i}`);
  for (const [i, name] of lvTen.entries()) await define(name, lvTenPorts[i]!);
  writeVms(
    path.join(dirTen, 'm.yaml'),
    Object.fromEntries(
      qvmTenPorts.map((port, i) => [
        `web${i}`,
        { ...demoVm(`web${i}`, { forwards: [{ host: port, guest: 80 }] }), disk: undefined },
      ]),
    ),
  );
  const ten: Record<string, number[]> = Object.fromEntries(
    [
      labels.lvStartTen,
      labels.qvmStartTen,
      labels.lvUpTen,
      labels.qvmUpTen,
      labels.lvStopTen,
      labels.qvmStopTen,
      labels.bareStopTen,
    ].map((l) => [l, []]),
  );
  /**
   * When each port first answers HTTP. Watched from before the start command, awaited after it: a failure
   * names the side, and waits until then to be reported (never an unhandled rejection mid-start).
   */
  const allAnswer = (side: string, ports: number[]) => {
    const answers = Promise.all(ports.map((p) => firstAnswer(p, 300_000, 100))).catch((error: Error) => {
      throw new Error(`${side}, ${PARALLEL} VMs at once: ${error.message}`);
    });
    answers.catch(() => {});
    return answers;
  };
  const parallel = {
    libvirt: async () => {
      const t0 = performance.now();
      const answers = allAnswer('libvirt', lvTenPorts);
      await Promise.all(lvTen.map((name) => virsh(['start', name])));
      ten[labels.lvStartTen]!.push(performance.now() - t0);
      ten[labels.lvUpTen]!.push(Math.max(...(await answers)) - t0);
      await sleep(1000);
      const pids = lvTen.map((name) => libvirtPid(name)!);
      const t1 = performance.now();
      await Promise.all(lvTen.map((name) => virsh(['shutdown', name])));
      await untilGone(pids);
      ten[labels.lvStopTen]!.push(performance.now() - t1);
      await untilShutOff(lvTen);
    },
    qvm: async () => {
      const t0 = performance.now();
      const answers = allAnswer('qvm', qvmTenPorts);
      await qvm(dirTen, ['apply', '-f', 'm.yaml']);
      ten[labels.qvmStartTen]!.push(performance.now() - t0);
      ten[labels.qvmUpTen]!.push(Math.max(...(await answers)) - t0);
      await sleep(1000);
      const pids = qvmTenPorts.map((_, i) => vmPid(runtime, `web${i}`)!);
      const t1 = performance.now();
      await qvm(dirTen, ['destroy', '-f', 'm.yaml']);
      await untilGone(pids);
      ten[labels.qvmStopTen]!.push(performance.now() - t1);
    },
    // The floor: qvm starts them (untimed), one bare Node process stops them all, qvm forgets them (untimed).
    bare: async () => {
      const answers = allAnswer('bare', qvmTenPorts);
      await qvm(dirTen, ['apply', '-f', 'm.yaml']);
      await answers;
      await sleep(1000);
      const pids = qvmTenPorts.map((_, i) => vmPid(runtime, `web${i}`)!);
      const sockets = pids.map(qmpSocketOf);
      const t1 = performance.now();
      expectOk('bare-stop', await run(process.execPath, [BARE_STOP, ...sockets], { timeoutMs: 60_000 }));
      await untilGone(pids);
      ten[labels.bareStopTen]!.push(performance.now() - t1);
      await qvm(dirTen, ['destroy', '-f', 'm.yaml']);
    },
  };
  for (let round = 0; round < PARALLEL_ROUNDS; round++) {
    for (const name of shuffle(Object.keys(parallel) as (keyof typeof parallel)[])) await parallel[name]();
    progress('parallel')(round + 1, PARALLEL_ROUNDS);
  }

  results.series = { ...seriesOf(quick), ...seriesOf(forward), ...seriesOf(boot), ...seriesOf(ten) };
  const s = results.series;
  results.ratios = {
    'monitor command: qvm / virsh': ratio(s, labels.qvmMonitor, labels.lvMonitor),
    'list: qvm status / virsh list': ratio(s, labels.qvmList, labels.lvList),
    'add a forward: qvm / virsh': ratio(s, labels.qvmForward, labels.lvForward),
    'start until HTTP: qvm / libvirt': ratio(s, labels.qvmStart, labels.lvStart),
    'start until HTTP: qvm without VGA / libvirt': ratio(s, labels.qvmLeanStart, labels.lvStart),
    'graceful stop: qvm / libvirt': ratio(s, labels.qvmStop, labels.lvStop),
    'graceful stop: bare Node script / libvirt': ratio(s, labels.bareStop, labels.lvStop),
    ...(cleanEnv
      ? {
          'add a forward: qvm without NODE_EXTRA_CA_CERTS / virsh': ratio(
            s,
            labels.qvmForwardClean,
            labels.lvForward,
          ),
          'graceful stop: qvm without NODE_EXTRA_CA_CERTS / libvirt': ratio(
            s,
            labels.qvmStopClean,
            labels.lvStop,
          ),
          'graceful stop: bare Node script without NODE_EXTRA_CA_CERTS / libvirt': ratio(
            s,
            labels.bareStopClean,
            labels.lvStop,
          ),
        }
      : {}),
    [`start ${PARALLEL}, commands returned: qvm / libvirt`]: ratio(s, labels.qvmStartTen, labels.lvStartTen),
    [`start ${PARALLEL} until all answer: qvm / libvirt`]: ratio(s, labels.qvmUpTen, labels.lvUpTen),
    [`stop ${PARALLEL}: qvm / libvirt`]: ratio(s, labels.qvmStopTen, labels.lvStopTen),
    [`stop ${PARALLEL}: bare Node script / libvirt`]: ratio(s, labels.bareStopTen, labels.lvStopTen),
  };
  results.targets = [
    target(
      'edit + qvm apply of one forward <= 4× virsh hostfwd_add',
      { ratio: 'add a forward: qvm / virsh' },
      { max: 4 },
      results,
    ),
    target('qvm status <= 6× virsh list', { ratio: 'list: qvm status / virsh list' }, { max: 6 }, results),
    target(
      'start until first HTTP answer <= 1.0× libvirt',
      { ratio: 'start until HTTP: qvm / libvirt' },
      { max: 1 },
      results,
    ),
    target(
      'graceful stop stays ahead of libvirt (< 1×)',
      { ratio: 'graceful stop: qvm / libvirt' },
      { max: 1 },
      results,
    ),
    target(
      `start ${PARALLEL} in parallel stays ahead (< 1×)`,
      { ratio: `start ${PARALLEL} until all answer: qvm / libvirt` },
      { max: 1 },
      results,
    ),
    target(
      `stop ${PARALLEL} in parallel stays ahead (< 1×)`,
      { ratio: `stop ${PARALLEL}: qvm / libvirt` },
      { max: 1 },
      results,
    ),
  ];
  notes.push(
    'The qvm side runs as a whole process per command (Node start-up included); virsh is a thin client of the resident libvirtd, whose own CPU time is not in the virsh figures.',
  );
  if (cleanEnv)
    notes.push(
      `This machine sets NODE_EXTRA_CA_CERTS=${process.env.NODE_EXTRA_CA_CERTS}, which Node parses at every start-up (bench/startup.ts measures how long). The targets are judged with it, as the machine is set up; the series "without NODE_EXTRA_CA_CERTS" run the same qvm commands, in the same rounds, with it unset.`,
    );
  report(writeResults('peer-libvirt', results), results);
} catch (error) {
  if (!(error instanceof Unavailable)) throw error;
  notes.push(`libvirt could not be set up here: ${error.message}. Nothing was measured.`);
  console.error(`peer-libvirt: ${error.message}`);
  report(writeResults('peer-libvirt', results), results);
} finally {
  await runCleanups();
}

/** The QMP socket of a QEMU qvm started: next to its pidfile, <runtime>/<namespace>/<vm>/qmp.sock. */
function qmpSocketOf(pid: number): string {
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  return path.join(path.dirname(argv[argv.indexOf('-pidfile') + 1]!), 'qmp.sock');
}

function shuffle<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
