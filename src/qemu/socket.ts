/**
 * Connecting to a QEMU monitor's unix socket, with a deadline, and turning the ways it fails into errors
 * that say what to do.
 */
import net from 'node:net';
import { MonitorClosedError, MonitorConnectError, MonitorTimeoutError } from '../errors.js';
import { formatDuration } from '../model/units.js';

const DEFAULT_MONITOR_TIMEOUT_MS = 10_000;

function openUnixSocket(socketPath: string, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ path: socketPath });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new MonitorTimeoutError(
          `could not connect to ${socketPath} within ${formatDuration(timeoutMs)}`,
          socketPath,
          undefined,
          timeoutMs,
        ),
      );
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new MonitorConnectError(connectFailure(socketPath, error), socketPath, { cause: error }));
    });
  });
}

function connectFailure(socketPath: string, error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case 'ENOENT':
      return `no monitor socket at ${socketPath}: is the VM running?`;
    case 'ECONNREFUSED':
      return `nothing is listening on ${socketPath}: the QEMU that created it has exited (stale socket)`;
    case 'EACCES':
    case 'EPERM':
      return `permission denied connecting to ${socketPath}`;
    case 'ENOTSOCK':
      return `${socketPath} is not a unix socket`;
    case 'ENAMETOOLONG':
      return `socket path is too long for a unix socket (${Buffer.byteLength(socketPath)} bytes; the limit is 107): ${socketPath}`;
    default:
      return `cannot connect to ${socketPath}: ${error.message}`;
  }
}

/**
 * Waits for the first bytes a monitor sends (QMP greeting or HMP banner). A QEMU stopped with SIGSTOP still
 * accepts connections (the kernel queues them) but never greets, and QEMU serves one client per socket at a
 * time, so silence here has two likely causes; the message names both.
 */
function readFirstBytes(
  socket: net.Socket,
  socketPath: string,
  timeoutMs: number,
  /** The caller's whole deadline, for the message (timeoutMs may be what is left of it). */
  overallTimeoutMs = timeoutMs,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onClose);
    };
    const onData = (chunk: Buffer) => {
      cleanup();
      socket.pause();
      resolve(chunk);
    };
    const onClose = () => {
      cleanup();
      reject(new MonitorConnectError(`${socketPath} closed the connection before greeting`, socketPath));
    };
    const timer = setTimeout(() => {
      cleanup();
      socket.destroy();
      reject(
        new MonitorTimeoutError(
          `QEMU did not greet on ${socketPath} within ${formatDuration(overallTimeoutMs)}: it is frozen (stopped or hung), or another client holds this monitor (QEMU serves one client at a time)`,
          socketPath,
          undefined,
          overallTimeoutMs,
        ),
      );
    }, timeoutMs);
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('error', onClose);
  });
}

/**
 * Ends a connection and resolves once it is closed. A frozen peer never acknowledges the FIN, so the socket
 * is destroyed after a moment instead of waiting on it.
 */
export function endSocket(socket: net.Socket): Promise<void> {
  if (socket.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    socket.once('close', () => resolve());
    socket.end();
    setTimeout(() => socket.destroy(), 200).unref();
  });
}

/** A connected monitor socket with the first bytes QEMU sent, and what is left of the deadline. */
export interface GreetedSocket {
  socket: net.Socket;
  first: Buffer;
  timeoutMs: number;
  remainingMs: () => number;
}

/** Connects and reads the greeting or banner, both within `timeoutMs`. */
export async function openAndGreet(
  socketPath: string,
  timeoutMs = DEFAULT_MONITOR_TIMEOUT_MS,
): Promise<GreetedSocket> {
  const started = Date.now();
  const remainingMs = () => Math.max(1, timeoutMs - (Date.now() - started));
  const socket = await openUnixSocket(socketPath, timeoutMs);
  const first = await readFirstBytes(socket, socketPath, remainingMs(), timeoutMs);
  return { socket, first, timeoutMs, remainingMs };
}

/** The error a client's pending and later calls get once qvm itself closed the connection. */
export function closedByQvm(socketPath: string): MonitorClosedError {
  return new MonitorClosedError(`connection to ${socketPath} closed by qvm`, socketPath, undefined);
}
