/**
 * A dev VM from a stock image, as a user gets one: a real Debian 12 image (with cloud-init, sshd and the guest
 * agent) served over loopback HTTP, pinned by its digest, downloaded once into qvm's cache, a disk made as an
 * overlay of it, cloud-init user data run, SSH with a host key qvm knows in advance, warm starts from a
 * snapshot, and a changed seed that restarts and re-saves. Each step runs real QEMU and the real CLI.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { type CliResult, qvm } from '../helpers/cli.js';
import { type DebianGuest, debianGuest } from '../helpers/debian.js';
import { killQemusUnder, privateDir } from '../helpers/env.js';
import { type ImageServer, startImageServer } from '../helpers/image-server.js';
import { removeDir } from '../helpers/qemu.js';

const root = privateDir('qvmd-');
const runtime = path.join(root, 'rt');
const cache = path.join(root, 'cache');
const env = { QVM_RUNTIME_DIR: runtime, QVM_STATE_DIR: path.join(root, 'state'), QVM_CACHE_DIR: cache };
let guest: DebianGuest;
let server: ImageServer;

const run = (dir: string, args: string[], input?: string): Promise<CliResult> =>
  qvm(args, { cwd: dir, env, timeout: 600_000, ...(input !== undefined ? { input } : {}) });

/** A manifest with the image in `images:` and one dev VM. */
function devManifest(
  dir: string,
  userData: string,
  extra: Record<string, unknown> = {},
  sha256 = guest.sha256,
) {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(
    path.join(dir, 'm.yaml'),
    stringify({
      images: { 'debian-12': { url: server.url('/debian-12.qcow2'), sha256 } },
      vms: {
        dev: {
          image: 'debian-12',
          disk: { path: 'disks/dev.qcow2', size: '4G' },
          memory: '1G',
          accel: 'tcg',
          kernel: guest.kernel,
          initrd: guest.initrd,
          append: guest.append,
          cloudInit: { userData },
          ssh: { user: 'dev' },
          ready: { ssh: true, timeout: '8m' },
          snapshot: 'warm',
          ...extra,
        },
      },
    }),
  );
  return 'm.yaml';
}

const userData = (marker: string) =>
  `#cloud-config\n# the user's own comment stays\nlocale: C.UTF-8\nruncmd:\n  - [sh, -c, "echo ${marker} > /var/tmp/marker"]\n`;

/** The loopback port qvm picked for the VM's SSH, as the plan shows it. */
const sshPortOf = (text: string) => /ssh on 127\.0\.0\.1:(\d+)/.exec(text)?.[1] ?? 'none';

const gets = () => server.requests.filter((r) => r.method === 'GET' && r.path === '/debian-12.qcow2').length;

beforeAll(async () => {
  guest = debianGuest();
  server = await startImageServer({ '/debian-12.qcow2': guest.image });
}, 900_000);

afterAll(async () => {
  await killQemusUnder(runtime);
  await server?.close();
  removeDir(root);
});

describe('a Debian dev VM from one manifest', () => {
  const dir = path.join(root, 'dev');
  let bootId = '';
  let savedAt = 0;

  it('plan says what will be downloaded, made and saved', async () => {
    const file = devManifest(dir, userData('marker-one'));
    const r = await run(dir, ['plan', '-f', file]);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    const size = Math.round(readFileSync(guest.image).length / 2 ** 20);
    expect(r.stdout).toContain(
      `  + dev   start (downloads debian-12 (${size}M); creates disks/dev.qcow2, 4G, overlay of debian-12; cold boot, then saves snapshot warm once ready; ssh on 127.0.0.1:${sshPortOf(r.stdout)})`,
    );
  });

  it('apply downloads the image once, boots it with cloud-init, and the user data ran', {
    timeout: 900_000,
  }, async () => {
    const r = await run(dir, ['apply', '-f', 'm.yaml']);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/dev: started \(pid \d+\), ready in \S+, saved snapshot warm/);
    expect(r.stdout).toContain(': logged in, cloud-init done');
    savedAt = Date.now();
    expect(gets()).toBe(1);
    const cached = readdirSync(path.join(cache, 'images', 'sha256')).filter((f) => /^[0-9a-f]{64}$/.test(f));
    expect(cached).toEqual([guest.sha256]);
    const marker = await run(dir, ['ssh', 'dev', '-f', 'm.yaml', '--', 'cat', '/var/tmp/marker']);
    expect(marker).toMatchObject({ exitCode: 0, stdout: 'marker-one\n' });
  });

  it('qvm ssh passes the command as given and returns its exit status', { timeout: 120_000 }, async () => {
    expect((await run(dir, ['ssh', 'dev', '-f', 'm.yaml', '--', 'false'])).exitCode).toBe(1);
    expect((await run(dir, ['ssh', 'dev', '-f', 'm.yaml', '--', 'sh', '-c', 'exit 3'])).exitCode).toBe(3);
    const words = await run(dir, ['ssh', 'dev', '-f', 'm.yaml', '--', 'printf', '%s|', 'two words', "it's"]);
    expect(words.stdout).toBe("two words|it's|");
    const piped = await run(dir, ['ssh', 'dev', '-f', 'm.yaml', '--', 'wc', '-c'], 'twelve bytes');
    expect(piped.stdout.trim()).toBe('12');
    const host = await run(dir, ['ssh', 'dev', '-f', 'm.yaml', '--', 'hostname']);
    expect(host.stdout).toBe('dev\n');
  });

  it('qvm cp copies a file both ways', { timeout: 120_000 }, async () => {
    const local = path.join(dir, 'note.txt');
    writeFileSync(local, 'round trip\n');
    expect((await run(dir, ['cp', '-f', 'm.yaml', local, 'dev:/tmp/note.txt'])).exitCode).toBe(0);
    const back = path.join(dir, 'back.txt');
    expect((await run(dir, ['cp', '-f', 'm.yaml', 'dev:/tmp/note.txt', back])).exitCode).toBe(0);
    expect(readFileSync(back, 'utf8')).toBe('round trip\n');
  });

  it('ssh -F with qvm ssh-config logs in with strict host key checking', { timeout: 60_000 }, async () => {
    const config = await run(dir, ['ssh-config', '-f', 'm.yaml']);
    expect(config.exitCode).toBe(0);
    expect(config.stdout).toMatch(/^Host qvm-dev\n {2}HostName 127\.0\.0\.1\n {2}Port \d+\n {2}User dev\n/);
    expect(config.stdout).toContain('  StrictHostKeyChecking yes\n');
    const file = path.join(dir, 'ssh.conf');
    writeFileSync(file, config.stdout);
    const ssh = spawnSync('ssh', ['-F', file, '-o', 'BatchMode=yes', 'qvm-dev', 'true'], {
      encoding: 'utf8',
    });
    expect({ status: ssh.status, stderr: ssh.stderr }).toEqual({ status: 0, stderr: '' });
  });

  it('a second apply changes nothing and makes no request; another manifest shares the cached image', {
    timeout: 120_000,
  }, async () => {
    const before = server.count();
    expect(await run(dir, ['apply', '-f', 'm.yaml'])).toMatchObject({
      exitCode: 0,
      stdout: 'No changes. The VMs match the manifest.\n',
    });
    const other = path.join(root, 'other');
    const file = devManifest(other, userData('other'));
    const pull = await run(other, ['pull', '-f', file]);
    expect(pull.exitCode).toBe(0);
    const plan = await run(other, ['plan', '-f', file]);
    expect(plan.stdout).toContain('creates disks/dev.qcow2, 4G, overlay of debian-12');
    expect(plan.stdout).not.toContain('downloads');
    expect(server.count()).toBe(before);
    const images = JSON.parse((await run(dir, ['images', '-o', 'json'])).stdout);
    expect(images.items).toMatchObject([
      { sha256: guest.sha256, usedBy: [{ disk: path.join(dir, 'disks/dev.qcow2') }] },
    ]);
  });

  it('the warm snapshot was saved once ready; destroy + apply resumes from it, clock set', {
    timeout: 300_000,
  }, async () => {
    bootId = (await run(dir, ['ssh', 'dev', '-f', 'm.yaml', '--', 'cat', '/proc/sys/kernel/random/boot_id']))
      .stdout;
    expect(bootId).toMatch(/^[0-9a-f-]{36}\n$/);
    expect((await run(dir, ['snapshot', 'list', 'dev', '-f', 'm.yaml'])).stdout).toContain('warm');
    // Let the snapshot age, so a guest clock left as the snapshot had it would be visibly behind.
    await new Promise((r) => setTimeout(r, Math.max(0, savedAt + 30_000 - Date.now())));
    expect((await run(dir, ['destroy', '-f', 'm.yaml'])).exitCode).toBe(0);
    const plan = await run(dir, ['plan', '-f', 'm.yaml']);
    expect(plan.stdout).toContain('  + dev   start (from snapshot warm; ssh on 127.0.0.1:');
    const r = await run(dir, ['apply', '-f', 'm.yaml']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/dev: started \(pid \d+\), from snapshot warm, ready in \S+, guest clock set/);
    expect(r.stdout).toContain(': logged in, cloud-init done');
    // Resumed, not booted: the same boot of the kernel, with what it had written.
    const after = await run(dir, [
      'ssh',
      'dev',
      '-f',
      'm.yaml',
      '--',
      'cat',
      '/proc/sys/kernel/random/boot_id',
      '/var/tmp/marker',
    ]);
    expect(after.stdout).toBe(`${bootId}marker-one\n`);
    // The snapshot is at least 30 s old: set, the guest's clock is the host's within a few seconds.
    // The guest reads its clock somewhere between the start and the end of the ssh call (a login takes a
    // second or two under TCG): within a second of that window.
    const askedAt = Date.now() / 1000;
    const clock = await run(dir, ['ssh', 'dev', '-f', 'm.yaml', '--', 'date', '+%s.%N']);
    const answeredAt = Date.now() / 1000;
    const guestNow = Number(clock.stdout.trim());
    expect(guestNow).toBeGreaterThan(askedAt - 1);
    expect(guestNow).toBeLessThan(answeredAt + 1);
  });

  it('a changed user data is a restart ("cloud-init seed changed"), the stale snapshot is made anew, and the new runcmd ran', {
    timeout: 900_000,
  }, async () => {
    devManifest(dir, userData('marker-two'));
    const plan = await run(dir, ['plan', '-f', 'm.yaml']);
    expect(plan.stdout).toContain('-/+ dev   restart: cloud-init seed changed');
    const r = await run(dir, ['apply', '-f', 'm.yaml']);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('saved snapshot warm');
    const marker = await run(dir, ['ssh', 'dev', '-f', 'm.yaml', '--', 'cat', '/var/tmp/marker']);
    expect(marker.stdout).toBe('marker-two\n');
    expect(await run(dir, ['plan', '-f', 'm.yaml'])).toMatchObject({
      stdout: 'No changes. The VMs match the manifest.\n',
    });
    expect((await run(dir, ['destroy', '-f', 'm.yaml'])).exitCode).toBe(0);
  });
});

describe('downloads that go wrong', () => {
  it('a wrong digest fails naming the URL and both digests, and leaves nothing in the cache', {
    timeout: 120_000,
  }, async () => {
    const dir = path.join(root, 'wrong');
    const wrong = 'ab'.repeat(32);
    const file = devManifest(dir, userData('x'), {}, wrong);
    const r = await run(dir, ['pull', '-f', file]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(
      `${server.url('/debian-12.qcow2')} does not have the digest the manifest pins: expected sha256 ${wrong}, got ${guest.sha256}; nothing was kept`,
    );
    expect(existsSync(path.join(cache, 'images', 'sha256', wrong))).toBe(false);
    expect(readdirSync(path.join(cache, 'images', 'partial'))).toEqual([]);
  });

  it('a connection dropped halfway is resumed with a Range request, and the result verified', {
    timeout: 120_000,
  }, async () => {
    const dir = path.join(root, 'resume');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const data = path.join(dir, 'blob.raw');
    writeFileSync(data, Buffer.alloc(8 * 2 ** 20, 7));
    const sha256 = createHash('sha256').update(readFileSync(data)).digest('hex');
    server.setFile('/blob.raw', data);
    writeFileSync(
      path.join(dir, 'm.yaml'),
      stringify({
        vms: {
          b: { image: { url: server.url('/blob.raw'), sha256 }, disk: { path: 'b.qcow2', size: '16M' } },
        },
      }),
    );
    server.dropNextAfter(3 * 2 ** 20);
    const first = await run(dir, ['pull', '-f', 'm.yaml']);
    expect(first.exitCode).toBe(1);
    expect(first.stderr).toContain('the next apply or pull resumes it');
    const second = await run(dir, ['pull', '-f', 'm.yaml']);
    expect(second.exitCode).toBe(0);
    const ranged = server.requests.filter((q) => q.path === '/blob.raw' && q.method === 'GET');
    expect(ranged.map((q) => q.status)).toEqual([200, 206]);
    expect(ranged[0]!.range).toBeUndefined();
    // The client resumes from what it kept: at most what the server sent before dropping (the kernel may
    // discard the last bytes in flight when the connection is reset), and far more than nothing.
    const from = Number(/^bytes=(\d+)-$/.exec(ranged[1]!.range ?? '')?.[1]);
    expect(from).toBeGreaterThan(2 ** 20);
    expect(from).toBeLessThanOrEqual(3 * 2 ** 20);
    const cachedFile = path.join(cache, 'images', 'sha256', sha256);
    expect(createHash('sha256').update(readFileSync(cachedFile)).digest('hex')).toBe(sha256);
    expect(execFileSync('stat', ['-c', '%a', cachedFile], { encoding: 'utf8' }).trim()).toBe('400');
  });
});
