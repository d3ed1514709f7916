/**
 * One lock per namespace, so concurrent qvm runs (cron, CI, watch) never act on the same VMs at once.
 *
 * The lock is a Linux abstract unix socket (a name that exists only while a process listens on it). The
 * kernel releases it the moment its holder exits, however it exits, so a qvm killed mid-apply never leaves a
 * stale lock behind, and there is no lock file to clean up. The holder answers whoever connects with what it
 * is doing, so a waiter can say what it waits for.
 */
import net from 'node:net';
import { LockBusyError } from '../errors.js';
import type { Namespace } from './paths.js';

export interface LockHolder {
  pid: number;
  command: string;
  since: string;
}

export interface Lock {
  release(): Promise<void>;
}

function lockName(namespace: Namespace): string {
  return `\0qvm-${process.getuid?.() ?? 0}-${namespace.id}`;
}

function tryListen(name: string, info: LockHolder): Promise<net.Server | undefined> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((socket) => socket.end(JSON.stringify(info)));
    server.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EADDRINUSE') resolve(undefined);
      else reject(error);
    });
    server.listen(name, () => {
      // The lock must not keep a finished qvm alive.
      server.unref();
      resolve(server);
    });
  });
}

/** Asks the current holder what it is doing; undefined if it does not say within a moment. */
function lockHolder(namespace: Namespace): Promise<LockHolder | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect(lockName(namespace));
    let data = '';
    const done = (value: LockHolder | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    };
    const timer = setTimeout(() => done(undefined), 1000);
    socket.on('data', (chunk) => {
      data += chunk;
    });
    socket.on('end', () => {
      try {
        done(JSON.parse(data) as LockHolder);
      } catch {
        done(undefined);
      }
    });
    socket.on('error', () => done(undefined));
  });
}

/** The lock holder in words: `qvm apply (pid 1234, since ...)`. */
export function describeHolder(holder: LockHolder | undefined): string {
  return holder ? `qvm ${holder.command} (pid ${holder.pid}, since ${holder.since})` : 'another qvm';
}

/**
 * Takes the namespace's lock. With `wait`, waits for it (calling `onWait` once with the holder); without,
 * fails at once with LockBusyError naming the holder.
 */
export async function acquireLock(
  namespace: Namespace,
  command: string,
  options: { wait: boolean; onWait?: (holder: LockHolder | undefined) => void; signal?: AbortSignal },
): Promise<Lock> {
  const name = lockName(namespace);
  const info: LockHolder = { pid: process.pid, command, since: new Date().toISOString() };
  let told = false;
  for (;;) {
    const server = await tryListen(name, info);
    if (server) {
      return {
        release: () => new Promise<void>((resolve) => server.close(() => resolve())),
      };
    }
    const holder = await lockHolder(namespace);
    if (!options.wait) {
      throw new LockBusyError(
        `${describeHolder(holder)} is working on the VMs of ${namespace.source}; not waiting (--no-wait)`,
      );
    }
    if (!told) {
      told = true;
      options.onWait?.(holder);
    }
    if (options.signal?.aborted) throw new LockBusyError('stopped waiting for the lock');
    await new Promise((r) => setTimeout(r, 100));
  }
}
