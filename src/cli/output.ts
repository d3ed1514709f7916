/**
 * Where the CLI writes, and whether it may use colour. Colour only on a terminal, never with NO_COLOR, and
 * always with FORCE_COLOR (https://no-color.org, https://force-color.org).
 */
import type { Writable } from 'node:stream';
import pc from 'picocolors';

export type Colors = ReturnType<typeof pc.createColors>;

export interface Output {
  out: Writable & { isTTY?: boolean; columns?: number };
  err: Writable & { isTTY?: boolean };
  color: Colors;
  /** True when stdout is a terminal: live progress displays are allowed. */
  interactive: boolean;
}

function colorEnabled(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0') return true;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  return Boolean(stream.isTTY) && env.TERM !== 'dumb';
}

/** Output to a pipe whose reader went away (`qvm watch --json | head`) ends qvm quietly, as other tools do. */
function exitOnClosedPipe(stream: NodeJS.WriteStream): void {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0);
    throw error;
  });
}

export function processOutput(options: { color?: boolean } = {}): Output {
  exitOnClosedPipe(process.stdout);
  const enabled = options.color ?? colorEnabled(process.stdout);
  return {
    out: process.stdout,
    err: process.stderr,
    color: pc.createColors(enabled),
    interactive: Boolean(process.stdout.isTTY),
  };
}

export function writeLine(stream: Writable, text = ''): void {
  stream.write(text.endsWith('\n') ? text : `${text}\n`);
}
