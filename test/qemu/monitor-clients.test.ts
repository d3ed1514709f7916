/**
 * The monitor clients against real QEMU 7.2 processes: round trips, QEMU's own failure texts, a frozen QEMU
 * and a QEMU killed mid-command.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  MonitorClosedError,
  MonitorCommandError,
  MonitorConnectError,
  MonitorTimeoutError,
} from '../../src/errors.js';
import { HmpClient } from '../../src/qemu/hmp.js';
import { type AnyMonitor, connectMonitor } from '../../src/qemu/monitor.js';
import { parseSnapshots } from '../../src/qemu/parse/snapshots.js';
import { parseStatus } from '../../src/qemu/parse/status.js';
import { parseUsernet } from '../../src/qemu/parse/usernet.js';
import { QmpClient } from '../../src/qemu/qmp.js';
import { procState } from '../helpers/processes.js';
import { freePort, startBareVm, type TestVm } from '../helpers/qemu.js';

async function failureOf(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the command to fail');
}

describe.each([
  ['QMP', 'qmp' as const],
  ['HMP', 'hmp' as const],
])('%s socket', (_label, kind) => {
  let vm: TestVm;
  let monitor: AnyMonitor;
  beforeAll(async () => {
    vm = await startBareVm({ forwards: ['tcp:127.0.0.1:0-:22'] });
    monitor = kind === 'qmp' ? await QmpClient.connect(vm.qmp) : await HmpClient.connect(vm.hmp);
  });
  afterAll(async () => {
    await monitor?.close();
    await vm?.kill();
  });

  it('is told apart by what the socket says first', async () => {
    // QEMU serves one client per socket at a time: let go of ours while sniffing.
    await monitor.close();
    const sniffed = await connectMonitor(kind === 'qmp' ? vm.qmp : vm.hmp);
    expect(sniffed.kind).toBe(kind);
    await sniffed.close();
    monitor = kind === 'qmp' ? await QmpClient.connect(vm.qmp) : await HmpClient.connect(vm.hmp);
  });

  it('makes a second client wait while the first holds the socket, and says why', async () => {
    const error = await failureOf(connectMonitor(kind === 'qmp' ? vm.qmp : vm.hmp, { timeoutMs: 500 }));
    expect(error).toBeInstanceOf(MonitorTimeoutError);
    expect(error.message).toMatch(
      /or another client holds this monitor \(QEMU serves one client at a time\)$/,
    );
  });

  it('adds, lists and removes a forward', async () => {
    const port = await freePort();
    expect(await monitor.hmp(`hostfwd_add tcp:127.0.0.1:${port}-:80`)).toBe('');
    const after = parseUsernet(await monitor.hmp('info usernet'));
    expect(after).toContainEqual({
      netdev: 'net0',
      proto: 'tcp',
      hostAddress: '127.0.0.1',
      hostPort: port,
      guestAddress: '10.0.2.15',
      guestPort: 80,
    });
    expect(await monitor.hmp(`hostfwd_remove tcp:127.0.0.1:${port}`)).toBe(
      `host forwarding rule for tcp:127.0.0.1:${port} removed\n`,
    );
    expect(parseUsernet(await monitor.hmp('info usernet')).map((f) => f.hostPort)).not.toContain(port);
  });

  it('returns output without echo or escape sequences', async () => {
    const text = await monitor.hmp('info usernet');
    expect(text.startsWith('Hub -1 (net0):\n')).toBe(true);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: asserting none are present
    expect(text).not.toMatch(/[\u0000-\u0009\u000b-\u001f]/);
  });

  it('saves a snapshot that info snapshots lists', async () => {
    expect(await monitor.hmp(`savevm snap-${kind}`)).toBe('');
    const tags = parseSnapshots(await monitor.hmp('info snapshots')).loadable.map((s) => s.tag);
    expect(tags).toContain(`snap-${kind}`);
    expect(parseStatus(await monitor.hmp('info status'))).toEqual({ running: true, status: 'running' });
  });

  it.each([
    ['hostfwd_add bogus', "Invalid host forwarding rule 'bogus' (No : separators)"],
    ['hostfwd_add foo:1-:2', "Invalid host forwarding rule 'foo:1-:2' (Bad protocol name)"],
    ['hostfwd_add tcp::abc-:22', "Invalid host forwarding rule 'tcp::abc-:22' (Bad host port)"],
    ['hostfwd_add nosuchnet tcp::1-:2', "unrecognized netdev id 'nosuchnet'"],
    ['hostfwd_remove tcp:127.0.0.1:9', 'host forwarding rule for tcp:127.0.0.1:9 not found'],
    ['nosuchcommand', "unknown command: 'nosuchcommand'"],
    ['hostfwd_add', 'hostfwd_add: string expected'],
    // (delvm of a missing tag is not here: QEMU 7.2 reports success for it.)
  ])('recognises the failure of %j', async (command, message) => {
    const error = await failureOf(monitor.hmp(command));
    expect(error).toBeInstanceOf(MonitorCommandError);
    expect((error as MonitorCommandError).qemuMessage).toBe(message);
    // A failed command leaves the connection usable.
    expect(parseStatus(await monitor.hmp('info status'))?.running).toBe(true);
  });

  it("reports a forward whose port is taken with QEMU's message", async () => {
    const port = await freePort();
    await monitor.hmp(`hostfwd_add tcp:127.0.0.1:${port}-:80`);
    const error = await failureOf(monitor.hmp(`hostfwd_add tcp:127.0.0.1:${port}-:80`));
    expect((error as MonitorCommandError).qemuMessage).toBe(
      `Could not set up host forwarding rule 'tcp:127.0.0.1:${port}-:80'`,
    );
  });

  it('refuses a command line with a newline before sending anything', async () => {
    const error = await failureOf(monitor.hmp('info status\nquit'));
    expect(error).toBeInstanceOf(MonitorCommandError);
    expect(parseStatus(await monitor.hmp('info status'))?.running).toBe(true);
  });
});

describe('snapshot failures', () => {
  it('loadvm of a missing tag fails and leaves the VM paused in restore-vm', async () => {
    const vm = await startBareVm();
    const qmp = await QmpClient.connect(vm.qmp);
    const error = await failureOf(qmp.hmp('loadvm nope'));
    expect((error as MonitorCommandError).qemuMessage).toBe(
      "Error: Snapshot 'nope' does not exist in one or more devices",
    );
    expect(parseStatus(await qmp.hmp('info status'))).toEqual({ running: false, status: 'restore-vm' });
    await qmp.close();
    await vm.kill();
  });

  it('savevm without a disk says no block device can store vmstate', async () => {
    const vm = await startBareVm({ disk: false });
    const qmp = await QmpClient.connect(vm.qmp);
    const error = await failureOf(qmp.hmp('savevm s'));
    expect((error as MonitorCommandError).qemuMessage).toBe(
      'Error: no block device can store vmstate for snapshot',
    );
    await qmp.close();
    await vm.kill();
  });

  it('savevm with a writable raw disk names the device', async () => {
    const vm = await startBareVm({
      disk: false,
      extraArgs: ['-drive', 'if=none,id=rawdisk,format=raw,file=/dev/null'],
    });
    const qmp = await QmpClient.connect(vm.qmp);
    const error = await failureOf(qmp.hmp('savevm s'));
    expect((error as MonitorCommandError).qemuMessage).toMatch(
      /^Error: Device '.*' is writable but does not support snapshots$/,
    );
    await qmp.close();
    await vm.kill();
  });
});

describe('QMP protocol', () => {
  it('matches replies to requests by id and passes events on', async () => {
    const vm = await startBareVm();
    const qmp = await QmpClient.connect(vm.qmp);
    expect(qmp.version).toMatch(/^\d+\.\d+\.\d+$/);
    const stopEvent = qmp.waitForEvent((e) => e.event === 'STOP', 5000);
    const [a, b] = await Promise.all([qmp.execute('query-status'), qmp.execute('stop')]);
    expect(a).toMatchObject({ status: 'running' });
    expect(b).toEqual({});
    expect((await stopEvent).event).toBe('STOP');
    const error = await failureOf(qmp.execute('no-such-command'));
    expect(error).toMatchObject({
      errorClass: 'CommandNotFound',
      qemuMessage: 'The command no-such-command has not been found',
    });
    await qmp.close();
    await vm.kill();
  });
});

describe('a frozen or dead QEMU never hangs a client', () => {
  it.each(['qmp', 'hmp'] as const)('%s: a command to a SIGSTOPped QEMU times out', async (kind) => {
    const vm = await startBareVm();
    const monitor =
      kind === 'qmp'
        ? await QmpClient.connect(vm.qmp, { timeoutMs: 800 })
        : await HmpClient.connect(vm.hmp, { timeoutMs: 800 });
    process.kill(vm.pid, 'SIGSTOP');
    const error = await failureOf(monitor.hmp('info status'));
    // The deadline is what ended the wait: a timeout naming the command and the deadline, while QEMU is still
    // there and frozen (not a closed connection, not a refused one). A hang would be the test's own deadline.
    expect(error).toBeInstanceOf(MonitorTimeoutError);
    expect(error.message).toMatch(/did not answer "info status" within 800ms/);
    expect(error).toMatchObject({ command: 'info status', timeoutMs: 800 });
    expect(procState(vm.pid)).toBe('T');
    await vm.kill();
  });

  it.each(['qmp', 'hmp'] as const)(
    '%s: connecting to a SIGSTOPped QEMU times out with both likely causes',
    async (kind) => {
      const vm = await startBareVm();
      process.kill(vm.pid, 'SIGSTOP');
      const error = await failureOf(connectMonitor(kind === 'qmp' ? vm.qmp : vm.hmp, { timeoutMs: 600 }));
      expect(error).toBeInstanceOf(MonitorTimeoutError);
      // Depending on when the stop lands, QEMU has or has not sent its greeting yet; either way the deadline holds.
      expect(error.message).toMatch(/within 600ms.*: (it|the process) is frozen \(stopped or hung\)/);
      await vm.kill();
    },
  );

  it.each(['qmp', 'hmp'] as const)('%s: a QEMU killed mid-command gives a clear error', async (kind) => {
    const vm = await startBareVm();
    const monitor =
      kind === 'qmp'
        ? await QmpClient.connect(vm.qmp, { timeoutMs: 10_000 })
        : await HmpClient.connect(vm.hmp, { timeoutMs: 10_000 });
    // Freeze first so the command is certainly in flight when the process dies.
    process.kill(vm.pid, 'SIGSTOP');
    const pending = failureOf(monitor.hmp('info status'));
    await new Promise((r) => setTimeout(r, 100));
    process.kill(vm.pid, 'SIGKILL');
    const error = await pending;
    expect(error).toBeInstanceOf(MonitorClosedError);
    expect(error.message).toMatch(/closed the monitor connection/);
    await vm.kill();
  });

  it('a socket left by a dead QEMU is refused, not waited on', async () => {
    const vm = await startBareVm();
    await vm.kill();
    const error = await failureOf(connectMonitor(vm.qmp, { timeoutMs: 5000 }));
    expect(error).toBeInstanceOf(MonitorConnectError);
    expect(error.message).toBe(
      `nothing is listening on ${vm.qmp}: the QEMU that created it has exited (stale socket)`,
    );
  });
});
