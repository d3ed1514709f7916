/** Runs the real qvm executable (bin/qvm.js over dist/, built by global-setup) as a user would. */
import { fileURLToPath } from 'node:url';
import { execa, type Options } from 'execa';

export const QVM_BIN = fileURLToPath(new URL('../../bin/qvm.js', import.meta.url));

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export async function qvm(args: string[], options: Options = {}): Promise<CliResult> {
  const result = await execa('node', [QVM_BIN, ...args], {
    reject: false,
    timeout: 120_000,
    stripFinalNewline: false,
    ...options,
    env: { NO_COLOR: '1', ...options.env },
  });
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}
