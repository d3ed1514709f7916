/**
 * Fetching an image into the cache: http(s) (through HTTPS_PROXY, HTTP_PROXY and NO_PROXY when set) and
 * file:// URLs. Node's own http client does the requests (no WebAssembly parser: `qvm watch` runs V8 without
 * JIT and WebAssembly, and downloads there too). The digest is computed while the bytes arrive; the download goes to a partial file that is
 * renamed into the cache only when the digest matches, so the cache never holds a file under a wrong name. An
 * interrupted download is resumed with an HTTP Range request. Every wait has a deadline: a server that stops
 * sending fails the download instead of hanging it.
 */
import type { Hash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, rmSync, statSync } from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { ImageError } from '../errors.js';
import { formatDuration } from '../model/units.js';
import { crypto } from '../runtime/builtins.js';
import { cacheRoot, ensurePrivateDir } from '../runtime/paths.js';
import { type CachedImage, type Digest, lookupImage, partialPath, storeImage } from './cache.js';
import { checkImageFile } from './format.js';

/** How long a server may stay silent (before its headers, or between two chunks) before qvm gives up. */
const IDLE_TIMEOUT_MS = 30_000;

export interface ImageSource {
  url: string;
  digest: Digest;
}

export interface DownloadProgress {
  url: string;
  receivedBytes: number;
  /** When the server said (Content-Length). */
  totalBytes?: number;
  /** Bytes a resumed download already had. */
  resumedFrom: number;
  /** When the download started (for the rate); set by whoever shows it. */
  startedMs?: number;
}

/** A response: status, headers, and the body as a stream. */
interface Response {
  statusCode: number;
  headers: http.IncomingHttpHeaders;
  body: http.IncomingMessage;
}

/**
 * The proxy agent the environment asks for this URL (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), or none. The proxy
 * modules are loaded here, on the first request, not by every command that merely observes an image.
 */
async function agentFor(url: string): Promise<http.Agent | undefined> {
  const { getProxyForUrl } = await import('proxy-from-env');
  const proxy = getProxyForUrl(url);
  if (!proxy) return undefined;
  if (url.startsWith('https:')) return new (await import('https-proxy-agent')).HttpsProxyAgent(proxy);
  return new (await import('http-proxy-agent')).HttpProxyAgent(proxy);
}

/**
 * One GET or HEAD, following up to five redirects, with a deadline for the headers and for every pause in
 * the body (`socket.setTimeout`).
 */
async function request(
  url: string,
  options: {
    method: 'GET' | 'HEAD';
    headers?: Record<string, string>;
    timeoutMs?: number;
    signal?: AbortSignal;
  },
  redirects = 5,
): Promise<Response> {
  const timeoutMs = options.timeoutMs ?? IDLE_TIMEOUT_MS;
  const get = url.startsWith('https:')
    ? (await import('node:https')).request
    : (await import('node:http')).request;
  const agent = await agentFor(url);
  return new Promise((resolve, reject) => {
    const req = get(
      url,
      {
        method: options.method,
        headers: { 'user-agent': 'qvm', ...options.headers },
        ...(agent ? { agent } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      },
      (res) => {
        const status = res.statusCode ?? 0;
        const location = res.headers.location;
        if (status >= 300 && status < 400 && location && redirects > 0) {
          res.resume();
          request(new URL(location, url).href, options, redirects - 1).then(resolve, reject);
          return;
        }
        res.setTimeout(timeoutMs, () => res.destroy(new Error(`no data for ${formatDuration(timeoutMs)}`)));
        resolve({ statusCode: status, headers: res.headers, body: res });
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${formatDuration(timeoutMs)}`)));
    req.once('error', reject);
    req.end();
  });
}

/** The image in the cache, downloading it first when the cache does not hold it. */
export async function fetchImage(
  source: ImageSource,
  options: { onProgress?: (p: DownloadProgress) => void; signal?: AbortSignal; root?: string } = {},
): Promise<CachedImage> {
  const root = options.root ?? cacheRoot();
  const cached = lookupImage(source.digest, root);
  if (cached) return cached;
  const partial = partialPath(source.digest, root);
  ensurePrivateDir(path.dirname(partial));
  const hashes = newHashes();
  const url = new URL(source.url);
  if (url.protocol === 'file:') await copyFile(fileURLToPath(url), partial, hashes);
  else if (url.protocol === 'http:' || url.protocol === 'https:')
    await download(source.url, partial, hashes, options);
  else throw new ImageError(`${source.url}: qvm fetches http, https and file URLs`);
  const sha256 = hashes.sha256.digest('hex');
  const sha512 = hashes.sha512.digest('hex');
  const actual = source.digest.algorithm === 'sha256' ? sha256 : sha512;
  if (actual !== source.digest.hex) {
    rmSync(partial, { force: true });
    throw new ImageError(
      `${source.url} does not have the digest the manifest pins: expected ${source.digest.algorithm} ${source.digest.hex}, got ${actual}; nothing was kept`,
    );
  }
  const format = await checkImageFile(partial, source.url);
  return storeImage(
    partial,
    {
      url: source.url,
      sha256,
      sha512,
      sizeBytes: statSync(partial).size,
      format,
      fetchedAt: new Date().toISOString(),
    },
    root,
  );
}

/** The size the server announces for a URL (HEAD), when it does; never throws. */
export async function remoteSize(url: string, timeoutMs = 5000): Promise<number | undefined> {
  try {
    const parsed = new URL(url);
    if (parsed.protocol === 'file:') return statSync(fileURLToPath(parsed)).size;
    const response = await request(url, { method: 'HEAD', timeoutMs });
    response.body.resume();
    const length = Number(response.headers['content-length']);
    return response.statusCode < 300 && Number.isFinite(length) ? length : undefined;
  } catch {
    return undefined;
  }
}

async function copyFile(
  file: string,
  partial: string,
  hashes: Record<'sha256' | 'sha512', Hash>,
): Promise<void> {
  rmSync(partial, { force: true });
  try {
    await pipeline(createReadStream(file), hashing(hashes), createWriteStream(partial, { mode: 0o600 }));
  } catch (error) {
    rmSync(partial, { force: true });
    throw new ImageError(`cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }
}

/** A pass-through that feeds the hashes. */
/** Fresh digests of both kinds an image may be pinned by, fed as the bytes arrive. */
function newHashes(): Record<'sha256' | 'sha512', Hash> {
  return { sha256: crypto().createHash('sha256'), sha512: crypto().createHash('sha512') };
}

function hashing(hashes: Record<'sha256' | 'sha512', Hash>) {
  return async function* (source: AsyncIterable<Buffer>) {
    for await (const chunk of source) {
      hashes.sha256.update(chunk);
      hashes.sha512.update(chunk);
      yield chunk;
    }
  };
}

/** Hashes what a partial download already holds, so a resumed download's digest covers every byte. */
async function rehash(partial: string, hashes: Record<'sha256' | 'sha512', Hash>): Promise<number> {
  if (!existsSync(partial)) return 0;
  for await (const chunk of createReadStream(partial)) {
    hashes.sha256.update(chunk as Buffer);
    hashes.sha512.update(chunk as Buffer);
  }
  return statSync(partial).size;
}

async function download(
  url: string,
  partial: string,
  hashes: Record<'sha256' | 'sha512', Hash>,
  options: { onProgress?: (p: DownloadProgress) => void; signal?: AbortSignal },
): Promise<void> {
  let resumedFrom = await rehash(partial, hashes);
  let response: Response;
  try {
    response = await request(url, {
      method: 'GET',
      headers: resumedFrom > 0 ? { range: `bytes=${resumedFrom}-` } : {},
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (error) {
    throw new ImageError(`downloading ${url}: ${(error as Error).message}`, { cause: error });
  }
  if (resumedFrom > 0 && response.statusCode === 200) {
    // The server does not do ranges: start over.
    for (const h of Object.values(hashes)) h.destroy();
    Object.assign(hashes, newHashes());
    rmSync(partial, { force: true });
    resumedFrom = 0;
  } else if (resumedFrom > 0 && response.statusCode === 416) {
    // Nothing left to fetch: the partial file is whole.
    response.body.resume();
    return;
  }
  if (response.statusCode !== 200 && response.statusCode !== 206) {
    response.body.resume();
    throw new ImageError(`downloading ${url}: the server answered ${response.statusCode}`);
  }
  const length = Number(response.headers['content-length']);
  const total = Number.isFinite(length) ? resumedFrom + length : undefined;
  let received = resumedFrom;
  const progress = async function* (source: AsyncIterable<Buffer>) {
    for await (const chunk of source) {
      received += chunk.length;
      options.onProgress?.({
        url,
        receivedBytes: received,
        ...(total ? { totalBytes: total } : {}),
        resumedFrom,
      });
      yield chunk;
    }
  };
  try {
    await pipeline(
      response.body,
      progress,
      hashing(hashes),
      createWriteStream(partial, { flags: 'a', mode: 0o600 }),
    );
  } catch (error) {
    // The partial file stays: the next attempt resumes from where this one stopped.
    throw new ImageError(
      `downloading ${url}: ${(error as Error).message} after ${received} bytes; the next apply or pull resumes it`,
      { cause: error },
    );
  }
  if (total !== undefined && received !== total) {
    throw new ImageError(
      `downloading ${url}: the connection ended after ${received} of ${total} bytes; the next apply or pull resumes it`,
    );
  }
}
