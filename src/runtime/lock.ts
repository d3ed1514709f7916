/**
 * One lock per namespace, so concurrent qvm runs (cron, CI, watch) never act on the same VMs at once.
 *
 * The lock is flock(2) on a file in the namespace's private runtime folder, so only its owner can take it (no
 * other user can open the file, let alone hold or fake it). Node has no flock of its own: qvm opens the file
 * and util-linux's flock(1) (always there on Debian) locks that open file, passed as its descriptor 3
 * (`flock 3`, as in `exec 9>file; flock 9`). A flock lock belongs to the open file, not to the process that
 * asked for it: once flock(1) has exited, the lock stays with qvm's descriptor, and the kernel releases it
 * when qvm closes it or exits, however it exits: a qvm killed mid-apply never leaves a stale lock behind.
 * (The descriptor is close-on-exec, so no QEMU qvm starts can inherit the lock.) The holder writes what it
 * is doing next to the lock, so a waiter can say what it waits for.
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, statSync } from 'node:fs';
import { LockBusyError, MissingToolError, RuntimeDirError } from '../errors.js';
import { childProcess } from './builtins.js';
import { ensurePrivateDir, type Namespace } from './paths.js';
import { isAlive } from './process.js';
import { replaceFile } from './records.js';

export interface LockHolder {
  pid: number;
  command: string;
  since: string;
}

export interface Lock {
  release(): Promise<void>;
  /**
   * lockToken as it was the moment this lock was taken, before this holder wrote its record: equal to a
   * token read earlier, it says no other qvm held the lock in between.
   */
  tokenBefore: string | undefined;
}

/** flock's exit status when the lock is busy and it was told not to wait. */
const BUSY = 75;

/** A holder's record that names a live holder which has not released the lock (a dead one holds nothing). */
function atWork(record: LockHolder & { released?: boolean }): boolean {
  return typeof record.pid === 'number' && !record.released && isAlive(record.pid);
}

/** Who holds the lock now, as the holder wrote it; undefined when unknown, released, or the writer is gone. */
function lockHolder(namespace: Namespace): LockHolder | undefined {
  try {
    const holder = JSON.parse(readFileSync(`${namespace.lock}.holder`, 'utf8')) as LockHolder;
    return atWork(holder) ? holder : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A token that changes whenever a qvm takes or releases the lock, or undefined while one holds it: a reader
 * that got the same token before and after looking at the VMs saw no pass at work (a seqlock's reader side).
 * Every holder writes its holder file, a new file renamed into place, before it changes anything, and marks
 * it released before it lets go; a holder that died is holding nothing.
 */
export function lockToken(namespace: Namespace): string | undefined {
  const file = `${namespace.lock}.holder`;
  try {
    const stat = statSync(file, { bigint: true });
    const text = readFileSync(file, 'utf8');
    if (atWork(JSON.parse(text) as LockHolder)) return undefined;
    return `${stat.ino} ${stat.mtimeNs} ${stat.ctimeNs} ${text}`;
  } catch (error) {
    // No holder file: no qvm has taken the lock since the namespace was made. Anything else: unknown.
    return (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'none' : undefined;
  }
}

/** The lock holder in words: `qvm apply (pid 1234, since ...)`. */
export function describeHolder(holder: LockHolder | undefined): string {
  return holder ? `qvm ${holder.command} (pid ${holder.pid}, since ${holder.since})` : 'another qvm';
}

/** flock(1) locking the open file that is its descriptor 3, waiting for the lock when `wait`; it exits then. */
function flockChild(fd: number, wait: boolean): ChildProcess {
  const args = ['--exclusive', ...(wait ? [] : ['--nonblock']), '--conflict-exit-code', String(BUSY), '3'];
  // PATH alone and the C locale: flock then reads no locale files, and starts a millisecond sooner.
  const env = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };
  return childProcess().spawn('flock', args, { stdio: ['ignore', 'ignore', 'pipe', fd], env });
}

/** How flock(1) ended: 0 when it locked the file; -2 when there is no flock to run. */
function outcome(child: ChildProcess): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.once('error', (error: NodeJS.ErrnoException) =>
      resolve({ code: error.code === 'ENOENT' ? -2 : -1, stderr: error.message }),
    );
    child.once('close', (code) => resolve({ code, stderr }));
  });
}

/** The held lock: releasing closes qvm's descriptor of the lock file, which releases the lock. */
function held(fd: number, namespace: Namespace, command: string): Lock {
  const tokenBefore = lockToken(namespace);
  const info: LockHolder = { pid: process.pid, command, since: new Date().toISOString() };
  const writeHolder = (record: LockHolder & { released?: boolean }) => {
    try {
      replaceFile(`${namespace.lock}.holder`, JSON.stringify(record));
    } catch {
      // For a waiter's message and lockToken's readers, who then take the lock themselves.
    }
  };
  writeHolder(info);
  let open = true;
  return {
    tokenBefore,
    release: async () => {
      if (!open) return;
      open = false;
      // Marked while still held: the next holder's record can only come after it.
      writeHolder({ ...info, released: true });
      closeSync(fd);
    },
  };
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
  ensurePrivateDir(namespace.dir);
  let fd: number;
  try {
    // Created private here: flock(1) would create it with the umask's mode.
    fd = openSync(namespace.lock, 'a', 0o600);
  } catch (error) {
    throw new RuntimeDirError(`cannot open ${namespace.lock}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  try {
    let result = await outcome(flockChild(fd, false));
    if (result.code === BUSY) {
      const holder = lockHolder(namespace);
      if (!options.wait) {
        throw new LockBusyError(
          `${describeHolder(holder)} is working on the VMs of ${namespace.source}; not waiting (--no-wait)`,
        );
      }
      options.onWait?.(holder);
      if (options.signal?.aborted) throw new LockBusyError('stopped waiting for the lock');
      const child = flockChild(fd, true);
      const abort = () => child.kill('SIGTERM');
      options.signal?.addEventListener('abort', abort, { once: true });
      result = await outcome(child);
      options.signal?.removeEventListener('abort', abort);
      if (result.code !== 0 && options.signal?.aborted)
        throw new LockBusyError('stopped waiting for the lock');
    }
    if (result.code === 0) return held(fd, namespace, command);
    if (result.code === -2)
      throw new MissingToolError(
        'flock is not installed; it comes with util-linux: apt-get install util-linux',
      );
    throw new RuntimeDirError(
      `cannot lock ${namespace.lock}: ${result.stderr.trim() || `flock exited ${result.code}`}`,
    );
  } catch (error) {
    closeSync(fd); // whatever flock managed before it failed or was stopped goes with it
    throw error;
  }
}
