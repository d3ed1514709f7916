/**
 * `qvm logs` and `qvm snapshot` by hand, against real QEMU. logs: the serial console and QEMU's own messages,
 * each alone (--serial, --qemu) or both with headers, the previous run's too, and following: `-F` in a child
 * ended by SIGINT, and `-f` with no path (tail's spelling) in process, ended by an AbortSignal. snapshot: save
 * and list through the monitor while the VM runs; list and delete with qemu-img while it is stopped; the
 * refusals (a stopped VM cannot save, qvm's own tag, a tag that does not exist, a bad tag).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import pc from 'picocolors';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logsCommand } from '../../src/cli/logs.js';
import type { Output } from '../../src/cli/output.js';
import { demoVm } from '../helpers/env.js';
import { typeOnSerial } from '../helpers/watch.js';
import {
  bareVm,
  isRunning,
  killHard,
  qemusWithPidfile,
  sandbox,
  until,
  warmUp,
  writeManifest,
} from '../reliability/support.js';

const box = sandbox('qls');

beforeAll(() => warmUp(box));
afterAll(() => box.cleanup());

/** Snapshot tags in a qcow2 image, read with qemu-img (force-share: QEMU may hold it). */
function tagsOf(disk: string): string[] {
  const info = JSON.parse(
    execFileSync('qemu-img', ['info', '-U', '-f', 'qcow2', '--output=json', disk], { encoding: 'utf8' }),
  );
  return (info.snapshots ?? []).map((s: { name: string }) => s.name);
}

/** An Output that collects what a command prints. */
function captured(): Output & { text: () => string } {
  const out = new PassThrough();
  const err = new PassThrough();
  let text = '';
  out.setEncoding('utf8').on('data', (chunk: string) => {
    text += chunk;
  });
  err.resume();
  return { out, err, color: pc.createColors(false), interactive: false, text: () => text };
}

describe.concurrent('qvm logs', () => {
  const dir = path.join(box.root, 'logs');
  const file = path.join(dir, 'qvm.yaml');
  const run = (args: string[]) => box.run(args, dir);
  let serialLog = '';
  let qemuLog = '';

  it.sequential('before the VM ever started it says there are no logs yet; an unknown VM is refused', async () => {
    mkdirSync(dir, { recursive: true });
    writeManifest(file, { web: demoVm('web') });
    expect(await run(['logs', 'web'])).toEqual({
      exitCode: 0,
      stdout: '',
      stderr: 'web has no logs yet (it has not been started)\n',
    });
    const unknown = await run(['logs', 'nope']);
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr).toBe(`error: no VM named "nope" in qvm.yaml\n`);
  });

  it.sequential('prints the serial console and QEMU messages, each alone or both under headers', {
    timeout: 120_000,
  }, async () => {
    expect((await run(['apply'])).exitCode).toBe(0);
    const vmDir = box.vmDir(file, 'web');
    serialLog = path.join(vmDir, 'serial.log');
    qemuLog = path.join(vmDir, 'qemu.log');
    await until('the guest is up', () => readFileSync(serialLog, 'utf8').includes('QVM-GUEST-READY'), 60_000);
    const serial = await run(['logs', 'web', '--serial']);
    expect(serial.exitCode).toBe(0);
    expect(serial.stdout).toContain('QVM-GUEST-READY');
    // The guest writes CRLF and terminal queries: shown as plain lines.
    expect(serial.stdout).not.toContain('\r');
    expect(serial.stdout).not.toContain('\u001b');
    expect(serial.stdout).not.toContain('[qvm ');
    expect(serial.stdout).not.toContain(qemuLog);

    const qemu = await run(['logs', 'web', '--qemu']);
    expect(qemu.exitCode).toBe(0);
    expect(qemu.stdout).toMatch(/^\[qvm \S+\] started pid \d+: qemu-system-x86_64 /m);
    expect(qemu.stdout).not.toContain('QVM-GUEST-READY');

    const both = await run(['logs', 'web']);
    expect(both.exitCode).toBe(0);
    const headers = [...both.stdout.matchAll(/^==> (.+) <==$/gm)].map((m) => m[1]);
    expect(headers).toEqual([serialLog, qemuLog]);
    expect(both.stdout.indexOf('QVM-GUEST-READY')).toBeLessThan(both.stdout.indexOf('[qvm '));
  });

  it.sequential('keeps the previous run: after a crash and a new start, both boots and both starts are shown', {
    timeout: 120_000,
  }, async () => {
    const first = box.readPid(file, 'web');
    await killHard(first);
    expect((await run(['apply'])).exitCode).toBe(0);
    const second = box.readPid(file, 'web');
    await until(
      'the guest is up again',
      () => readFileSync(serialLog, 'utf8').split('QVM-GUEST-READY').length === 3,
      60_000,
    );
    const serial = await run(['logs', 'web', '--serial']);
    expect(serial.stdout.split('QVM-GUEST-READY')).toHaveLength(3);
    // QEMU truncates its own log when it starts; qvm kept the crashed run's as qemu.previous.log.
    const qemu = await run(['logs', 'web', '--qemu']);
    expect(qemu.stdout).toContain(`started pid ${first}:`);
    expect(qemu.stdout).toContain(`started pid ${second}:`);
    expect(qemu.stdout.indexOf(`started pid ${first}:`)).toBeLessThan(
      qemu.stdout.indexOf(`started pid ${second}:`),
    );
    const headers = [...qemu.stdout.matchAll(/^==> (.+) <==$/gm)].map((m) => m[1]);
    expect(headers).toEqual([path.join(path.dirname(qemuLog), 'qemu.previous.log'), qemuLog]);
  });

  it.sequential('`-f` with no path after it follows (as tail users type it) until SIGINT, then exits 0', {
    timeout: 120_000,
  }, async () => {
    // `qvm logs web -f --serial` in the manifest's folder: -f takes no path here, so it means follow.
    const follow = box.spawnQvm(['logs', 'web', '-f', '--serial'], dir);
    await until('logs printed the log so far', () => follow.stdout().includes('QVM-GUEST-READY'), 30_000);
    const mark = `qvm-follow-${process.pid}`;
    await typeOnSerial(path.join(box.vmDir(file, 'web'), 'serial.sock'), `echo ${mark}-$((6*7))`);
    await until(
      'the new line was followed',
      () => follow.stdout().includes(`${mark}-42`),
      30_000,
      () => follow.stdout().slice(-500),
    );
    expect(follow.exit).toBeUndefined();
    follow.child.kill('SIGINT');
    expect(await follow.exited).toEqual({ code: 0, signal: null });
    expect(follow.stderr()).toBe('');
  });

  it.sequential('-F (follow) in process: what the guest prints arrives, and an AbortSignal ends it with 0', {
    timeout: 120_000,
  }, async () => {
    const output = captured();
    const controller = new AbortController();
    const saved = { runtime: process.env.QVM_RUNTIME_DIR, state: process.env.QVM_STATE_DIR };
    process.env.QVM_RUNTIME_DIR = box.runtime;
    process.env.QVM_STATE_DIR = `${box.runtime}-state`;
    try {
      const done = logsCommand(
        'web',
        { file, follow: true, serial: false, qemu: false },
        output,
        controller.signal,
      );
      await until('the log so far, both files', () => output.text().includes('[qvm '), 30_000);
      const mark = `qvm-abort-${process.pid}`;
      await typeOnSerial(path.join(box.vmDir(file, 'web'), 'serial.sock'), `echo ${mark}`);
      await until('the new line', () => output.text().includes(mark), 30_000);
      controller.abort();
      expect(await done).toBe(0);
      // Following both files, the serial header comes back when the serial log grows after QEMU's.
      expect(output.text().lastIndexOf(`==> ${serialLog} <==`)).toBeGreaterThan(
        output.text().indexOf(`==> ${qemuLog} <==`),
      );
    } finally {
      process.env.QVM_RUNTIME_DIR = saved.runtime;
      process.env.QVM_STATE_DIR = saved.state;
    }
    // The VM was only watched: still the one QEMU.
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toHaveLength(1);
  });
});

describe.concurrent('qvm snapshot save, list and delete', () => {
  const dir = path.join(box.root, 'snap');
  const file = path.join(dir, 'm.yaml');
  const disk = path.join(dir, 'd.qcow2');
  const run = (args: string[]) => box.run(args, dir);

  it.sequential('while running: save through the monitor, list with size, date and VM clock', {
    timeout: 60_000,
  }, async () => {
    writeManifest(file, { web: bareVm({ disk: { path: 'd.qcow2', size: '16M' } }) });
    expect((await run(['apply', '-f', file])).exitCode).toBe(0);
    expect(await run(['snapshot', 'list', 'web', '-f', file])).toEqual({
      exitCode: 0,
      stdout: 'web has no snapshots.\n',
      stderr: '',
    });
    expect(await run(['snapshot', 'save', 'web', 'by-hand', '-f', file])).toEqual({
      exitCode: 0,
      stdout: 'web: saved snapshot by-hand\n',
      stderr: '',
    });
    expect(tagsOf(disk)).toEqual(['by-hand']);
    const list = await run(['snapshot', 'list', 'web', '-f', file]);
    expect(list.exitCode).toBe(0);
    const rows = list.stdout.trimEnd().split('\n');
    expect(rows[0]).toMatch(/^TAG\s+VM SIZE\s+DATE\s+VM CLOCK$/);
    expect(rows.slice(1)).toHaveLength(1);
    expect(rows[1]).toMatch(
      /^by-hand\s+[\d.]+ [KMG]?i?B\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+\d\d:\d\d:\d\d\.\d+$/,
    );
  });

  it.sequential("refuses a bad tag, qvm's own tag, a tag the disk does not have, an unknown action", async () => {
    const bad = await run(['snapshot', 'save', 'web', 'a;quit', '-f', file]);
    expect(bad).toEqual({
      exitCode: 1,
      stdout: '',
      stderr: `error: snapshot tags are letters, digits, '.', '_' and '-', at most 64; got "a;quit"\n`,
    });
    const own = await run(['snapshot', 'save', 'web', 'qvm-saved-state', '-f', file]);
    expect(own.stderr).toBe("error: qvm-saved-state is qvm's own tag for hibernation (state: saved)\n");
    const missing = await run(['snapshot', 'delete', 'web', 'nope', '-f', file]);
    expect(missing).toEqual({
      exitCode: 1,
      stdout: '',
      stderr: 'error: web has no snapshot nope (it has: by-hand)\n',
    });
    const verb = await run(['snapshot', 'rename', 'web', 'x', '-f', file]);
    expect(verb).toEqual({
      exitCode: 1,
      stdout: '',
      stderr:
        "error: command-argument value 'rename' is invalid for argument 'action'. Allowed choices are list, save, delete.\n(run with --help for usage)\n",
    });
    expect(tagsOf(disk)).toEqual(['by-hand']);
  });

  it.sequential('while stopped: list and delete with qemu-img; save needs it running', {
    timeout: 60_000,
  }, async () => {
    const pid = box.readPid(file, 'web');
    expect((await run(['destroy', '-f', file])).exitCode).toBe(0);
    await until('QEMU gone', () => !isRunning(pid));
    expect(await run(['snapshot', 'list', 'web', '-f', file])).toEqual({
      exitCode: 0,
      stdout: 'TAG\nby-hand\n',
      stderr: '',
    });
    const save = await run(['snapshot', 'save', 'web', 'later', '-f', file]);
    expect(save).toEqual({
      exitCode: 1,
      stdout: '',
      stderr:
        "error: web is not running: a snapshot holds the VM's RAM, so save needs it running (qvm apply starts it)\n",
    });
    const missing = await run(['snapshot', 'delete', 'web', 'nope', '-f', file]);
    expect(missing.stderr).toBe('error: d.qcow2 has no snapshot nope (it has: by-hand)\n');
    expect(await run(['snapshot', 'delete', 'web', 'by-hand', '-f', file])).toEqual({
      exitCode: 0,
      stdout: 'web: deleted snapshot by-hand\n',
      stderr: '',
    });
    expect(tagsOf(disk)).toEqual([]);
    expect(await run(['snapshot', 'list', 'web', '-f', file])).toMatchObject({
      exitCode: 0,
      stdout: 'web has no snapshots.\n',
    });
    // Only qemu-img touched the disk: no QEMU was started for any of this.
    expect(qemusWithPidfile(box.pidfile(file, 'web'))).toEqual([]);
  });
});
