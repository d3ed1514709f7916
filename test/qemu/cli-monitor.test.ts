/**
 * `qvm monitor` and `qvm console` as a user runs them, against a QEMU started exactly as the classic recipe
 * does (HMP socket, -daemonize, a hostfwd on the command line).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qvm } from '../helpers/cli.js';
import { freePort, registerPid, removeDir, startBareVm, type TestVm, tempDir } from '../helpers/qemu.js';

// biome-ignore lint/suspicious/noControlCharactersInRegex: the point is that none of these reach the user
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f]/;

describe('qvm monitor on the classic recipe', () => {
  let dir: string;
  let socket: string;
  let sshPort: number;
  let webPort: number;
  beforeAll(async () => {
    dir = tempDir();
    socket = path.join(dir, 'mon.sock');
    sshPort = await freePort();
    webPort = await freePort();
    execFileSync('qemu-img', ['create', '-f', 'qcow2', path.join(dir, 'disk.qcow2'), '64M'], {
      stdio: 'ignore',
    });
    // The command line from the README's "before" story, with free ports and a pidfile for cleanup.
    await execa(
      'qemu-system-x86_64',
      [
        '-daemonize',
        '-monitor',
        `unix:${socket},server,nowait`,
        '-m',
        '256',
        '-hda',
        'disk.qcow2',
        '-display',
        'none',
        '-device',
        'e1000,netdev=net0',
        '-netdev',
        `user,id=net0,hostfwd=tcp::${sshPort}-:22`,
        '-pidfile',
        path.join(dir, 'pid'),
      ],
      { cwd: dir },
    );
    registerPid(Number(readFileSync(path.join(dir, 'pid'), 'utf8')));
  });
  afterAll(() => removeDir(dir));

  it('adds a forward and exits 0', async () => {
    const r = await qvm(['monitor', '--socket', socket, 'hostfwd_add', `tcp::${webPort}-:80`]);
    expect(r).toEqual({ exitCode: 0, stdout: '', stderr: '' });
  });

  it('prints info usernet as a clean table', async () => {
    const r = await qvm(['monitor', '--socket', socket, 'info', 'usernet']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain(`TCP[HOST_FORWARD]`);
    expect(r.stdout).toMatch(new RegExp(`\\* ${webPort} +10\\.0\\.2\\.15 +80`));
    expect(r.stdout).not.toMatch(CONTROL);
    expect(r.stdout.startsWith('Hub -1 (net0):\n')).toBe(true);
  });

  it("exits 1 with QEMU's message when the same forward is added again", async () => {
    const r = await qvm(['monitor', '--socket', socket, 'hostfwd_add', `tcp::${webPort}-:80`]);
    expect(r).toEqual({
      exitCode: 1,
      stdout: '',
      stderr: `Could not set up host forwarding rule 'tcp::${webPort}-:80'\n`,
    });
  });

  it('saves a snapshot that info snapshots lists', async () => {
    expect((await qvm(['monitor', '--socket', socket, 'savevm', 'snap2'])).exitCode).toBe(0);
    const r = await qvm(['monitor', '--socket', socket, 'info', 'snapshots']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^--\s+snap2\s/m);
  });

  it('runs a scripted console session from stdin', async () => {
    const r = await qvm(['console', '--socket', socket], {
      input: 'info status\nhostfwd_add bogus\ninfo name\n',
    });
    expect(r.stdout).toBe('VM status: running\n');
    expect(r.stderr).toBe("Invalid host forwarding rule 'bogus' (No : separators)\n");
    expect(r.exitCode).toBe(1);
  });
});

describe('qvm monitor exit codes', () => {
  let vm: TestVm;
  beforeAll(async () => {
    vm = await startBareVm();
  });

  it('exits 2 when the socket does not exist', async () => {
    const r = await qvm(['monitor', '--socket', '/nonexistent/mon.sock', 'info', 'status']);
    expect(r).toEqual({
      exitCode: 2,
      stdout: '',
      stderr: 'error: no monitor socket at /nonexistent/mon.sock: is the VM running?\n',
    });
  });

  it('speaks QMP too, including raw JSON', async () => {
    const status = await qvm(['monitor', '--socket', vm.qmp, 'info', 'status']);
    expect(status).toEqual({ exitCode: 0, stdout: 'VM status: running\n', stderr: '' });
    const json = await qvm(['monitor', '--socket', vm.qmp, '{"execute":"query-status"}']);
    expect(JSON.parse(json.stdout)).toMatchObject({ running: true, status: 'running' });
  });

  it('refuses a command with a newline and sends nothing', async () => {
    const r = await qvm(['monitor', '--socket', vm.qmp, 'info status\nquit']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe(
      'a monitor command must be one line without control characters (newline, carriage return, escape)\n',
    );
    expect((await qvm(['monitor', '--socket', vm.qmp, 'info', 'status'])).stdout).toBe(
      'VM status: running\n',
    );
  });

  it('exits 2 naming the --timeout it waited when QEMU is frozen', async () => {
    process.kill(vm.pid, 'SIGSTOP');
    const r = await qvm(['monitor', '--socket', vm.hmp, '--timeout', '1s', 'info', 'status']);
    process.kill(vm.pid, 'SIGCONT');
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/^error: QEMU did not greet on .* within 1s: it is frozen/);
  });

  it('prints help and version', async () => {
    expect((await qvm(['--version'])).stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
    for (const command of ['validate', 'monitor', 'console']) {
      const r = await qvm([command, '--help']);
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: qvm ${command}`));
    }
  });
});
