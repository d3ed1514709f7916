import pc from 'picocolors';
import { describe, expect, it } from 'vitest';
import { renderStatus, statusRows } from '../../src/cli/status.js';
import { SAVED_STATE_TAG } from '../../src/model/names.js';
import { disk, manifest, observation, runningAsSpecified, stopped } from '../helpers/builders.js';

describe('qvm status', () => {
  it('shows one row per VM, orphans included, and marks exposed forwards', () => {
    const m = manifest(
      'vms:\n  web:\n    forwards: ["tcp::8080-:80", {host: 5353, guest: 53, proto: udp, address: 0.0.0.0}]\n  db:\n    disk: d.qcow2\n  cache:\n    disk: c.qcow2\n  frozen: {}\n',
    );
    const web = runningAsSpecified(m, 'web', { pid: 101, startedAtMs: 1_000, snapshots: ['ready'] });
    const old = runningAsSpecified(manifest('vms:\n  old: {}\n'), 'old', { pid: 102, startedAtMs: 0 });
    const obs = observation(
      [
        web,
        stopped('db', {
          disk: disk('/srv/vms/d.qcow2', { snapshots: [SAVED_STATE_TAG] }),
          savedState: {
            record: {
              version: 1,
              vm: 'db',
              tag: SAVED_STATE_TAG,
              savedAt: '2026-11-26T00:00:00.000Z',
              disk: { path: '/srv/vms/d.qcow2', dev: 1, ino: 2 },
            },
          },
        }),
        stopped('cache', { stale: 'process 5 has exited; its pidfile is stale' }),
        {
          name: 'frozen',
          adopted: false,
          state: 'unknown',
          pid: 103,
          error: 'QEMU did not answer "query-status" within 5s',
        },
      ],
      [old],
    );
    const rows = statusRows(m, obs, 3_723_000, new Map([['web', true]]));
    expect(renderStatus(rows, pc.createColors(false))).toBe(
      [
        'NAME                   STATE              READY  PID  FORWARDS                                       SNAPSHOTS  UPTIME',
        'web                    running            yes    101  tcp 127.0.0.1:8080->80, udp 0.0.0.0:5353->53!  ready      1h2m2s',
        'db                     saved              -      -    -                                              -          -',
        'cache                  stopped (crashed)  -      -    -                                              -          -',
        'frozen                 unresponsive       -      103  -                                              -          -',
        'old (not in manifest)  running            -      102  -                                              -          1h2m3s',
        '! marks a forward exposed beyond this machine (not on 127.0.0.1).',
        'frozen: QEMU did not answer "query-status" within 5s',
        '',
      ].join('\n'),
    );
  });
});
