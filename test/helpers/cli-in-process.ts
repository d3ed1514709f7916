/**
 * qvm run in the test's own process through `main`, with its output collected: for commands that touch no VM
 * (export), where a whole Node start-up per case would make a table of cases slow.
 */
import { Writable } from 'node:stream';
import pc from 'picocolors';
import { main } from '../../src/cli/main.js';
import type { CliResult } from './cli.js';

/** Runs qvm in this process (fast: no Node start-up per row) and collects what it prints. */
export async function qvmInProcess(args: string[]): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const sink = (append: (s: string) => void) =>
    new Writable({
      write(chunk, _encoding, done) {
        append(String(chunk));
        done();
      },
    });
  const output = {
    out: sink((s) => {
      stdout += s;
    }),
    err: sink((s) => {
      stderr += s;
    }),
    color: pc.createColors(false),
    interactive: false,
  };
  const exitCode = await main(['node', 'qvm', ...args], output);
  return { exitCode, stdout, stderr };
}
