/** Runs the real qvm executable (bin/qvm.js over dist/, built by global-setup) as a user would. */
import { fileURLToPath } from 'node:url';
import { execa, type Options } from 'execa';

export const QVM_BIN = fileURLToPath(new URL('../../bin/qvm.js', import.meta.url));

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * The environment of a qvm run with its own runtime root: the state root (records that outlive processes)
 * sits beside it, so no test ever reads or writes the user's own ~/.local/state/qvm or /run/qvm.
 */
export function qvmEnv(runtime: string): Record<string, string> {
  return { QVM_RUNTIME_DIR: runtime, QVM_STATE_DIR: `${runtime}-state` };
}

export async function qvm(args: string[], options: Options = {}): Promise<CliResult> {
  const result = await execa('node', [QVM_BIN, ...args], {
    reject: false,
    timeout: 120_000,
    stripFinalNewline: false,
    ...options,
    env: {
      NO_COLOR: '1',
      ...options.env,
      ...(options.env?.QVM_RUNTIME_DIR && !options.env.QVM_STATE_DIR
        ? { QVM_STATE_DIR: `${options.env.QVM_RUNTIME_DIR}-state` }
        : {}),
    },
  });
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}
