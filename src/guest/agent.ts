/**
 * A client of qemu-guest-agent (QGA), through the virtio-serial channel QEMU serves on a unix socket in the
 * VM's runtime folder.
 *
 * The agent's protocol is QMP's JSON without QMP's manners, and each quirk below bit a client on QEMU 7.2:
 * - QEMU accepts the connection whether or not an agent runs in the guest: silence is the only sign of "no
 *   agent", so every exchange has a deadline, and "not connected" is its own error.
 * - There are no request ids. A reply can be pending from before this connection (an earlier client that
 *   gave up, a snapshot taken mid-exchange), so a session starts with `guest-sync-delimited`: the agent
 *   answers `0xFF {"return": ID}` after flushing what it had, and everything before our ID is dropped.
 * - Syncs sent before the agent started are answered later, all of them: the sync is resent every second with a
 *   new id, and late answers to our own ids are skipped afterwards.
 * - The stream is bytes, not text: a 0xFF can sit between two replies in one read.
 * - One client at a time: a second connection gets nothing until the first closes. A session that timed out
 *   is closed, never reused; the next operation opens a new one and syncs again.
 * - `guest-shutdown` sends no reply when it works.
 */
import net from 'node:net';
import { QvmError } from '../errors.js';
import { crypto } from '../runtime/builtins.js';

/** The agent did not answer, or its socket could not be reached. */
export class AgentUnavailableError extends QvmError {}

/** The agent answered with an error. Keeps the agent's own words. */
export class AgentCommandError extends QvmError {
  constructor(
    readonly command: string,
    readonly agentMessage: string,
    readonly errorClass: string | undefined,
  ) {
    super(`${command}: ${agentMessage}`);
  }
}

const DELIMITER = 0xff;
const NEWLINE = 0x0a;
const SYNC_RESEND_MS = 1000;

export interface AgentOptions {
  /** How long to wait for the agent to answer the first sync (an agent still starting needs seconds). */
  syncTimeoutMs?: number;
}

type Reply = { return: unknown } | { error: { class?: string; desc?: string } };

/** One connection to the agent, synchronised; calls are answered in order, one at a time. */
export class AgentSession {
  private buffer = Buffer.alloc(0);
  private waiter: ((reply: Reply) => void) | undefined;
  private failure: ((error: Error) => void) | undefined;
  private closedWith: Error | undefined;
  private readonly syncIds = new Set<number>();
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly socket: net.Socket,
    readonly path: string,
  ) {
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    const closed = (error: Error) => {
      this.closedWith ??= error;
      this.failure?.(this.closedWith);
    };
    socket.on('error', (error) =>
      closed(new AgentUnavailableError(`guest agent at ${path}: ${error.message}`)),
    );
    socket.on('close', () =>
      closed(new AgentUnavailableError(`guest agent at ${path}: the connection closed`)),
    );
  }

  /** Connects and synchronises; AgentUnavailableError when the socket is missing or no agent answers. */
  static async open(path: string, options: AgentOptions = {}): Promise<AgentSession> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(path);
      s.once('connect', () => resolve(s));
      s.once('error', (error: NodeJS.ErrnoException) =>
        reject(
          new AgentUnavailableError(
            error.code === 'ENOENT' || error.code === 'ECONNREFUSED'
              ? `no guest agent channel at ${path} (is the VM running, with agent: true?)`
              : `guest agent at ${path}: ${error.message}`,
          ),
        ),
      );
    });
    const session = new AgentSession(socket, path);
    try {
      await session.sync(options.syncTimeoutMs ?? 10_000);
    } catch (error) {
      session.close();
      throw error;
    }
    return session;
  }

  /** Runs an agent command and returns its `return` value; rejects on an agent error or after the deadline. */
  call<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 10_000): Promise<T> {
    const run = this.queue.then(() => this.exchange<T>(command, args, timeoutMs));
    this.queue = run.catch(() => {});
    return run;
  }

  /**
   * Sends a command that has no reply when it works (`guest-shutdown`): resolves once no error came back
   * within `graceMs`.
   */
  async send(command: string, args?: Record<string, unknown>, graceMs = 1500): Promise<void> {
    try {
      await this.call(command, args, graceMs);
    } catch (error) {
      // No reply in time is what success looks like here; a closed connection (the guest going down) too.
      if (error instanceof AgentUnavailableError) return;
      throw error;
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private async sync(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const id = crypto().randomInt(1, 2 ** 31);
      this.syncIds.add(id);
      // The leading 0xFF resets the agent's JSON parser, whatever half-message an earlier client left.
      this.write(
        Buffer.concat([
          Buffer.from([DELIMITER]),
          Buffer.from(`${JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id } })}\n`),
        ]),
      );
      const left = deadline - Date.now();
      try {
        const reply = await this.next(Math.min(SYNC_RESEND_MS, Math.max(1, left)), (r) => this.isOwnSync(r));
        if ('return' in reply) return;
      } catch (error) {
        if (!(error instanceof AgentTimeout)) throw error;
      }
      if (Date.now() >= deadline) {
        throw new AgentUnavailableError(
          `the guest agent did not answer within ${Math.round(timeoutMs / 1000)}s (is qemu-guest-agent installed and running in the guest?)`,
        );
      }
    }
  }

  private async exchange<T>(command: string, args: Record<string, unknown> | undefined, timeoutMs: number) {
    if (this.closedWith) throw this.closedWith;
    this.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) })}\n`);
    let reply: Reply;
    try {
      reply = await this.next(timeoutMs, (r) => !this.isOwnSync(r));
    } catch (error) {
      if (error instanceof AgentTimeout) {
        // The reply may still come and would answer the next call: this session is done.
        this.close();
        throw new AgentUnavailableError(
          `the guest agent did not answer ${command} within ${Math.round(timeoutMs / 100) / 10}s`,
        );
      }
      throw error;
    }
    if ('error' in reply)
      throw new AgentCommandError(command, reply.error.desc ?? 'failed', reply.error.class);
    return reply.return as T;
  }

  private isOwnSync(reply: Reply): boolean {
    return 'return' in reply && typeof reply.return === 'number' && this.syncIds.has(reply.return);
  }

  private write(data: string | Buffer): void {
    if (!this.closedWith) this.socket.write(data);
  }

  /** The next reply that `accept` takes; the others (stale replies, parse errors of the 0xFF) are dropped. */
  private next(timeoutMs: number, accept: (reply: Reply) => boolean): Promise<Reply> {
    return new Promise((resolve, reject) => {
      if (this.closedWith) {
        reject(this.closedWith);
        return;
      }
      const timer = setTimeout(() => {
        this.waiter = undefined;
        this.failure = undefined;
        reject(new AgentTimeout());
      }, timeoutMs);
      this.failure = (error) => {
        clearTimeout(timer);
        this.waiter = undefined;
        this.failure = undefined;
        reject(error);
      };
      this.waiter = (reply) => {
        if (!accept(reply)) return;
        clearTimeout(timer);
        this.waiter = undefined;
        this.failure = undefined;
        resolve(reply);
      };
    });
  }

  private receive(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (let end = this.buffer.indexOf(NEWLINE); end >= 0; end = this.buffer.indexOf(NEWLINE)) {
      let line = this.buffer.subarray(0, end);
      this.buffer = this.buffer.subarray(end + 1);
      while (line.length && line[0] === DELIMITER) line = line.subarray(1);
      let reply: unknown;
      try {
        reply = JSON.parse(line.toString('utf8'));
      } catch {
        continue;
      }
      if (isReply(reply)) this.waiter?.(reply);
    }
  }
}

class AgentTimeout extends Error {}

function isReply(value: unknown): value is Reply {
  if (typeof value !== 'object' || value === null) return false;
  if ('return' in value) return true;
  return 'error' in value && typeof (value as { error: unknown }).error === 'object';
}

/** Opens a session, runs `fn`, and always closes it: the agent serves one client at a time. */
export async function withAgent<T>(
  path: string,
  fn: (agent: AgentSession) => Promise<T>,
  options: AgentOptions = {},
): Promise<T> {
  const agent = await AgentSession.open(path, options);
  try {
    return await fn(agent);
  } finally {
    agent.close();
  }
}

/** Sets the guest's clock to the host's (`guest-set-time` with nanoseconds; the agent also writes the RTC). */
export async function setGuestTime(path: string, options: AgentOptions = {}): Promise<void> {
  await withAgent(
    path,
    // The time is taken after the sync, so the login and connection cost nothing.
    (agent) => agent.call('guest-set-time', { time: Date.now() * 1_000_000 }, 10_000),
    options,
  );
}

/** An interface of the guest, as `guest-network-get-interfaces` lists it. */
export interface GuestInterface {
  name: string;
  addresses: string[];
}

/** The guest's interfaces with their IP addresses (loopback left out). */
export async function guestAddresses(agent: AgentSession, timeoutMs = 3000): Promise<GuestInterface[]> {
  const raw = await agent.call<unknown>('guest-network-get-interfaces', undefined, timeoutMs);
  if (!Array.isArray(raw)) return [];
  const out: GuestInterface[] = [];
  for (const item of raw) {
    if (typeof item !== 'object' || item === null) continue;
    const { name, 'ip-addresses': ips } = item as { name?: unknown; 'ip-addresses'?: unknown };
    if (typeof name !== 'string' || name === 'lo' || !Array.isArray(ips)) continue;
    const addresses = ips
      .map((ip) => (ip as { 'ip-address'?: unknown; prefix?: unknown }) ?? {})
      .filter((ip) => typeof ip['ip-address'] === 'string')
      .map((ip) => `${ip['ip-address']}/${ip.prefix}`);
    out.push({ name, addresses });
  }
  return out;
}
