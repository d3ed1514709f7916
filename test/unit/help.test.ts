/** Help that teaches: examples at the end of every command's --help, each one a command line qvm accepts. */
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { commandPath, HELP_EXAMPLES } from '../../src/cli/help-examples.js';
import { buildProgram } from '../../src/cli/main.js';
import { processOutput } from '../../src/cli/output.js';
import { runMain } from '../helpers/main.js';

const program = buildProgram(processOutput({ color: false }), () => {});

function everyCommand(command: Command): Command[] {
  return [command, ...command.commands.flatMap(everyCommand)];
}

/** The words of each `qvm ...` command line in an example, up to a pipe, `&&`, a redirection or a comment. */
function qvmInvocations(example: string): string[][] {
  const code = example.replace(/\s+#\s.*$/, '');
  return [...code.matchAll(/(?:^|[\s(])qvm((?: +[^\s|&;>)#]+)*)/g)].map((m) =>
    m[1]!.trim().split(/ +/).filter(Boolean),
  );
}

/** The options an invocation uses that its command does not have; a subcommand that does not exist. */
function unknownWords(words: string[]): string[] {
  let command = program;
  const chain = [program];
  const unknown: string[] = [];
  let args = 0;
  for (const word of words) {
    if (word === '--') break;
    if (word.startsWith('-')) {
      const flag = word.split('=')[0]!;
      const known =
        flag === '--help' || chain.some((c) => c.options.some((o) => o.long === flag || o.short === flag));
      if (!known) unknown.push(word);
      continue;
    }
    const sub = args === 0 ? command.commands.find((c) => c.name() === word) : undefined;
    if (sub) {
      command = sub;
      chain.push(sub);
    } else if (command === program) {
      unknown.push(word);
    } else {
      args++;
    }
  }
  return unknown;
}

describe('--help', () => {
  const commands = everyCommand(program);

  it('knows every command', () => {
    expect(commands.map(commandPath).sort()).toEqual(Object.keys(HELP_EXAMPLES).sort());
  });

  it.each(commands.map(commandPath))('of "qvm %s" ends with two or three examples', async (name) => {
    const r = await runMain([...name.split(' ').filter(Boolean), '--help']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/\n\nExamples:\n( {2}\S.*\n){2,3}$/);
  });

  it('shows examples that use only commands and options qvm has', () => {
    const wrong: string[] = [];
    for (const [name, examples] of Object.entries(HELP_EXAMPLES)) {
      for (const example of examples) {
        const invocations = qvmInvocations(example);
        if (invocations.length === 0) wrong.push(`${name}: "${example}" does not run qvm`);
        for (const words of invocations) {
          const unknown = unknownWords(words);
          if (unknown.length) wrong.push(`${name}: "${example}": ${unknown.join(', ')}`);
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  it('puts the examples of a command under its own help, in order', async () => {
    const r = await runMain(['snapshot', '--help']);
    expect(
      r.stdout.endsWith(
        [
          'Examples:',
          '  qvm snapshot list web',
          '  qvm snapshot save web before-upgrade',
          '  qvm snapshot delete web before-upgrade',
          '',
        ].join('\n'),
      ),
    ).toBe(true);
  });
});
