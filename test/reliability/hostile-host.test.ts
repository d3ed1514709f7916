/**
 * Faults found by hostile testing that let another user or a hostile peer in, or gave wrong answers (issue
 * "never lose a disk", items 9 to 16), each reproduced for real: runtime folders owned by someone else, a lock
 * another user could hold, a serial log without bound, an adopted monitor that is another VM's, a full
 * runtime folder, a QMP peer that sends garbage, an HMP line longer than QEMU reads, and the small ones.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chownSync,
  existsSync,
  mkdirSync,
  readFileSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qvm } from '../helpers/cli.js';
import { positionOf } from '../helpers/env.js';
import {
  bareVm,
  hasStackTrace,
  mountTmpfs,
  qemusWithPidfile,
  remount,
  requireRoot,
  sandbox,
  spawnHelper,
  spawnQemu,
  statusJson,
  until,
  warmUp,
  writeManifest,
} from './support.js';

const box = sandbox('qhh');
/** The unprivileged user the "other user" tests act as. */
const NOBODY = 65534;

beforeAll(() => warmUp(box));
afterAll(() => box.cleanup());

/** Runs a command as the unprivileged user `nobody` (the tests run as root in CI). */
function asNobody(command: string, args: string[]) {
  requireRoot('runs a command as the user nobody (setpriv)');
  return spawnSync(
    'setpriv',
    [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', command, ...args],
    {
      encoding: 'utf8',
    },
  );
}

describe.concurrent('9. runtime folders are checked by every command that reads them', () => {
  it('a namespace folder another user owns (with a planted VM folder) is refused by status, plan, monitor, logs and destroy', {
    timeout: 60_000,
  }, async () => {
    const dir = path.join(box.root, 'planted');
    const victim = path.join(dir, 'victim.txt');
    mkdirSync(dir, { recursive: true });
    writeFileSync(victim, 'not a disk\n');
    const file = writeManifest(path.join(dir, 'm.yaml'), {
      web: bareVm({ disk: { path: 'victim.txt', format: 'raw' } }),
    });
    const ns = path.dirname(box.vmDir(file, 'web'));
    mkdirSync(path.join(ns, 'web'), { recursive: true, mode: 0o700 });
    writeFileSync(
      path.join(ns, 'web', 'disks.json'),
      JSON.stringify([{ path: victim, dev: 0, ino: 0, format: 'raw', created: true, at: '' }]),
    );
    requireRoot('gives a runtime folder to another user (chown)');
    chownSync(path.join(ns, 'web'), NOBODY, NOBODY);
    chownSync(ns, NOBODY, NOBODY);
    for (const args of [
      ['status'],
      ['plan'],
      ['monitor', 'web', 'info', 'status'],
      ['logs', 'web'],
      ['destroy', '--delete-disks'],
      ['apply'],
    ]) {
      const r = await box.run([...args, '-f', file], dir);
      expect(r.exitCode, args.join(' ')).toBe(1);
      expect(r.stderr, args.join(' ')).toContain(
        `error: ${ns} belongs to another user (uid ${NOBODY}); qvm keeps monitor sockets there`,
      );
      expect(hasStackTrace(r.stderr)).toBe(false);
    }
    expect(readFileSync(victim, 'utf8')).toBe('not a disk\n');
  });

  it('a VM folder another user planted in a folder of ours is refused too', async () => {
    const dir = path.join(box.root, 'planted-vm');
    const file = writeManifest(path.join(dir, 'm.yaml'), { web: bareVm() });
    const vmDir = box.vmDir(file, 'evil');
    mkdirSync(vmDir, { recursive: true, mode: 0o700 });
    requireRoot('gives a VM folder to another user (chown)');
    chownSync(vmDir, NOBODY, NOBODY);
    const r = await box.run(['status', '-f', file], dir);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`error: ${vmDir} belongs to another user (uid ${NOBODY})`);
  });
});

describe.concurrent('10. no other user can block qvm', () => {
  it('the lock is a file only its owner can open; the old abstract socket name no longer matters', {
    timeout: 60_000,
  }, async () => {
    const dir = path.join(box.root, 'lock');
    const file = writeManifest(path.join(dir, 'm.yaml'), { web: bareVm() });
    expect((await box.run(['apply', '-f', file], dir)).exitCode).toBe(0);
    const lock = path.join(path.dirname(box.vmDir(file, 'web')), 'lock');
    expect(statSync(lock).mode & 0o777).toBe(0o600);
    const taken = asNobody('flock', ['--nonblock', lock, 'true']);
    expect(taken.status).not.toBe(0);
    expect(taken.stderr).toContain('Permission denied');
    // What the old lock was: an abstract socket with a predictable name. Another user listening on it now
    // changes nothing.
    const id = path.basename(path.dirname(box.vmDir(file, 'web')));
    requireRoot('listens on a socket as the user nobody (setpriv)');
    const squatter = spawnHelper('setpriv', [
      `--reuid=${NOBODY}`,
      `--regid=${NOBODY}`,
      '--clear-groups',
      process.execPath,
      '-e',
      `require('net').createServer().listen('\\0qvm-0-${id}', () => console.log('listening'))`,
    ]);
    await until('squatter listening', () => squatter.stdout().includes('listening') || !!squatter.exit);
    const r = await box.run(['apply', '--no-wait', '-f', file], dir);
    expect(r).toMatchObject({ exitCode: 0, stderr: '' });
    expect((await box.run(['destroy', '-f', file], dir)).exitCode).toBe(0);
  });
});

describe.concurrent('11. the serial log is capped, and logs are streamed', () => {
  it('a 600 MB serial log is cut to its cap by the next command, and `qvm logs` prints it without reading it whole', {
    timeout: 60_000,
  }, async () => {
    const dir = path.join(box.root, 'serial');
    const file = writeManifest(path.join(dir, 'm.yaml'), { web: bareVm() });
    expect((await box.run(['apply', '-f', file], dir)).exitCode).toBe(0);
    const log = path.join(box.vmDir(file, 'web'), 'serial.log');
    writeFileSync(log, '');
    truncateSync(log, 600 * 2 ** 20); // what a guest printing in a loop leaves after an hour
    writeFileSync(log, 'the last line\n', { flag: 'a' });
    expect((await box.run(['status', '-f', file], dir)).exitCode).toBe(0);
    expect(statSync(log).size).toBeLessThanOrEqual(8 * 2 ** 20);
    const rotated = `${log}.1`;
    expect(statSync(rotated).size).toBe(8 * 2 ** 20);
    expect(readFileSync(rotated, 'utf8').endsWith('the last line\n')).toBe(true);
    const logs = await box.run(['logs', 'web', '--serial', '-f', file], dir);
    expect(logs.exitCode).toBe(0);
    expect(logs.stdout).toContain('the last line');
    expect(hasStackTrace(logs.stderr)).toBe(false);
    expect((await box.run(['destroy', '-f', file], dir)).exitCode).toBe(0);
  });
});

describe.concurrent('12. an adopted VM whose monitor is not its own', () => {
  it("is refused when the socket is another VM's, and two entries reaching one QEMU are refused", {
    timeout: 60_000,
  }, async () => {
    const dir = path.join(box.root, 'adopt');
    const file = writeManifest(path.join(dir, 'm.yaml'), { web: bareVm() });
    expect((await box.run(['apply', '-f', file], dir)).exitCode).toBe(0);
    const pid = box.readPid(file, 'web');
    const hmp = path.join(box.vmDir(file, 'web'), 'hmp.sock');
    writeManifest(file, { web: bareVm(), spy: { monitor: hmp, state: 'stopped' } });
    const plan = await box.run(['plan', '-f', file], dir);
    expect(plan.exitCode).toBe(1);
    expect(plan.stdout).toContain(`vms.spy.monitor: monitor ${hmp} is inside qvm's runtime folder`);
    expect((await box.run(['apply', '-f', file], dir)).exitCode).toBe(1);
    expect(box.readPid(file, 'web')).toBe(pid);
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toEqual([pid]);

    const outside = path.join(dir, 'outside');
    mkdirSync(outside, { recursive: true });
    const qemu = spawnQemu([
      '-qmp',
      `unix:${outside}/qmp.sock,server=on,wait=off`,
      '-monitor',
      `unix:${outside}/hmp.sock,server=on,wait=off`,
    ]);
    await until(
      'outside QEMU sockets',
      () => existsSync(`${outside}/qmp.sock`) && existsSync(`${outside}/hmp.sock`),
    );
    writeManifest(file, {
      web: bareVm(),
      a: { monitor: `${outside}/qmp.sock` },
      b: { monitor: `${outside}/hmp.sock` },
    });
    const twice = await box.run(['plan', '-f', file], dir);
    expect(twice.exitCode).toBe(1);
    expect(twice.stdout).toContain(
      `vms.b.monitor: monitor ${outside}/hmp.sock reaches the same QEMU (pid ${qemu.pid}) as VM a`,
    );
    qemu.child.kill('SIGKILL');
    writeManifest(file, { web: bareVm() });
    expect((await box.run(['destroy', '-f', file], dir)).exitCode).toBe(0);
  });
});

describe.concurrent('13. a full runtime folder', () => {
  it('is a located error in apply, with no QEMU left untracked, and watch survives it', {
    timeout: 90_000,
  }, async () => {
    const dir = path.join(box.root, 'enospc');
    const runtime = mountTmpfs(path.join(box.root, 'rt-full'), 'size=256k,mode=0700');
    const env = { QVM_RUNTIME_DIR: runtime, QVM_STATE_DIR: `${box.runtime}-state` };
    const file = writeManifest(path.join(dir, 'm.yaml'), { web: bareVm() });
    // Probe KVM and make the folders while there is room, then fill the rest.
    expect((await qvm(['status', '-f', file], { cwd: dir, env })).exitCode).toBe(0);
    spawnSync('dd', ['if=/dev/zero', `of=${runtime}/filler`, 'bs=4k', 'status=none']);
    const r = await qvm(['apply', '-f', file], { cwd: dir, env });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/no space left on device|No space left on device/);
    expect(hasStackTrace(r.stdout + r.stderr)).toBe(false);
    expect(
      qemusWithPidfile(path.join(box.vmDir(file, 'web').replace(box.runtime, runtime), 'qemu.pid')),
    ).toEqual([]);

    const watch = spawnHelper(
      process.execPath,
      [path.resolve('bin/qvm.js'), 'watch', '-f', file, '--json', '--interval', '1s'],
      env,
      dir,
    );
    await until(
      'watch reports the failed pass',
      () => /"event":"(action-failed|error)"/.test(watch.stdout()),
      30_000,
    );
    remount(runtime, 'size=64m');
    await until(
      'watch starts the VM once there is room',
      () => watch.stdout().includes('"event":"action-applied"'),
      30_000,
    );
    expect(watch.exit).toBeUndefined();
    expect(watch.stdout()).not.toContain('internal error');
    watch.child.kill('SIGTERM');
    await watch.exited;
    expect((await qvm(['destroy', '-f', file], { cwd: dir, env })).exitCode).toBe(0);
  });
});

/** A fake monitor: greets as QMP, answers qmp_capabilities, then sends `reply` for the next request. */
async function fakeQmp(socketPath: string, reply: (id: string) => string): Promise<net.Server> {
  const server = net.createServer((socket) => {
    socket.write(
      '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}\r\n',
    );
    let buffer = '';
    socket.on('data', (chunk) => {
      buffer += chunk;
      for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
        const request = JSON.parse(buffer.slice(0, i));
        buffer = buffer.slice(i + 1);
        socket.write(
          `${request.execute === 'qmp_capabilities' ? JSON.stringify({ return: {}, id: request.id }) : reply(request.id)}\r\n`,
        );
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return server;
}

describe.concurrent('14. a QMP peer that sends a message of the wrong shape', () => {
  it('null, a reply of the wrong type, an error without an id: each is a clear message and an exit status, never a crash', {
    timeout: 60_000,
  }, async () => {
    const dir = path.join(box.root, 'peer');
    mkdirSync(dir, { recursive: true });
    const cases: [string, (id: string) => string, number, string][] = [
      ['null', () => 'null', 2, 'QEMU sent null, not a QMP message'],
      [
        'number',
        (id) => JSON.stringify({ return: 5, id }),
        2,
        'QEMU answered "info status" with 5, not text',
      ],
      [
        'no-id',
        () => JSON.stringify({ error: { class: 'GenericError', desc: 'JSON parse error' } }),
        1,
        'JSON parse error',
      ],
      [
        'error-shape',
        (id) => JSON.stringify({ error: 'boom', id }),
        2,
        'QEMU sent an error reply without a description',
      ],
    ];
    for (const [name, reply, code, message] of cases) {
      const socket = path.join(dir, `${name}.sock`);
      const server = await fakeQmp(socket, reply);
      const r = await qvm(['monitor', '--socket', socket, '--timeout', '30s', 'info', 'status']);
      server.close();
      expect({ name, code: r.exitCode }).toEqual({ name, code });
      expect(r.stderr).toContain(message);
      expect(hasStackTrace(r.stderr)).toBe(false);
    }
  });

  it('against real QEMU, an error reply without an id (a request QEMU cannot parse) fails with its message, not at the 1h timeout', {
    timeout: 30_000,
  }, async () => {
    const dir = path.join(box.root, 'noid');
    mkdirSync(dir, { recursive: true });
    const qemu = spawnQemu(['-qmp', `unix:${dir}/qmp.sock,server=on,wait=off`]);
    await until('QMP socket', () => existsSync(`${dir}/qmp.sock`));
    const r = await qvm([
      'monitor',
      '--socket',
      `${dir}/qmp.sock`,
      '--timeout',
      '1h',
      '{"execute":"query-status","arguments":{"x":"\\ud800"}}',
    ]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe('JSON parse error, \\ud800 is not a valid Unicode character\n');
    qemu.child.kill('SIGKILL');
  });
});

describe.concurrent('15. an HMP line longer than QEMU reads', () => {
  it('is refused before anything is sent: exit 1 (not the 1h timeout), and QEMU ran nothing of it', {
    timeout: 30_000,
  }, async () => {
    const dir = path.join(box.root, 'long');
    mkdirSync(dir, { recursive: true });
    const qemu = spawnQemu([
      '-monitor',
      `unix:${dir}/hmp.sock,server=on,wait=off`,
      '-netdev',
      'user,id=net0',
      '-device',
      'e1000,netdev=net0,romfile=',
    ]);
    await until('HMP socket', () => existsSync(`${dir}/hmp.sock`));
    const command = `hostfwd_add tcp:127.0.0.1:18093-:80${' '.repeat(5000)}x`;
    const r = await qvm(['monitor', '--socket', `${dir}/hmp.sock`, '--timeout', '1h', command]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe(
      `the command is ${Buffer.byteLength(command)} bytes, and an HMP monitor reads at most 4095 bytes of a line (it would run the first 4095); send it through a QMP socket\n`,
    );
    const usernet = await qvm(['monitor', '--socket', `${dir}/hmp.sock`, 'info', 'usernet']);
    expect(usernet.stdout).not.toContain('18093');
    qemu.child.kill('SIGKILL');
  });
});

describe.concurrent('16. the small ones', () => {
  it('`qvm monitor VM quit` exits 0 when QEMU quit', { timeout: 30_000 }, async () => {
    const dir = path.join(box.root, 'quit');
    const file = writeManifest(path.join(dir, 'm.yaml'), { web: bareVm() });
    expect((await box.run(['apply', '-f', file], dir)).exitCode).toBe(0);
    const pid = box.readPid(file, 'web');
    const r = await box.run(['monitor', '-f', file, 'web', 'quit'], dir);
    expect(r).toMatchObject({ exitCode: 0, stderr: '' });
    await until('QEMU gone', () => qemusWithPidfile(box.pidfile(file, 'web')).length === 0);
    expect((await statusJson(box, file))[0]).toMatchObject({ name: 'web', pid: null });
    expect(pid).toBeGreaterThan(1);
  });

  it('one host port claimed in two files of a folder is a located error', async () => {
    const dir = path.join(box.root, 'folder');
    const a = writeManifest(path.join(dir, 'a.yaml'), { one: bareVm({ forwards: ['tcp::18094-:80'] }) });
    writeManifest(path.join(dir, 'b.yaml'), { two: bareVm({ forwards: [{ host: 18094, guest: 22 }] }) });
    const r = await box.run(['validate', '-f', dir], dir);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(
      `vms.two.forwards[0]: tcp 127.0.0.1:18094 -> :22 claims the same host port as vms.one.forwards[0] (in ${a}:${positionOf(a, 'tcp::18094').split(':')[0]})`,
    );
  });

  it('a VM renamed keeps its disk: the old one stops first (with --prune), else the plan says so', {
    timeout: 60_000,
  }, async () => {
    const dir = path.join(box.root, 'rename');
    const disk = path.join(dir, 'd.qcow2');
    const file = writeManifest(path.join(dir, 'm.yaml'), {
      old: bareVm({ disk: { path: disk, size: '16M' }, stopTimeout: '7s' }),
    });
    expect((await box.run(['apply', '-f', file], dir)).exitCode).toBe(0);
    writeManifest(file, { new: bareVm({ disk: { path: disk, size: '16M' } }) });
    const plan = await box.run(['plan', '-f', file], dir);
    expect(plan.exitCode).toBe(1);
    expect(plan.stdout).toContain(
      `  ! new   error: ${disk} is in use by VM old, which the manifest no longer lists; \`qvm apply --prune\` stops it first`,
    );
    // The stop of a VM the manifest no longer lists waits its recorded stop timeout, not the default.
    const json = JSON.parse((await box.run(['plan', '-f', file, '--prune', '-o', 'json'], dir)).stdout);
    expect(json.changes).toMatchObject([
      { action: 'start', vm: 'new', after: ['old'] },
      { action: 'stop', vm: 'old', stopTimeoutMs: 7000 },
    ]);
    const r = await box.run(['apply', '-f', file, '--prune'], dir);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(qemusWithPidfile(box.pidfile(file, 'old'))).toEqual([]);
    expect(qemusWithPidfile(box.pidfile(file, 'new'))).toHaveLength(1);
    expect((await box.run(['destroy', '-f', file], dir)).exitCode).toBe(0);
  });

  it('without QEMU installed, plan says so instead of planning a start, and qemu-img missing is named', {
    timeout: 30_000,
  }, async () => {
    const dir = path.join(box.root, 'noqemu');
    const file = writeManifest(path.join(dir, 'm.yaml'), {
      web: bareVm({ disk: { path: 'd.qcow2', size: '16M' } }),
    });
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', path.join(dir, 'd.qcow2'), '16M']);
    const bare = path.join(dir, 'bin');
    mkdirSync(bare, { recursive: true });
    execFileSync('ln', ['-sf', process.execPath, path.join(bare, 'node')]);
    const env = { PATH: bare, QVM_RUNTIME_DIR: box.runtime, QVM_STATE_DIR: `${box.runtime}-state` };
    const plan = await qvm(['plan', '-f', file], { cwd: dir, env, extendEnv: false });
    expect(plan.exitCode).toBe(1);
    expect(plan.stdout).toContain(
      'qemu-system-x86_64 is not installed, so no VM can start; install it with: sudo apt-get install -y --no-install-recommends qemu-system-x86',
    );
    const list = await qvm(['snapshot', 'list', 'web', '-f', file], { cwd: dir, env, extendEnv: false });
    expect(list.exitCode).toBe(1);
    expect(list.stderr).toBe(
      'error: qemu-img is not installed; install it with: sudo apt-get install -y --no-install-recommends qemu-utils\n',
    );
  });

  it('memory and disk sizes no host or QEMU can take are located errors', { timeout: 30_000 }, async () => {
    const dir = path.join(box.root, 'sizes');
    const file = writeManifest(path.join(dir, 'm.yaml'), {
      web: bareVm({ memory: '99T', disk: { path: 'd.qcow2', size: '2048T' } }),
    });
    const r = await box.run(['validate', '-f', file], dir);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(
      `${file}:${positionOf(file, '99T')}: vms.web.memory: must be at most 16T, got "99T"`,
    );
    expect(r.stderr).toContain(
      `${file}:${positionOf(file, '2048T')}: vms.web.disk.size: must be at most 1024T, got "2048T"`,
    );
    writeManifest(file, { web: bareVm({ memory: '4T' }) });
    const plan = await box.run(['plan', '-f', file], dir);
    expect(plan.exitCode).toBe(1);
    expect(plan.stdout).toContain('vms.web.memory: is 4T, more than this host has');
    expect((await statusJson(box, file))[0]!.state).toBe('stopped');
  });
});
