/**
 * One way to reach any QEMU monitor socket: connectMonitor sniffs what the socket says first (a QMP greeting
 * is JSON, an HMP banner is text) and returns the matching client behind one interface.
 */
import { MonitorProtocolError } from '../errors.js';
import { HmpClient } from './hmp.js';
import { QmpClient } from './qmp.js';
import { openAndGreet } from './socket.js';

/** A connected monitor of either kind: both run HMP command lines and return their text, or throw. */
export type AnyMonitor = QmpClient | HmpClient;

/** Connects to a monitor socket and returns the client for what it speaks (QMP or HMP). */
export async function connectMonitor(
  socketPath: string,
  options: { timeoutMs?: number } = {},
): Promise<AnyMonitor> {
  const greeted = await openAndGreet(socketPath, options.timeoutMs);
  const { socket, first } = greeted;
  const head = first.toString('utf8').trimStart();
  if (head.startsWith('{')) return QmpClient.fromGreeting(greeted, socketPath);
  if (head.startsWith('QEMU')) return HmpClient.fromBanner(greeted, socketPath);
  socket.destroy();
  throw new MonitorProtocolError(
    `${socketPath} is neither a QMP nor an HMP monitor: it sent ${JSON.stringify(head.slice(0, 80))}`,
    socketPath,
  );
}
