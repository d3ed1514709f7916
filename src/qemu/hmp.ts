/**
 * A client for a plain HMP socket (`-monitor unix:PATH,server,nowait`), the kind the classic recipe sets up.
 *
 * QEMU quirks handled here:
 * - the monitor greets with a banner and a `(qemu) ` prompt, and every command's output ends at the next prompt;
 * - every byte sent is echoed back through readline, with terminal redraw sequences (ESC[K, ESC[D); the echo
 *   ends with the CRLF that readline prints when it takes the command, so output starts after it;
 * - closing right after writing loses the command (QEMU reads one byte per main-loop turn and drops the
 *   rest on hang-up), so the client always waits for the prompt before it closes.
 */
import type net from 'node:net';
import {
  MonitorClosedError,
  MonitorCommandError,
  type MonitorError,
  MonitorProtocolError,
  MonitorTimeoutError,
} from '../errors.js';
import { formatDuration } from '../model/units.js';
import { hmpFailure, hmpLineProblem } from './command-line.js';
import { closedByQvm, endSocket, type GreetedSocket, openAndGreet } from './socket.js';

const PROMPT = '(qemu) ';

/** Removes terminal control sequences: CSI (ESC[...X), other ESC sequences, and stray control bytes. */
export function stripTerminalCodes(text: string): string {
  return (
    text
      // biome-ignore lint/suspicious/noControlCharactersInRegex: these are the escape sequences being removed
      .replace(/\u001b\[[0-9;?]*[ -/]*[@-~]/g, '')
      // biome-ignore lint/suspicious/noControlCharactersInRegex: ditto, two-byte ESC sequences
      .replace(/\u001b[@-Z\\-_]/g, '')
      // biome-ignore lint/suspicious/noControlCharactersInRegex: ditto, bytes a terminal would act on
      .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g, '')
  );
}

/** A connected HMP monitor: one command at a time, its output delimited by the prompt. */
export class HmpClient {
  readonly kind = 'hmp';
  private buffer = '';
  private waiter: { resolve: (text: string) => void; reject: (e: Error) => void } | undefined;
  private closedWith: MonitorError | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly socket: net.Socket,
    readonly socketPath: string,
    readonly banner: string,
    readonly timeoutMs: number,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closedWith ??= new MonitorClosedError(
        `QEMU closed the monitor connection on ${socketPath} (the process exited or quit)`,
        socketPath,
        undefined,
      );
      this.waiter?.reject(this.closedWith);
      this.waiter = undefined;
    });
  }

  static async connect(socketPath: string, options: { timeoutMs?: number } = {}): Promise<HmpClient> {
    const g = await openAndGreet(socketPath, options.timeoutMs);
    return HmpClient.fromBanner(g, socketPath);
  }

  /** Finishes connecting on a socket whose first bytes were already read: waits for the first prompt. */
  static async fromBanner(greeted: GreetedSocket, socketPath: string): Promise<HmpClient> {
    const { socket, first, timeoutMs } = greeted;
    const text = first.toString('utf8');
    if (!/^QEMU .*monitor/.test(stripTerminalCodes(text))) {
      socket.destroy();
      throw new MonitorProtocolError(
        `${socketPath} does not speak HMP: it sent ${JSON.stringify(text.slice(0, 80))}`,
        socketPath,
      );
    }
    const client = new HmpClient(socket, socketPath, '', timeoutMs);
    const bannerPromise = client.untilPrompt(greeted.remainingMs(), 'the first prompt');
    client.onData(text);
    socket.resume();
    const banner = await bannerPromise;
    (client as { banner: string }).banner = stripTerminalCodes(banner).trim();
    return client;
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /**
   * Sends one command and returns its output: no echo, no escape sequences, LF line ends, trailing newline
   * trimmed. Throws MonitorCommandError when the output is one of QEMU's failure messages.
   */
  hmp(commandLine: string, options: { timeoutMs?: number } = {}): Promise<string> {
    const run = async () => {
      const refused = hmpLineProblem(commandLine);
      if (refused) throw new MonitorCommandError(commandLine, refused, this.socketPath);
      if (this.closedWith) throw this.closedWith;
      const reply = this.untilPrompt(options.timeoutMs ?? this.timeoutMs, commandLine);
      this.socket.write(`${commandLine}\r`);
      const raw = await reply;
      // Readline prints CRLF when it takes the line: everything before it is the echo.
      const endOfEcho = raw.indexOf('\r\n');
      const body = endOfEcho >= 0 ? raw.slice(endOfEcho + 2) : '';
      const text = stripTerminalCodes(body.replace(/\r\n/g, '\n').replace(/\r/g, ''));
      const failure = hmpFailure(text);
      if (failure) throw new MonitorCommandError(commandLine, failure, this.socketPath);
      return text;
    };
    // One command at a time: output is only delimited by the prompt.
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => {});
    return result;
  }

  async close(): Promise<void> {
    if (this.socket.destroyed) return;
    this.closedWith ??= closedByQvm(this.socketPath);
    await endSocket(this.socket);
  }

  private untilPrompt(timeoutMs: number, what: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        this.closedWith = new MonitorTimeoutError(
          `QEMU did not answer "${what}" within ${formatDuration(timeoutMs)} on ${this.socketPath}: the process is frozen (stopped or hung), or another client holds this monitor`,
          this.socketPath,
          what,
          timeoutMs,
        );
        this.socket.destroy();
        reject(this.closedWith);
      }, timeoutMs);
      this.waiter = {
        resolve: (text) => {
          clearTimeout(timer);
          resolve(text);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
    });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    if (this.waiter && this.buffer.endsWith(PROMPT)) {
      const text = this.buffer.slice(0, -PROMPT.length);
      this.buffer = '';
      const waiter = this.waiter;
      this.waiter = undefined;
      waiter.resolve(text);
    }
  }
}
