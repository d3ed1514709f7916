import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type ImageServer, parseRange, startImageServer } from '../helpers/image-server.js';

interface Fetched {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** The connection ended before Content-Length bytes arrived. */
  truncated: boolean;
}

/** One request on its own connection; resolves with what arrived, even when the server hangs up early. */
function fetchRaw(url: string, options: { method?: string; headers?: Record<string, string> } = {}) {
  return new Promise<Fetched>((resolve, reject) => {
    const request = http.request(url, { agent: false, ...options }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      const done = () => {
        const body = Buffer.concat(chunks);
        const expected = Number(response.headers['content-length'] ?? body.length);
        resolve({
          status: response.statusCode ?? 0,
          headers: response.headers,
          body,
          truncated: options.method !== 'HEAD' && body.length < expected,
        });
      };
      response.on('end', done);
      // A premature close: 'aborted' (and an ECONNRESET 'error') instead of 'end'.
      response.on('aborted', done);
      response.on('error', () => undefined);
    });
    request.setTimeout(5000, () => request.destroy(new Error(`${url}: no answer within 5 s`)));
    request.on('error', reject);
    request.end();
  });
}

const SIZE = 300_000;
let dir: string;
let file: string;
let content: Buffer;
let server: ImageServer;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'qvm-imgsrv-'));
  file = path.join(dir, 'disk.qcow2');
  // Every byte depends on its offset, so a slice from the wrong place cannot pass for the right one.
  content = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE; i++) content[i] = (i * 7 + (i >> 8)) & 0xff;
  writeFileSync(file, content);
  server = await startImageServer({ '/images/disk.qcow2': file });
});

afterEach(() => server.resetCounts());

afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('image server', () => {
  it('listens on 127.0.0.1 at a free port', () => {
    expect(server.port).toBeGreaterThan(0);
    expect(server.origin).toBe(`http://127.0.0.1:${server.port}`);
    expect(server.url('/images/disk.qcow2')).toBe(`http://127.0.0.1:${server.port}/images/disk.qcow2`);
  });

  it('serves a whole file with its length and range support announced', async () => {
    const got = await fetchRaw(server.url('/images/disk.qcow2'));
    expect(got.status).toBe(200);
    expect(got.headers['content-length']).toBe(String(SIZE));
    expect(got.headers['accept-ranges']).toBe('bytes');
    expect(got.headers['content-range']).toBeUndefined();
    expect(got.body.equals(content)).toBe(true);
    expect(got.truncated).toBe(false);
  });

  it('answers Range: bytes=N- with 206 and the rest of the file', async () => {
    const got = await fetchRaw(server.url('/images/disk.qcow2'), { headers: { Range: 'bytes=100000-' } });
    expect(got.status).toBe(206);
    expect(got.headers['content-range']).toBe(`bytes 100000-${SIZE - 1}/${SIZE}`);
    expect(got.headers['content-length']).toBe(String(SIZE - 100_000));
    expect(got.body.equals(content.subarray(100_000))).toBe(true);
  });

  it('answers bytes=N-M and bytes=-N with exactly those bytes', async () => {
    const middle = await fetchRaw(server.url('/images/disk.qcow2'), { headers: { Range: 'bytes=10-19' } });
    expect(middle.status).toBe(206);
    expect(middle.headers['content-range']).toBe(`bytes 10-19/${SIZE}`);
    expect(middle.body.equals(content.subarray(10, 20))).toBe(true);
    const tail = await fetchRaw(server.url('/images/disk.qcow2'), { headers: { Range: 'bytes=-5' } });
    expect(tail.status).toBe(206);
    expect(tail.headers['content-range']).toBe(`bytes ${SIZE - 5}-${SIZE - 1}/${SIZE}`);
    expect(tail.body.equals(content.subarray(SIZE - 5))).toBe(true);
  });

  it('answers a range past the end with 416 and the size', async () => {
    const got = await fetchRaw(server.url('/images/disk.qcow2'), { headers: { Range: `bytes=${SIZE}-` } });
    expect(got.status).toBe(416);
    expect(got.headers['content-range']).toBe(`bytes */${SIZE}`);
    expect(got.body.length).toBe(0);
  });

  it('answers HEAD with the length and no body', async () => {
    const got = await fetchRaw(server.url('/images/disk.qcow2'), { method: 'HEAD' });
    expect(got.status).toBe(200);
    expect(got.headers['content-length']).toBe(String(SIZE));
    expect(got.headers['accept-ranges']).toBe('bytes');
    expect(got.body.length).toBe(0);
    const ranged = await fetchRaw(server.url('/images/disk.qcow2'), {
      method: 'HEAD',
      headers: { Range: 'bytes=1000-' },
    });
    expect(ranged.status).toBe(206);
    expect(ranged.headers['content-length']).toBe(String(SIZE - 1000));
    expect(ranged.body.length).toBe(0);
  });

  it('counts and logs every request per path, 404s and refused methods included', async () => {
    expect(server.count()).toBe(0);
    await fetchRaw(server.url('/images/disk.qcow2'), { method: 'HEAD' });
    await fetchRaw(server.url('/images/disk.qcow2'), { headers: { Range: 'bytes=5-' } });
    const missing = await fetchRaw(server.url('/images/other.qcow2'));
    const posted = await fetchRaw(server.url('/images/disk.qcow2'), { method: 'POST' });
    expect(missing.status).toBe(404);
    expect(posted.status).toBe(405);
    expect(posted.headers.allow).toBe('GET, HEAD');
    expect(server.count('/images/disk.qcow2')).toBe(3);
    expect(server.count('/images/other.qcow2')).toBe(1);
    expect(server.count('/never')).toBe(0);
    expect(server.count()).toBe(4);
    expect(server.requests.map((r) => [r.method, r.path, r.range, r.status, r.bytes, r.dropped])).toEqual([
      ['HEAD', '/images/disk.qcow2', undefined, 200, 0, false],
      ['GET', '/images/disk.qcow2', 'bytes=5-', 206, SIZE - 5, false],
      ['GET', '/images/other.qcow2', undefined, 404, 0, false],
      ['POST', '/images/disk.qcow2', undefined, 405, 0, false],
    ]);
    server.resetCounts();
    expect(server.count()).toBe(0);
  });

  it('drops the next body after exactly K bytes, once, and a ranged request resumes it', async () => {
    server.dropNextAfter(70_001);
    // A HEAD does not use up the drop: it has no body.
    expect((await fetchRaw(server.url('/images/disk.qcow2'), { method: 'HEAD' })).status).toBe(200);
    const cut = await fetchRaw(server.url('/images/disk.qcow2'));
    expect(cut.status).toBe(200);
    expect(cut.headers['content-length']).toBe(String(SIZE));
    expect(cut.truncated).toBe(true);
    expect(cut.body.length).toBe(70_001);
    expect(cut.body.equals(content.subarray(0, 70_001))).toBe(true);

    const rest = await fetchRaw(server.url('/images/disk.qcow2'), { headers: { Range: 'bytes=70001-' } });
    expect(rest.status).toBe(206);
    expect(rest.truncated).toBe(false);
    expect(Buffer.concat([cut.body, rest.body]).equals(content)).toBe(true);
    expect(server.requests.map((r) => [r.method, r.status, r.bytes, r.dropped])).toEqual([
      ['HEAD', 200, 0, false],
      ['GET', 200, 70_001, true],
      ['GET', 206, SIZE - 70_001, false],
    ]);
  });

  it('drops a ranged body too, and after 0 bytes sends only the headers', async () => {
    server.dropNextAfter(10);
    const cut = await fetchRaw(server.url('/images/disk.qcow2'), { headers: { Range: 'bytes=1000-' } });
    expect(cut.status).toBe(206);
    expect(cut.truncated).toBe(true);
    expect(cut.body.equals(content.subarray(1000, 1010))).toBe(true);

    server.dropNextAfter(0);
    const empty = await fetchRaw(server.url('/images/disk.qcow2'));
    expect(empty.status).toBe(200);
    expect(empty.headers['content-length']).toBe(String(SIZE));
    expect(empty.body.length).toBe(0);
    expect(empty.truncated).toBe(true);
    expect((await fetchRaw(server.url('/images/disk.qcow2'))).body.equals(content)).toBe(true);
  });

  it('serves what the map says at request time', async () => {
    const other = path.join(dir, 'other.img');
    writeFileSync(other, 'second image\n');
    server.setFile('/images/disk.qcow2', other);
    try {
      expect((await fetchRaw(server.url('/images/disk.qcow2'))).body.toString()).toBe('second image\n');
      server.removeFile('/images/disk.qcow2');
      expect((await fetchRaw(server.url('/images/disk.qcow2'))).status).toBe(404);
    } finally {
      server.setFile('/images/disk.qcow2', file);
    }
  });

  it('close() resolves once the port no longer accepts connections, even with one open', async () => {
    const own = await startImageServer({ '/a': file });
    const idle = net.connect(own.port, '127.0.0.1');
    await new Promise((resolve) => idle.once('connect', resolve));
    await own.close();
    const refused = await new Promise<string>((resolve) => {
      const socket = net.connect(own.port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve('connected');
      });
      socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');
    idle.destroy();
  });
});

describe('parseRange', () => {
  it.each([
    [undefined, { kind: 'full' }],
    ['bytes=0-', { kind: 'partial', start: 0, end: 99 }],
    ['bytes=50-', { kind: 'partial', start: 50, end: 99 }],
    ['bytes=50-60', { kind: 'partial', start: 50, end: 60 }],
    ['bytes=50-1000', { kind: 'partial', start: 50, end: 99 }],
    ['bytes=-10', { kind: 'partial', start: 90, end: 99 }],
    ['bytes=-1000', { kind: 'partial', start: 0, end: 99 }],
    ['bytes=100-', { kind: 'unsatisfiable' }],
    ['bytes=60-50', { kind: 'unsatisfiable' }],
    ['bytes=-0', { kind: 'unsatisfiable' }],
    ['bytes=0-1,5-6', { kind: 'full' }],
    ['items=0-1', { kind: 'full' }],
    ['bytes=-', { kind: 'full' }],
  ])('%j of 100 bytes', (header, expected) => expect(parseRange(header, 100)).toEqual(expected));
});
