import { describe, expect, it } from 'vitest';
import { hmpFailure } from '../../src/qemu/command-line.js';
import { stripTerminalCodes } from '../../src/qemu/hmp.js';
import { parseSnapshots } from '../../src/qemu/parse/snapshots.js';
import { parseStatus } from '../../src/qemu/parse/status.js';
import { parseUsernet } from '../../src/qemu/parse/usernet.js';
import { fixture } from '../helpers/qemu.js';

describe('parseUsernet (QEMU 7.2 capture)', () => {
  it('keeps HOST_FORWARD rows only, with netdev, addresses and ports', () => {
    expect(parseUsernet(fixture('qemu-7.2/info-usernet.txt'))).toEqual([
      {
        netdev: 'net0',
        proto: 'tcp',
        hostAddress: '127.0.0.1',
        hostPort: 10443,
        guestAddress: '10.0.2.20',
        guestPort: 443,
      },
      {
        netdev: 'net0',
        proto: 'tcp',
        hostAddress: '0.0.0.0',
        hostPort: 10080,
        guestAddress: '10.0.2.15',
        guestPort: 80,
      },
      {
        netdev: 'net0',
        proto: 'tcp',
        hostAddress: '0.0.0.0',
        hostPort: 10022,
        guestAddress: '10.0.2.15',
        guestPort: 22,
      },
      {
        netdev: 'net0',
        proto: 'udp',
        hostAddress: '127.0.0.1',
        hostPort: 10053,
        guestAddress: '10.0.2.15',
        guestPort: 53,
      },
    ]);
  });
  it('reads an empty table', () => {
    expect(parseUsernet(fixture('qemu-7.2/info-usernet-empty.txt'))).toEqual([]);
  });
  it('reads several hubs, each with its netdev id', () => {
    const text = [
      'Hub -1 (net0):',
      '  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ',
      '  TCP[HOST_FORWARD]  17       127.0.0.1  8080       10.0.2.15    80     0     0',
      'Hub -1 (net1):',
      '  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ',
      '  UDP[HOST_FORWARD]  18               *  5353       10.0.2.15    53     0     0',
    ].join('\n');
    expect(parseUsernet(text).map((f) => `${f.netdev} ${f.proto} ${f.hostAddress}:${f.hostPort}`)).toEqual([
      'net0 tcp 127.0.0.1:8080',
      'net1 udp 0.0.0.0:5353',
    ]);
  });
});

describe('parseSnapshots', () => {
  it('reads the 7.2-8.2 format (capture)', () => {
    expect(parseSnapshots(fixture('qemu-7.2/info-snapshots.txt'))).toEqual({
      loadable: [
        { id: '--', tag: 'snap2', vmSize: '2.1 MiB', date: '2026-11-26 07:50:28', vmClock: '00:00:00.577' },
        {
          id: '--',
          tag: 'after-boot',
          vmSize: '2.12 MiB',
          date: '2026-11-26 07:50:50',
          vmClock: '00:00:22.224',
        },
      ],
      partial: [],
    });
  });
  it('reads the 9.0+ format, with ICOUNT and a partial section', () => {
    expect(parseSnapshots(fixture('qemu-9.0/info-snapshots.txt'))).toEqual({
      loadable: [
        {
          id: '--',
          tag: 'snap1',
          vmSize: '1.83 MiB',
          date: '2026-11-26 07:31:08',
          vmClock: '0000:00:03.027',
        },
        {
          id: '--',
          tag: 'warm-boot-ready',
          vmSize: '2.12 MiB',
          date: '2026-11-26 07:40:51',
          vmClock: '0012:04:10.500',
        },
      ],
      partial: [
        {
          device: 'virtio1',
          snapshots: [
            {
              id: '1',
              tag: 'only-here',
              vmSize: '0 B',
              date: '2026-11-26 07:45:00',
              vmClock: '0000:00:00.000',
            },
          ],
        },
      ],
    });
  });
  it('reads "There is no snapshot available."', () => {
    expect(parseSnapshots(fixture('qemu-7.2/info-snapshots-none.txt'))).toEqual({
      loadable: [],
      partial: [],
    });
  });
});

describe('parseStatus', () => {
  it.each([
    ['info-status-running.txt', { running: true, status: 'running' }],
    ['info-status-paused.txt', { running: false, status: 'paused' }],
    ['info-status-prelaunch.txt', { running: false, status: 'prelaunch' }],
    ['info-status-restore-vm.txt', { running: false, status: 'restore-vm' }],
  ])('%s', (name, expected) => expect(parseStatus(fixture(`qemu-7.2/${name}`))).toEqual(expected));
  it('returns undefined for other text', () => expect(parseStatus('unknown command')).toBeUndefined());
});

describe('hmpFailure', () => {
  it.each([
    [
      "Could not set up host forwarding rule 'tcp::10022-:22'\n",
      "Could not set up host forwarding rule 'tcp::10022-:22'",
    ],
    [
      "Invalid host forwarding rule 'bogus' (No : separators)\n",
      "Invalid host forwarding rule 'bogus' (No : separators)",
    ],
    ["unrecognized netdev id 'x'\n", "unrecognized netdev id 'x'"],
    ['host forwarding rule for tcp::9999 not found\n', 'host forwarding rule for tcp::9999 not found'],
    ["unknown command: 'nosuchcmd'\n", "unknown command: 'nosuchcmd'"],
    [
      "Error: Snapshot 'nope' does not exist in one or more devices\n",
      "Error: Snapshot 'nope' does not exist in one or more devices",
    ],
    [
      'hostfwd_add: string expected\nTry "help hostfwd_add" for more information\n',
      'hostfwd_add: string expected',
    ],
    [
      'cont|c: extraneous characters at the end of line\nTry "help cont" for more information\n',
      'cont|c: extraneous characters at the end of line',
    ],
    ['invalid parameter: nokey\n', 'invalid parameter: nokey'],
    ['unexpected end of expression\nTry "help x" for more information\n', 'unexpected end of expression'],
    [
      'failed to save SaveStateEntry with id(name): 2(ram): -28\nError: Error while writing VM state: No space left on device\n',
      'failed to save SaveStateEntry with id(name): 2(ram): -28\nError: Error while writing VM state: No space left on device',
    ],
  ])('recognises %j', (text, message) => expect(hmpFailure(text)).toBe(message));

  it.each([
    '',
    'host forwarding rule for tcp::10022 removed\n',
    'VM status: running\n',
    'There is no snapshot available.\n',
    fixture('qemu-7.2/info-usernet.txt').replace(/\r\n/g, '\n'),
    fixture('qemu-7.2/info-snapshots.txt').replace(/\r\n/g, '\n'),
  ])('does not flag success output %#', (text) => expect(hmpFailure(text)).toBeUndefined());
});

describe('stripTerminalCodes', () => {
  it('removes CSI sequences and stray control bytes but keeps text and newlines', () => {
    expect(stripTerminalCodes('i\u001b[K\u001b[Dinfo\u001b[1;32m ok\u0007\n')).toBe('iinfo ok\n');
  });
});
