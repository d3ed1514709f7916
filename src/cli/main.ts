/**
 * The whole qvm command line. bin/qvm.js runs this for any command without a bundle of its own (`entries/`),
 * and for anything that is not a command (help, version, completion).
 *
 * Command modules are imported when their command runs, so `qvm monitor` does not pay for loading the
 * manifest validator or the process supervisor: for a one-shot command, startup is most of the time.
 */
import type { Command } from 'commander';
import {
  type DeclareCommand,
  declareApply,
  declareCompletion,
  declareConsole,
  declareCp,
  declareDestroy,
  declareExec,
  declareExplain,
  declareExport,
  declareImages,
  declareInit,
  declareLogs,
  declareMonitor,
  declarePlan,
  declarePull,
  declareSchema,
  declareScreenshot,
  declareSnapshot,
  declareSsh,
  declareSshConfig,
  declareStatus,
  declareValidate,
  declareVnc,
  declareWatch,
} from './commands.js';
import { type Output, processOutput } from './output.js';
import { buildProgram as buildProgramOf, runProgram } from './program.js';

/** Every command, in the order help lists them. */
export const ALL_COMMANDS: readonly DeclareCommand[] = [
  declareValidate,
  declarePlan,
  declareApply,
  declareWatch,
  declareStatus,
  declareDestroy,
  declareLogs,
  declareSnapshot,
  declareSsh,
  declareCp,
  declareSshConfig,
  declareExec,
  declareScreenshot,
  declareVnc,
  declarePull,
  declareImages,
  declareMonitor,
  declareConsole,
  declareExport,
  declareInit,
  declareExplain,
  declareSchema,
  declareCompletion,
];

export function buildProgram(output: Output, setExitCode: (code: number) => void): Command {
  return buildProgramOf(output, setExitCode, ALL_COMMANDS);
}

/** Runs qvm with `argv` (as process.argv) and returns the exit code. Never throws. */
export function main(argv: string[], output: Output = processOutput()): Promise<number> {
  return runProgram(argv, output, ALL_COMMANDS, async (program) => {
    // The completion scripts' question, answered before commander parses anything: its words are a partial
    // command line, options included. Hidden from help.
    if (argv[2] !== '__complete') return undefined;
    const { completeCommand } = await import('./completion.js');
    return completeCommand(program, argv.slice(3), output);
  });
}
