/**
 * A QMP client over a unix socket: greeting, capabilities negotiation, requests matched to replies by id,
 * events, and a deadline on every step.
 *
 * Contract on failure: a MonitorCommandError (QEMU answered with an error) leaves the connection usable.
 * Any other error (timeout, hang-up, garbage) closes the connection; pending commands all fail with it.
 */
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import {
  MonitorClosedError,
  MonitorCommandError,
  type MonitorError,
  MonitorProtocolError,
  MonitorTimeoutError,
} from '../errors.js';
import { formatDuration } from '../model/units.js';
import { commandLineProblem, hmpFailure } from './command-line.js';
import { closedByQvm, endSocket, type GreetedSocket, openAndGreet } from './socket.js';

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isGreeting(v: unknown): v is QmpGreeting {
  if (!isObject(v) || !isObject(v.QMP) || !isObject(v.QMP.version) || !isObject(v.QMP.version.qemu))
    return false;
  const q = v.QMP.version.qemu;
  return typeof q.major === 'number' && typeof q.minor === 'number' && typeof q.micro === 'number';
}

/** A block device as qvm reads it from `query-block`. */
export interface BlockDevice {
  /** The drive's id (`disk0` for the VM's disk). */
  device: string;
  /** ok, failed or nospace: set when an I/O error paused the VM (werror/rerror=stop). */
  ioStatus?: string;
  inserted?: {
    file: string;
    readOnly: boolean;
    format: string;
    virtualSizeBytes?: number;
    snapshots: string[];
    /** The backing file the image names (an overlay's base). */
    backingFile?: string;
  };
}

function blockDevice(d: Record<string, unknown>): BlockDevice {
  const inserted = isObject(d.inserted) ? d.inserted : undefined;
  const image = inserted && isObject(inserted.image) ? inserted.image : undefined;
  const snapshots = image && Array.isArray(image.snapshots) ? image.snapshots : [];
  return {
    device: typeof d.device === 'string' ? d.device : '',
    ...(typeof d['io-status'] === 'string' ? { ioStatus: d['io-status'] } : {}),
    ...(inserted
      ? {
          inserted: {
            file: typeof inserted.file === 'string' ? inserted.file : '',
            readOnly: inserted.ro === true,
            format: typeof inserted.drv === 'string' ? inserted.drv : '',
            ...(typeof image?.['virtual-size'] === 'number'
              ? { virtualSizeBytes: image['virtual-size'] }
              : {}),
            snapshots: snapshots.flatMap((x) => (isObject(x) && typeof x.name === 'string' ? [x.name] : [])),
            ...(typeof image?.['full-backing-filename'] === 'string'
              ? { backingFile: image['full-backing-filename'] }
              : typeof image?.['backing-filename'] === 'string'
                ? { backingFile: image['backing-filename'] }
                : {}),
          },
        }
      : {}),
  };
}

export interface QmpGreeting {
  QMP: {
    version: { qemu: { major: number; minor: number; micro: number }; package: string };
    capabilities: string[];
  };
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export interface QmpOptions {
  /** Deadline for connecting plus greeting, and for each command unless the command says otherwise. */
  timeoutMs?: number;
}

/** A connected QMP monitor: commands with replies matched by id, HMP through it, and events. */
export class QmpClient extends EventEmitter<{ event: [QmpEvent]; close: [MonitorError] }> {
  readonly kind = 'qmp';
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private closedWith: MonitorError | undefined;
  readonly timeoutMs: number;

  private constructor(
    private readonly socket: net.Socket,
    readonly socketPath: string,
    readonly greeting: QmpGreeting,
    timeoutMs: number,
  ) {
    super();
    this.timeoutMs = timeoutMs;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', () => {}); // 'close' follows and carries the news
    socket.on('close', () =>
      this.shutdown(
        new MonitorClosedError(
          `QEMU closed the monitor connection on ${socketPath} (the process exited or quit)`,
          socketPath,
          undefined,
        ),
      ),
    );
    socket.resume();
  }

  /** Connects, reads the greeting and negotiates capabilities, all within the timeout. */
  static async connect(socketPath: string, options: QmpOptions = {}): Promise<QmpClient> {
    const g = await openAndGreet(socketPath, options.timeoutMs);
    return QmpClient.fromGreeting(g, socketPath);
  }

  /**
   * Finishes the handshake on a socket whose first bytes were already read (see connectMonitor, which sniffs
   * whether a socket speaks QMP or HMP).
   */
  static async fromGreeting(greeted: GreetedSocket, socketPath: string): Promise<QmpClient> {
    const { socket, first, timeoutMs } = greeted;
    let text = first.toString('utf8');
    const newline = text.indexOf('\n');
    // The greeting is one line; a socket may deliver it in pieces.
    if (newline < 0) {
      text += await new Promise<string>((resolve, reject) => {
        let more = '';
        const timer = setTimeout(() => {
          socket.destroy();
          reject(
            new MonitorTimeoutError(
              `incomplete QMP greeting on ${socketPath}`,
              socketPath,
              undefined,
              timeoutMs,
            ),
          );
        }, greeted.remainingMs());
        socket.on('data', function onData(chunk: Buffer) {
          more += chunk.toString('utf8');
          if (more.includes('\n')) {
            clearTimeout(timer);
            socket.off('data', onData);
            socket.pause();
            resolve(more);
          }
        });
        socket.resume();
      });
    }
    const [line = '', ...rest] = text.split('\n');
    let greeting: QmpGreeting;
    try {
      greeting = JSON.parse(line) as QmpGreeting;
      if (!isGreeting(greeting)) throw new Error('not a QMP greeting');
    } catch {
      socket.destroy();
      throw new MonitorProtocolError(
        `${socketPath} does not speak QMP: it sent ${JSON.stringify(line.slice(0, 80))}`,
        socketPath,
      );
    }
    const client = new QmpClient(socket, socketPath, greeting, timeoutMs);
    if (rest.join('\n').trim()) client.onData(rest.join('\n'));
    await client.execute('qmp_capabilities');
    return client;
  }

  get version(): string {
    const v = this.greeting.QMP.version.qemu;
    return `${v.major}.${v.minor}.${v.micro}`;
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Runs a QMP command and returns its `return` value. */
  execute(
    command: string,
    args?: Record<string, unknown>,
    options: { timeoutMs?: number } = {},
  ): Promise<unknown> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const id = `qvm-${this.nextId++}`;
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const label = command === 'human-monitor-command' ? String(args?.['command-line']) : command;
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        // After a missed deadline the stream's state is unknown; close it so nothing is read out of step.
        this.shutdown(
          new MonitorTimeoutError(
            `QEMU did not answer "${label}" within ${formatDuration(timeoutMs)} on ${this.socketPath}: the process is frozen (stopped or hung)`,
            this.socketPath,
            label,
            timeoutMs,
          ),
        );
      }, timeoutMs);
      this.pending.set(id, { command: label, resolve, reject, timer });
      this.writeSoon(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    });
  }

  /**
   * Runs an HMP command through `human-monitor-command` and returns its text with LF line ends. QEMU returns
   * success even when the command failed, so failure is recognised in the text (command-line.ts).
   */
  async hmp(commandLine: string, options: { timeoutMs?: number } = {}): Promise<string> {
    const refused = commandLineProblem(commandLine);
    if (refused) throw new MonitorCommandError(commandLine, refused, this.socketPath);
    const raw = await this.execute('human-monitor-command', { 'command-line': commandLine }, options);
    if (typeof raw !== 'string') {
      const error = new MonitorProtocolError(
        `QEMU answered "${commandLine}" with ${JSON.stringify(raw)?.slice(0, 80)}, not text`,
        this.socketPath,
      );
      this.shutdown(error);
      throw error;
    }
    const text = raw.replace(/\r\n/g, '\n');
    const failure = hmpFailure(text);
    if (failure) throw new MonitorCommandError(commandLine, failure, this.socketPath);
    return text;
  }

  /** QEMU's run state (`query-status`): running, paused, shutdown, restore-vm, io-error, ... */
  async queryStatus(options: { timeoutMs?: number } = {}): Promise<string> {
    const reply = await this.execute('query-status', undefined, options);
    if (!isObject(reply) || typeof reply.status !== 'string') {
      const error = new MonitorProtocolError(
        `QEMU answered query-status with ${JSON.stringify(reply)?.slice(0, 80)}`,
        this.socketPath,
      );
      this.shutdown(error);
      throw error;
    }
    return reply.status;
  }

  /** The VM's block devices (`query-block`): what each holds, its format, size and snapshots, its I/O status. */
  async queryBlock(options: { timeoutMs?: number } = {}): Promise<BlockDevice[]> {
    const reply = await this.execute('query-block', undefined, options);
    if (!Array.isArray(reply)) {
      const error = new MonitorProtocolError(
        `QEMU answered query-block with ${JSON.stringify(reply)?.slice(0, 80)}`,
        this.socketPath,
      );
      this.shutdown(error);
      throw error;
    }
    return reply.filter(isObject).map(blockDevice);
  }

  /** Resolves with the first event for which `match` is true, or rejects at the deadline or on close. */
  waitForEvent(match: (e: QmpEvent) => boolean, timeoutMs: number): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      if (this.closedWith) return reject(this.closedWith);
      const onEvent = (e: QmpEvent) => {
        if (!match(e)) return;
        cleanup();
        resolve(e);
      };
      const onClose = (error: MonitorError) => {
        cleanup();
        reject(error);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new MonitorTimeoutError(
            `no matching QMP event within ${formatDuration(timeoutMs)}`,
            this.socketPath,
            undefined,
            timeoutMs,
          ),
        );
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off('event', onEvent);
        this.off('close', onClose);
      };
      this.on('event', onEvent);
      this.on('close', onClose);
    });
  }

  /** Closes the connection; QEMU keeps running. Resolves once the socket is closed. */
  async close(): Promise<void> {
    if (this.socket.destroyed) return;
    // Mark the close as ours first, so the socket's 'close' does not read as QEMU going away.
    this.closedWith ??= closedByQvm(this.socketPath);
    await endSocket(this.socket);
  }

  /**
   * Writes a request with the others sent in the same tick: a VM observed with three commands costs QEMU one
   * wake-up instead of three, which counts with a hundred VMs on two cores.
   */
  private writeSoon(line: string): void {
    if (!this.socket.writableCorked) {
      this.socket.cork();
      process.nextTick(() => this.socket.uncork());
    }
    this.socket.write(line);
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let newline = this.buffer.indexOf('\n');
    while (newline >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line) this.onMessage(line);
      newline = this.buffer.indexOf('\n');
    }
  }

  /**
   * One line from QEMU. Every message is checked for its shape before it is used: a peer that sends `null`, a
   * reply of the wrong type or garbage closes the connection with a protocol error, never a TypeError.
   */
  private onMessage(line: string): void {
    let message: unknown;
    try {
      message = JSON.parse(line);
    } catch {
      this.protocolError(`QEMU sent a line that is not JSON: ${line.slice(0, 80)}`);
      return;
    }
    if (!isObject(message)) {
      this.protocolError(`QEMU sent ${JSON.stringify(message)?.slice(0, 80)}, not a QMP message`);
      return;
    }
    if (typeof message.event === 'string') {
      if (message.data !== undefined && !isObject(message.data)) {
        this.protocolError(`QEMU sent an event whose data is not an object: ${line.slice(0, 80)}`);
        return;
      }
      this.emit('event', message as unknown as QmpEvent);
      return;
    }
    const error = 'error' in message ? message.error : undefined;
    if ('error' in message && (!isObject(error) || typeof error.desc !== 'string')) {
      this.protocolError(`QEMU sent an error reply without a description: ${line.slice(0, 80)}`);
      return;
    }
    if (!('error' in message) && !('return' in message)) {
      this.protocolError(`QEMU sent a message that is neither a reply nor an event: ${line.slice(0, 80)}`);
      return;
    }
    // QEMU answers a request it could not parse with an error that has no id: it is the oldest request's.
    const id =
      typeof message.id === 'string' ? message.id : error ? this.pending.keys().next().value : undefined;
    const pending = id ? this.pending.get(id) : undefined;
    if (!pending || !id) return; // a reply to a command we gave up on
    this.pending.delete(id);
    clearTimeout(pending.timer);
    if (isObject(error)) {
      const errorClass = typeof error.class === 'string' ? error.class : undefined;
      pending.reject(
        new MonitorCommandError(pending.command, String(error.desc), this.socketPath, errorClass),
      );
    } else {
      pending.resolve(message.return);
    }
  }

  private protocolError(message: string): void {
    this.shutdown(new MonitorProtocolError(message, this.socketPath));
  }

  private shutdown(reason: MonitorError): void {
    if (this.closedWith) return;
    this.closedWith = reason;
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      this.pending.delete(id);
      pending.reject(
        reason instanceof MonitorClosedError
          ? new MonitorClosedError(
              `QEMU closed the monitor connection on ${this.socketPath} while running "${pending.command}" (the process exited or quit)`,
              this.socketPath,
              pending.command,
            )
          : reason,
      );
    }
    this.socket.destroy();
    this.emit('close', reason);
  }
}
