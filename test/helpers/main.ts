/** qvm's `main` run in process, with its output captured and colour off: for help and explain texts. */
import { Writable } from 'node:stream';
import pc from 'picocolors';
import { main } from '../../src/cli/main.js';
import type { Output } from '../../src/cli/output.js';
import type { CliResult } from './cli.js';

/** A stream that keeps what is written to it. */
class Sink extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: () => void): void {
    this.text += String(chunk);
    done();
  }
}

/** `qvm ARGS...` in this process: exit code, stdout and stderr. */
export async function runMain(args: string[]): Promise<CliResult> {
  const out = new Sink();
  const err = new Sink();
  const output: Output = { out, err, color: pc.createColors(false), interactive: false };
  const exitCode = await main(['node', 'qvm', ...args], output);
  return { exitCode, stdout: out.text, stderr: err.text };
}
