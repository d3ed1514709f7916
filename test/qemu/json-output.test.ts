/**
 * `-o json` of plan, status, snapshot list and images, against real (bare) VMs: one versioned shape for all,
 * `{"apiVersion": "qvm/v1", "kind": ..., ...}`, as the README documents it.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qvm } from '../helpers/cli.js';
import { bareVm, killQemusUnder, privateDir, qvmIn, runtimeDir, writeManifest } from '../helpers/env.js';
import { removeDir, tempDir } from '../helpers/qemu.js';

const runtime = runtimeDir();
const dir = tempDir('qvmj-');
const run = qvmIn(runtime, dir);

/** The parsed JSON a command prints; fails when the command does. */
async function json(args: string[]): Promise<Record<string, unknown>> {
  const r = await run(args);
  expect(r.stderr).toBe('');
  expect(r.exitCode).toBe(0);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

beforeAll(() => {
  writeManifest(dir, {
    up: bareVm({ disk: { path: 'disks/up.qcow2', size: '16M' } }),
    down: bareVm({ disk: { path: 'disks/down.qcow2', size: '16M' }, state: 'stopped', snapshot: 's1' }),
  });
  mkdirSync(path.join(dir, 'disks'));
  const disk = path.join(dir, 'disks', 'down.qcow2');
  execFileSync('qemu-img', ['create', '-f', 'qcow2', disk, '16M'], { stdio: 'ignore' });
  execFileSync('qemu-img', ['snapshot', '-c', 's1', disk], { stdio: 'ignore' });
});

afterAll(async () => {
  await killQemusUnder(runtime);
  removeDir(runtime);
  removeDir(dir);
});

describe.sequential('-o json', () => {
  it('plan: a Plan with its summary, changes, problems, notes and unchanged VMs', {
    timeout: 60_000,
  }, async () => {
    const plan = await json(['plan', '-f', 'm.yaml', '-o', 'json']);
    expect(Object.keys(plan)).toEqual([
      'apiVersion',
      'kind',
      'summary',
      'baseDir',
      'changes',
      'problems',
      'notes',
      'unchanged',
    ]);
    expect(plan).toMatchObject({
      apiVersion: 'qvm/v1',
      kind: 'Plan',
      summary: { start: 1, live: 0, restart: 0, stop: 0, save: 0 },
      changes: [{ action: 'start', vm: 'up' }],
      problems: [],
      unchanged: ['down'],
    });
  });

  it('status: a StatusList of rows', { timeout: 60_000 }, async () => {
    expect((await run(['apply', '-f', 'm.yaml'])).exitCode).toBe(0);
    const status = await json(['status', '-f', 'm.yaml', '-o', 'json']);
    expect(status).toMatchObject({ apiVersion: 'qvm/v1', kind: 'StatusList', manifest: 'm.yaml' });
    const items = status.items as Record<string, unknown>[];
    expect(items.map((i) => [i.name, i.state])).toEqual([
      ['up', 'running'],
      ['down', 'stopped'],
    ]);
    expect(Object.keys(items[0]!).sort()).toEqual(
      [
        'adopted',
        'exposed',
        'forwards',
        'inManifest',
        'name',
        'pid',
        'ready',
        'snapshots',
        'state',
        'uptimeMs',
      ].sort(),
    );
  });

  it('snapshot list: a SnapshotList, with details while running and tags only from a stopped disk', {
    timeout: 60_000,
  }, async () => {
    expect((await run(['snapshot', 'save', 'up', 't1', '-f', 'm.yaml'])).exitCode).toBe(0);
    const running = await json(['snapshot', 'list', 'up', '-f', 'm.yaml', '-o', 'json']);
    expect(running).toMatchObject({ apiVersion: 'qvm/v1', kind: 'SnapshotList', vm: 'up', running: true });
    expect(running.items).toEqual([
      {
        tag: 't1',
        vmSize: expect.stringMatching(/^[\d.]+ [KMG]iB$/),
        date: expect.stringMatching(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/),
        vmClock: expect.stringMatching(/^\d+:\d\d:\d\d\.\d+$/),
        bootsFrom: false,
        savedState: false,
      },
    ]);
    expect(await json(['snapshot', 'list', 'down', '-f', 'm.yaml', '-o', 'json'])).toEqual({
      apiVersion: 'qvm/v1',
      kind: 'SnapshotList',
      vm: 'down',
      running: false,
      items: [{ tag: 's1', vmSize: null, date: null, vmClock: null, bootsFrom: true, savedState: false }],
    });
  });

  it('images: an ImageList', async () => {
    // An image cache of its own, empty whatever this machine has cached.
    const env = { QVM_RUNTIME_DIR: runtime, QVM_CACHE_DIR: privateDir('qvmc-') };
    const r = await qvm(['images', '-o', 'json'], { cwd: dir, env });
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ apiVersion: 'qvm/v1', kind: 'ImageList', items: [] });
  });
});
