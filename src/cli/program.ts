/**
 * The root of qvm's command line, and the one place that prints errors and picks exit codes: commands
 * return an exit code or throw, and `runProgram` turns what they throw into a message (no stack trace for
 * anything a user can cause) and an exit status.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { formatDiagnostic, isQvmError, ManifestError, MonitorCommandError } from '../errors.js';
import type { DeclareCommand } from './commands.js';
import { addExamples } from './help-examples.js';
import { type Output, withoutColor, writeLine } from './output.js';

const packageJson = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

/** The `qvm` program with the given commands declared, each with its examples. */
export function buildProgram(
  output: Output,
  setExitCode: (code: number) => void,
  commands: readonly DeclareCommand[],
): Command {
  const program = new Command('qvm')
    .description(
      'Declarative QEMU virtual machines: plan and apply a manifest to real QEMU processes, live where QEMU allows.',
    )
    .version(packageJson.version, '-V, --version')
    .option('--no-color', 'no colour, even on a terminal (as NO_COLOR=1 does)')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({
      writeOut: (s) => output.out.write(s),
      writeErr: (s) => output.err.write(s),
    })
    .exitOverride()
    .hook('preAction', () => {
      if (program.opts().color === false) withoutColor(output);
    });
  for (const declare of commands) declare(program, output, setExitCode);
  addExamples(program);
  return program;
}

/**
 * Parses `argv` (as process.argv) with `program` and runs the command; returns the exit code and never throws.
 * `before` may answer instead of commander (the completion scripts' question).
 */
export async function runProgram(
  argv: string[],
  output: Output,
  commands: readonly DeclareCommand[],
  before?: (program: Command) => Promise<number | undefined>,
): Promise<number> {
  let exitCode = 0;
  const program = buildProgram(
    output,
    (code) => {
      exitCode = code;
    },
    commands,
  );
  try {
    const answered = await before?.(program);
    if (answered !== undefined) return answered;
    await program.parseAsync(argv);
    return exitCode;
  } catch (error) {
    return reportError(error, output);
  }
}

export function reportError(error: unknown, output: Output): number {
  const { err, color } = output;
  if (error instanceof CommanderError) {
    // Commander has already printed its message (and help, for --help).
    return error.exitCode === 0 ? 0 : 1;
  }
  if (error instanceof ManifestError) {
    for (const d of error.diagnostics) writeLine(err, formatDiagnostic(d));
    const n = error.diagnostics.length;
    writeLine(err, color.red(`${n} problem${n === 1 ? '' : 's'} in ${error.file}`));
    return error.exitCode;
  }
  if (error instanceof MonitorCommandError) {
    // QEMU's own words, unadorned: scripts grep for them.
    writeLine(err, error.qemuMessage);
    return error.exitCode;
  }
  if (isQvmError(error)) {
    writeLine(err, `${color.red('error:')} ${error.message}`);
    return error.exitCode;
  }
  const detail =
    error instanceof Error ? (process.env.QVM_DEBUG ? error.stack : error.message) : String(error);
  writeLine(err, `${color.red('internal error')} (this is a bug in qvm; please report it): ${detail}`);
  return 70;
}
