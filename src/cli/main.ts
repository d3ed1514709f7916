/**
 * The qvm command line. This is the only place that prints errors and picks exit codes: commands return an
 * exit code or throw, and `main` turns what they throw into a message (no stack trace for anything a user
 * can cause) and an exit status.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { formatDiagnostic, isQvmError, ManifestError, MonitorCommandError } from '../errors.js';
import { parseDuration } from '../util/units.js';
import { consoleCommand } from './console.js';
import { monitorCommand } from './monitor.js';
import { type Output, processOutput, writeLine } from './output.js';
import { manifestErrorSummary, validateCommand } from './validate.js';

const packageJson = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

export const DEFAULT_MANIFEST = 'qvm.yaml';

/** Commander parser for duration flags: `500ms`, `30s`, `2m`, or seconds. */
export function durationOption(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined)
    throw new InvalidArgumentError('must be a duration such as 500ms, 10s or 2m, or a number of seconds');
  return ms;
}

function fileOption(): Option {
  return new Option('-f, --file <path>', 'the manifest').default(DEFAULT_MANIFEST);
}

function timeoutOption(): Option {
  return new Option('--timeout <duration>', 'how long to wait for QEMU to answer')
    .default(10_000, '10s')
    .argParser(durationOption);
}

export function buildProgram(output: Output, setExitCode: (code: number) => void): Command {
  const program = new Command('qvm')
    .description(
      'Declarative QEMU virtual machines: plan and apply a manifest to real QEMU processes, live where QEMU allows.',
    )
    .version(packageJson.version, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({
      writeOut: (s) => output.out.write(s),
      writeErr: (s) => output.err.write(s),
    })
    .exitOverride();

  program
    .command('validate')
    .description(
      'check a manifest without touching any VM; prints every problem, each with file, line and field',
    )
    .addOption(fileOption())
    .action(async (opts: { file: string }) => setExitCode(await validateCommand(opts.file, output)));

  program
    .command('monitor')
    .description(
      'send one command to a QEMU monitor (QMP or HMP socket) and print its output; exit 1 when QEMU reports a failure, 2 when QEMU cannot be reached or does not answer',
    )
    .requiredOption(
      '-s, --socket <path>',
      'the monitor socket (QMP or HMP, told apart by what it says first)',
    )
    .addOption(timeoutOption())
    .argument('<command...>', 'an HMP command line such as `info usernet`, or raw QMP JSON on a QMP socket')
    .addHelpText(
      'after',
      `
Examples:
  qvm monitor --socket /tmp/t/mon.sock hostfwd_add tcp::10080-:80
  qvm monitor --socket /tmp/t/mon.sock info usernet
  qvm monitor --socket /tmp/t/qmp.sock '{"execute": "query-status"}'
`,
    )
    .action(async (words: string[], opts: { socket: string; timeout: number }) =>
      setExitCode(await monitorCommand(opts.socket, words, { timeoutMs: opts.timeout }, output)),
    );

  program
    .command('console')
    .description(
      'interactive monitor with line editing, history and completion; Ctrl-D leaves and the VM keeps running',
    )
    .requiredOption('-s, --socket <path>', 'the monitor socket (QMP or HMP)')
    .addOption(timeoutOption())
    .action(async (opts: { socket: string; timeout: number }) =>
      setExitCode(await consoleCommand(opts.socket, { timeoutMs: opts.timeout }, output)),
    );

  return program;
}

/** Runs qvm with `argv` (as process.argv) and returns the exit code. Never throws. */
export async function main(argv: string[], output: Output = processOutput()): Promise<number> {
  let exitCode = 0;
  const program = buildProgram(output, (code) => {
    exitCode = code;
  });
  try {
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
    writeLine(err, color.red(manifestErrorSummary(error)));
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
