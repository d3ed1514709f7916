/**
 * Shell completion, in the shape cobra gives kubectl's and lima's: `qvm completion bash|zsh|fish` prints a
 * small script, and the script asks `qvm __complete SHELL WORDS...` for the candidates of the word being typed.
 * The candidates come from the command tree itself (commands, options, their choices) and from the manifest in
 * effect (`-f` respected): its VM names are read from the YAML alone, never validated and never by asking
 * QEMU. The YAML parser and the schema are imported only when a word needs them, so completing a command or an
 * option costs what `qvm --version` does.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Argument, Command, Option } from 'commander';
import { type Output, writeLine } from './output.js';

export const SHELLS = ['bash', 'zsh', 'fish'] as const;
export type Shell = (typeof SHELLS)[number];

/** What `__complete` prints instead of candidates when the word is a file path: the shell completes it. */
const FILES = ':files';

/** A candidate and what it is, for the shells that show descriptions (zsh, fish). */
interface Candidate {
  value: string;
  description?: string;
}

/** Where the words typed so far leave the command line: the command, its arguments, the option awaiting a value. */
interface Position {
  command: Command;
  /** The command and its parents, for their options (the program's `--no-color` is valid anywhere). */
  chain: Command[];
  args: string[];
  /** The option whose value is the word being completed. */
  awaiting?: Option;
  /** Values of the options given so far, by attribute name (`file`, `socket`). */
  given: Map<string, string>;
  /** After `--`: the rest is the VM's command or a path. */
  afterDashDash: boolean;
}

/** The options valid here: the command's own, and its parents' (`--no-color`) but for `--version`. */
function optionsOf(chain: Command[]): Option[] {
  const own = chain.at(-1)!;
  return chain.flatMap((c) =>
    c.options.filter((o) => !o.hidden && (c === own || o.attributeName() !== 'version')),
  );
}

function findOption(chain: Command[], word: string): Option | undefined {
  return optionsOf(chain).find((o) => o.long === word || o.short === word);
}

function walk(program: Command, words: string[]): Position {
  const position: Position = {
    command: program,
    chain: [program],
    args: [],
    given: new Map(),
    afterDashDash: false,
  };
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    if (position.afterDashDash) {
      position.args.push(word);
      continue;
    }
    if (word === '--') {
      position.afterDashDash = true;
      continue;
    }
    if (word.startsWith('-') && word.length > 1) {
      const [flag, inline] = word.split('=', 2) as [string, string | undefined];
      const option = findOption(position.chain, flag);
      if (option && (option.required || option.optional) && inline === undefined) {
        // bash splits `--file=x` into `--file`, `=`, `x`.
        if (words[i + 1] === '=') i++;
        const value = words[i + 1];
        if (value === undefined) {
          position.awaiting = option;
          break;
        }
        position.given.set(option.attributeName(), value);
        i++;
      } else if (option && inline !== undefined) {
        position.given.set(option.attributeName(), inline);
      }
      continue;
    }
    const sub =
      position.args.length === 0
        ? position.command.commands.find((c) => c.name() === word || c.aliases().includes(word))
        : undefined;
    if (sub) {
      position.command = sub;
      position.chain.push(sub);
      continue;
    }
    position.args.push(word);
  }
  return position;
}

/** The VM names of the manifest (a file, or every *.yaml and *.yml of a folder), from its YAML alone. */
export async function manifestVmNames(file: string): Promise<string[]> {
  const { parseYaml } = await import('../manifest/load.js');
  let files: string[];
  try {
    files = statSync(file).isDirectory()
      ? readdirSync(file)
          .filter((name) => /^[^.].*\.ya?ml$/.test(name))
          .sort()
          .map((name) => path.join(file, name))
      : [file];
  } catch {
    return [];
  }
  const names: string[] = [];
  for (const f of files) {
    try {
      const value = parseYaml(readFileSync(f, 'utf8'), f).value as { vms?: unknown } | undefined;
      const vms = value?.vms;
      if (typeof vms === 'object' && vms !== null && !Array.isArray(vms)) names.push(...Object.keys(vms));
    } catch {
      // An unreadable file completes nothing; validate says why.
    }
  }
  return [...new Set(names)];
}

/** Manifest field paths for `qvm explain`: a VM's fields without `vms.<name>.`, the others in full. */
async function fieldPaths(): Promise<Candidate[]> {
  const { allFields } = await import('../manifest/schema-fields.js');
  const out: Candidate[] = [];
  for (const field of allFields()) {
    if (field.path.startsWith('defaults.') || field.name === '<name>') continue;
    const path = field.path.replace(/^vms\.<name>\./, '').replace(/<name>\./, '');
    if (!out.some((c) => c.value === path)) out.push({ value: path });
  }
  return out;
}

async function vmCandidates(position: Position): Promise<Candidate[]> {
  const file = position.given.get('file') ?? 'qvm.yaml';
  return (await manifestVmNames(file)).map((value) => ({ value, description: 'VM' }));
}

/** What the argument at this place of the command takes. */
async function argumentCandidates(position: Position): Promise<Candidate[] | typeof FILES> {
  const declared = position.command.registeredArguments;
  const index = Math.min(position.args.length, declared.length - 1);
  const argument: Argument | undefined = declared[index];
  if (!argument || (index < position.args.length && !argument.variadic)) return [];
  if (argument.argChoices) return argument.argChoices.map((value) => ({ value }));
  switch (argument.name()) {
    case 'vm':
      // A list of VMs names each once.
      return (await vmCandidates(position)).filter((c) => !position.args.includes(c.value));
    case 'words':
      // `qvm monitor VM COMMAND...`: the VM first, unless --socket names the monitor.
      return position.args.length === 0 && !position.given.has('socket') ? vmCandidates(position) : [];
    case 'field':
      return fieldPaths();
    case 'paths':
      return FILES;
    default:
      return [];
  }
}

function optionCandidates(position: Position): Candidate[] {
  const out: Candidate[] = [];
  for (const option of optionsOf(position.chain)) {
    for (const flag of [option.long, option.short])
      if (flag) out.push({ value: flag, description: option.description });
  }
  out.push({ value: '--help', description: 'show help' });
  return out;
}

/** The candidates for the last word of WORDS (the one being typed, maybe empty), or FILES. */
export async function candidates(program: Command, words: string[]): Promise<Candidate[] | typeof FILES> {
  const current = words.at(-1) ?? '';
  const position = walk(program, words.slice(0, -1));
  let found: Candidate[] | typeof FILES;
  if (position.awaiting) {
    const option = position.awaiting;
    found = option.argChoices
      ? option.argChoices.map((value) => ({ value }))
      : ['file', 'socket'].includes(option.attributeName())
        ? FILES
        : [];
  } else if (position.afterDashDash) {
    found = FILES;
  } else if (current.startsWith('-')) {
    found = optionCandidates(position);
  } else {
    const commands =
      position.args.length === 0
        ? position.command.commands.map((c) => ({ value: c.name(), description: summary(c.description()) }))
        : [];
    const args = await argumentCandidates(position);
    if (args === FILES) return commands.length ? commands.filter((c) => c.value.startsWith(current)) : FILES;
    found = [...commands, ...args];
  }
  return found === FILES ? FILES : found.filter((c) => c.value.startsWith(current));
}

/** A command's description cut to its first clause, for a completion menu. */
function summary(text: string): string {
  return text.split(/[;:(]/)[0]!.trim();
}

/** `qvm __complete SHELL WORDS...`: one candidate per line, as the completion scripts read them. */
export async function completeCommand(program: Command, argv: string[], output: Output): Promise<number> {
  const [shell, ...words] = argv;
  const found = await candidates(program, words.length ? words : ['']);
  if (found === FILES) {
    writeLine(output.out, FILES);
    return 0;
  }
  for (const c of found) {
    const description = c.description?.replace(/\s+/g, ' ');
    if (shell === 'fish' && description) writeLine(output.out, `${c.value}\t${description}`);
    else if (shell === 'zsh')
      writeLine(
        output.out,
        description ? `${c.value.replace(/:/g, '\\:')}:${description}` : c.value.replace(/:/g, '\\:'),
      );
    else writeLine(output.out, c.value);
  }
  return 0;
}

const BASH = `# qvm completion for bash. Load it with: source <(qvm completion bash)
# or for every shell: qvm completion bash > ~/.local/share/bash-completion/completions/qvm
_qvm_complete() {
  local cur=\${COMP_WORDS[COMP_CWORD]}
  local qvm=\${COMP_WORDS[0]/#\\~/$HOME}
  local out
  out=$("$qvm" __complete bash "\${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null) || return 0
  local IFS=$'\\n'
  if [[ $out == "${FILES}" ]]; then
    compopt -o filenames 2>/dev/null
    COMPREPLY=($(compgen -f -- "$cur"))
  else
    COMPREPLY=($out)
  fi
}
complete -F _qvm_complete qvm
`;

const ZSH = `#compdef qvm
# qvm completion for zsh. Load it with: source <(qvm completion zsh)   (after compinit)
# or for every shell: qvm completion zsh > "\${fpath[1]}/_qvm"
_qvm() {
  local out
  local -a lines
  out=$(\${words[1]} __complete zsh "\${(@)words[2,CURRENT]}" 2>/dev/null) || return 1
  if [[ $out == "${FILES}" ]]; then
    _files
    return
  fi
  lines=("\${(@f)out}")
  _describe -t values qvm lines
}
if [[ "\${funcstack[1]}" == _qvm ]]; then
  _qvm "$@"
else
  compdef _qvm qvm
fi
`;

const FISH = `# qvm completion for fish. Load it with: qvm completion fish | source
# or for every shell: qvm completion fish > ~/.config/fish/completions/qvm.fish
function __qvm_complete
    set -l words (commandline -opc)
    set -l qvm $words[1]
    set -e words[1]
    set -l current (commandline -ct)
    set -l out ($qvm __complete fish $words "$current" 2>/dev/null)
    or return
    if test "$out" = "${FILES}"
        __fish_complete_path "$current"
        return
    end
    printf '%s\\n' $out
end
complete -c qvm -f -a '(__qvm_complete)'
`;

/** `qvm completion SHELL`: the script for that shell. */
export function completionCommand(shell: Shell, output: Output): number {
  output.out.write(shell === 'bash' ? BASH : shell === 'zsh' ? ZSH : FISH);
  return 0;
}
