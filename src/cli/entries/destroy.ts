/** `qvm destroy` alone, bundled on its own: bin/qvm.js runs it when the command line starts with `destroy`. */
import { declareDestroy } from '../commands.js';
import { type Output, processOutput } from '../output.js';
import { runProgram } from '../program.js';

export function main(argv: string[], output: Output = processOutput()): Promise<number> {
  return runProgram(argv, output, [declareDestroy]);
}
