/**
 * A loopback HTTP server that stands in for a cloud-image mirror in tests of `image:` downloads: it serves
 * files from a map of URL path -> file, answers HEAD and single byte ranges (`Range: bytes=N-`, `N-M`, `-N`)
 * as a real mirror does, counts and logs every request (so a test can assert that a second apply made no
 * request at all), and can drop the connection part-way through its next body (so a test can check that a
 * download resumes). Files are read at request time, so a test may replace one between requests.
 *
 * Node's http only and no vitest import, so benchmarks and scripts can use it too.
 */
import { createReadStream, type Stats, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** One request as the server saw it. */
export interface ServedRequest {
  method: string;
  /** The URL path, without the query string. */
  path: string;
  /** The Range header, when there was one. */
  range: string | undefined;
  status: number;
  /** Body bytes actually written (fewer than Content-Length when the connection was dropped). */
  bytes: number;
  dropped: boolean;
}

export interface ImageServer {
  /** The port on 127.0.0.1. */
  readonly port: number;
  /** `http://127.0.0.1:PORT`. */
  readonly origin: string;
  /** The full URL of a served path: `url('/debian-12.qcow2')`. */
  url(urlPath: string): string;
  /** Serves FILE at URLPATH from now on (replacing what was there). */
  setFile(urlPath: string, file: string): void;
  /** Stops serving URLPATH: it answers 404 from now on. */
  removeFile(urlPath: string): void;
  /** How many requests (any method, any answer, 404s included) reached URLPATH; all paths without one. */
  count(urlPath?: string): number;
  /** Every request so far, in order of arrival. */
  readonly requests: readonly ServedRequest[];
  /** Forgets the counts and the request log. */
  resetCounts(): void;
  /**
   * The next response that has a body (a GET answered 200 or 206) sends its headers and exactly BYTES bytes
   * of body, then the server closes the connection. Only that one response; HEADs, 404s and 416s do not use
   * it up.
   */
  dropNextAfter(bytes: number): void;
  /** Stops listening and closes every open connection; resolves once the server is closed. */
  close(): Promise<void>;
}

type RangeAnswer =
  | { kind: 'full' }
  | { kind: 'partial'; start: number; end: number }
  | { kind: 'unsatisfiable' };

/**
 * Reads a Range header against a file of SIZE bytes. One range only, in bytes; anything else (several
 * ranges, other units, nonsense) is ignored and the whole file is served, which RFC 9110 allows.
 */
export function parseRange(header: string | undefined, size: number): RangeAnswer {
  if (header === undefined) return { kind: 'full' };
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return { kind: 'full' };
  const [, first = '', last = ''] = match;
  if (first === '' && last === '') return { kind: 'full' };
  if (first === '') {
    // bytes=-N: the last N bytes.
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'partial', start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (start >= size || end < start) return { kind: 'unsatisfiable' };
  return { kind: 'partial', start, end };
}

/** Starts serving FILES (URL path -> file path) on 127.0.0.1 at a free port. */
export async function startImageServer(files: Record<string, string> = {}): Promise<ImageServer> {
  const served = new Map<string, string>(Object.entries(files));
  const requests: ServedRequest[] = [];
  const sockets = new Set<Socket>();
  let dropAfter: number | undefined;

  const server = http.createServer((request, response) => {
    const urlPath = new URL(request.url ?? '/', 'http://127.0.0.1').pathname;
    const entry: ServedRequest = {
      method: request.method ?? '',
      path: urlPath,
      range: request.headers.range,
      status: 0,
      bytes: 0,
      dropped: false,
    };
    requests.push(entry);
    const answer = (status: number, headers: http.OutgoingHttpHeaders, body = ''): void => {
      entry.status = status;
      response.writeHead(status, { ...headers, 'Content-Length': Buffer.byteLength(body) });
      response.end(body);
    };

    if (entry.method !== 'GET' && entry.method !== 'HEAD') {
      answer(405, { Allow: 'GET, HEAD' });
      return;
    }
    const file = served.get(urlPath);
    let stats: Stats | undefined;
    try {
      stats = file === undefined ? undefined : statSync(file);
    } catch {
      stats = undefined;
    }
    if (file === undefined || !stats?.isFile()) {
      answer(404, { 'Content-Type': 'text/plain' }, `${urlPath}: not found\n`);
      return;
    }

    const size = stats.size;
    const common = {
      'Accept-Ranges': 'bytes',
      'Content-Type': 'application/octet-stream',
      'Last-Modified': stats.mtime.toUTCString(),
      ETag: `"${size.toString(16)}-${Math.floor(stats.mtimeMs).toString(16)}"`,
    };
    const range = parseRange(entry.range, size);
    if (range.kind === 'unsatisfiable') {
      answer(416, { ...common, 'Content-Range': `bytes */${size}` });
      return;
    }
    const start = range.kind === 'partial' ? range.start : 0;
    const end = range.kind === 'partial' ? range.end : size - 1;
    const length = size === 0 ? 0 : end - start + 1;
    entry.status = range.kind === 'partial' ? 206 : 200;
    response.writeHead(entry.status, {
      ...common,
      'Content-Length': length,
      ...(range.kind === 'partial' ? { 'Content-Range': `bytes ${start}-${end}/${size}` } : {}),
    });
    if (entry.method === 'HEAD' || length === 0) {
      response.end();
      return;
    }

    // The drop applies to this response: headers promise LENGTH bytes, the socket closes after LIMIT.
    const limit = dropAfter !== undefined && dropAfter < length ? dropAfter : undefined;
    dropAfter = undefined;
    // Hang up only once every byte written has reached the kernel, so the client gets exactly LIMIT bytes.
    const hangUp = () => response.write('', () => response.socket?.destroy());
    if (limit === 0) {
      entry.dropped = true;
      hangUp();
      return;
    }
    const stream = createReadStream(file, { start, end: limit === undefined ? end : start + limit - 1 });
    stream.on('data', (chunk) => {
      entry.bytes += chunk.length;
    });
    stream.on('error', () => response.destroy());
    if (limit === undefined) {
      stream.pipe(response);
      return;
    }
    entry.dropped = true;
    stream.pipe(response, { end: false });
    stream.on('end', hangUp);
  });

  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;

  return {
    port,
    origin,
    url: (urlPath) => `${origin}${urlPath.startsWith('/') ? '' : '/'}${urlPath}`,
    setFile: (urlPath, file) => {
      served.set(urlPath, file);
    },
    removeFile: (urlPath) => {
      served.delete(urlPath);
    },
    count: (urlPath) =>
      urlPath === undefined ? requests.length : requests.filter((r) => r.path === urlPath).length,
    requests,
    resetCounts: () => {
      requests.length = 0;
    },
    dropNextAfter: (bytes) => {
      if (!Number.isInteger(bytes) || bytes < 0)
        throw new Error(`dropNextAfter: ${bytes} is not a byte count`);
      dropAfter = bytes;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        for (const socket of sockets) socket.destroy();
      }),
  };
}
