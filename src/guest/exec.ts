/**
 * Runs a command in the guest through the agent (`qvm exec`), with no network or SSH, streaming its output.
 *
 * `guest-exec` with `capture-output` hands the output over only when the process has exited (QGA 7.2 buffers
 * it), so a long build would print nothing until its end. Instead the command runs under `/bin/sh` with its
 * stdout and stderr in two files in the guest's /run (a tmpfs, private to root, as the agent runs), which qvm
 * reads as they grow (`guest-file-read`) while polling `guest-exec-status`; then it removes them.
 */
import { crypto } from '../runtime/builtins.js';
import { AgentCommandError, type AgentSession } from './agent.js';

export interface ExecOptions {
  /** What the command reads on stdin (all of it is handed over at the start: the agent takes it in one go). */
  stdin?: Buffer;
  onStdout(chunk: Buffer): void;
  onStderr(chunk: Buffer): void;
  /** How often to look for output and the exit; 100 ms keeps the agent (one CPU under TCG) mostly idle. */
  pollMs?: number;
}

const READ_BYTES = 64 * 1024;

/**
 * The wrapper: `$1` is the base name of the output files; the rest is the command, exec'd so its exit status
 * is the wrapper's. A missing program makes sh exit 127 with "not found" on stderr, as in a shell.
 */
const WRAPPER = 'b=$1; shift; umask 077; exec "$@" >"$b.out" 2>"$b.err"';

/** Runs `argv` in the guest; resolves with its exit status (128+N when a signal N ended it). */
export async function agentExec(agent: AgentSession, argv: string[], options: ExecOptions): Promise<number> {
  const base = `/run/qvm-exec-${crypto().randomBytes(8).toString('hex')}`;
  const { pid } = await agent.call<{ pid: number }>('guest-exec', {
    path: '/bin/sh',
    arg: ['-c', WRAPPER, 'sh', base, ...argv],
    ...(options.stdin ? { 'input-data': options.stdin.toString('base64') } : {}),
  });
  const pollMs = options.pollMs ?? 100;
  const outputs = [
    { file: `${base}.out`, emit: options.onStdout, handle: undefined as number | undefined },
    { file: `${base}.err`, emit: options.onStderr, handle: undefined as number | undefined },
  ];
  try {
    let status: ExecStatus | undefined;
    while (!status?.exited) {
      status = await agent.call<ExecStatus>('guest-exec-status', { pid });
      // Read after the status: once it says exited, one more read of each file gets everything.
      for (const o of outputs) {
        o.handle ??= await openIfThere(agent, o.file);
        if (o.handle !== undefined) await drain(agent, o.handle, o.emit);
      }
      if (!status.exited) await new Promise((r) => setTimeout(r, pollMs));
    }
    if (status.signal !== undefined) return 128 + status.signal;
    return status.exitcode ?? 1;
  } finally {
    for (const o of outputs) {
      if (o.handle !== undefined) await agent.call('guest-file-close', { handle: o.handle }).catch(() => {});
    }
    await removeFiles(
      agent,
      outputs.map((o) => o.file),
    ).catch(() => {});
  }
}

interface ExecStatus {
  exited: boolean;
  exitcode?: number;
  signal?: number;
}

/** The file's handle, or undefined while the wrapper has not created it yet. */
async function openIfThere(agent: AgentSession, file: string): Promise<number | undefined> {
  try {
    return await agent.call<number>('guest-file-open', { path: file, mode: 'r' });
  } catch (error) {
    if (error instanceof AgentCommandError && /No such file/i.test(error.agentMessage)) return undefined;
    throw error;
  }
}

/** Reads what the file has now, to its current end. */
async function drain(agent: AgentSession, handle: number, emit: (chunk: Buffer) => void): Promise<void> {
  while (true) {
    const read = await agent.call<{ count: number; 'buf-b64': string; eof: boolean }>('guest-file-read', {
      handle,
      count: READ_BYTES,
    });
    if (read.count > 0) emit(Buffer.from(read['buf-b64'], 'base64'));
    if (read.count < READ_BYTES || read.eof) return;
  }
}

async function removeFiles(agent: AgentSession, files: string[]): Promise<void> {
  const { pid } = await agent.call<{ pid: number }>('guest-exec', { path: '/bin/rm', arg: ['-f', ...files] });
  for (let i = 0; i < 50; i++) {
    const status = await agent.call<ExecStatus>('guest-exec-status', { pid });
    if (status.exited) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}
