/**
 * Where the CLI writes, and whether it may use colour. Colour only when both stdout and stderr are terminals
 * (so `qvm apply 2> log` keeps escape codes out of the log), never with NO_COLOR or `--no-color`, and always
 * with FORCE_COLOR (https://no-color.org, https://force-color.org). Live progress only on a terminal.
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

/** Whether colour is on for output to these streams, given the environment. */
export function colorEnabled(streams: { isTTY?: boolean }[], env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0') return true;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  return streams.every((s) => Boolean(s.isTTY)) && env.TERM !== 'dumb';
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
  const enabled = options.color ?? colorEnabled([process.stdout, process.stderr]);
  return {
    out: process.stdout,
    err: process.stderr,
    color: pc.createColors(enabled),
    // A dumb terminal cannot redraw lines in place: plain lines there, as in a pipe.
    interactive: Boolean(process.stdout.isTTY) && process.env.TERM !== 'dumb',
  };
}

/** No colour from here on, whatever the terminal: `--no-color`. */
export function withoutColor(output: Output): void {
  output.color = pc.createColors(false);
}

export function writeLine(stream: Writable, text = ''): void {
  stream.write(text.endsWith('\n') ? text : `${text}\n`);
}
