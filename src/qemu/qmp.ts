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
import { endSocket, openAndGreet } from './socket.js';

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
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
    return QmpClient.fromGreeting(g.socket, socketPath, g.first, g.remainingMs(), g.timeoutMs);
  }

  /**
   * Finishes the handshake on a socket whose first bytes were already read (see connectMonitor, which sniffs
   * whether a socket speaks QMP or HMP).
   */
  static async fromGreeting(
    socket: net.Socket,
    socketPath: string,
    first: Buffer,
    remainingMs: number,
    timeoutMs: number,
  ): Promise<QmpClient> {
    let text = first.toString('utf8');
    const newline = text.indexOf('\n');
    // The greeting is one line; a socket may deliver it in pieces.
    if (newline < 0) {
      text += await new Promise<string>((resolve, reject) => {
        let more = '';
        const timer = setTimeout(
          () => {
            socket.destroy();
            reject(
              new MonitorTimeoutError(
                `incomplete QMP greeting on ${socketPath}`,
                socketPath,
                undefined,
                timeoutMs,
              ),
            );
          },
          Math.max(1, remainingMs),
        );
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
      if (!greeting.QMP) throw new Error('no QMP key');
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
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: { timeoutMs?: number } = {},
  ): Promise<T> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const id = `qvm-${this.nextId++}`;
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const label = command === 'human-monitor-command' ? String(args?.['command-line']) : command;
    return new Promise<T>((resolve, reject) => {
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
      this.pending.set(id, { command: label, resolve: resolve as (v: unknown) => void, reject, timer });
      this.socket.write(
        `${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`,
      );
    });
  }

  /**
   * Runs an HMP command through `human-monitor-command` and returns its text with LF line ends. QEMU returns
   * success even when the command failed, so failure is recognised in the text (command-line.ts).
   */
  async hmp(commandLine: string, options: { timeoutMs?: number } = {}): Promise<string> {
    const refused = commandLineProblem(commandLine);
    if (refused) throw new MonitorCommandError(commandLine, refused, this.socketPath);
    const raw = await this.execute<string>('human-monitor-command', { 'command-line': commandLine }, options);
    const text = raw.replace(/\r\n/g, '\n');
    const failure = hmpFailure(text);
    if (failure) throw new MonitorCommandError(commandLine, failure, this.socketPath);
    return text;
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
    this.closedWith ??= new MonitorClosedError(
      `connection to ${this.socketPath} closed by qvm`,
      this.socketPath,
      undefined,
    );
    await endSocket(this.socket);
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

  private onMessage(line: string): void {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line);
    } catch {
      this.shutdown(
        new MonitorProtocolError(`QEMU sent a line that is not JSON: ${line.slice(0, 80)}`, this.socketPath),
      );
      return;
    }
    if (typeof message.event === 'string') {
      this.emit('event', message as unknown as QmpEvent);
      return;
    }
    const id = typeof message.id === 'string' ? message.id : undefined;
    const pending = id ? this.pending.get(id) : undefined;
    if (!pending || !id) return; // a reply to a command we gave up on
    this.pending.delete(id);
    clearTimeout(pending.timer);
    if ('error' in message) {
      const error = message.error as { class?: string; desc?: string };
      pending.reject(
        new MonitorCommandError(pending.command, error.desc ?? 'unknown error', this.socketPath, error.class),
      );
    } else {
      pending.resolve(message.return);
    }
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
