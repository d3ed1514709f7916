/**
 * `qvm console`: an interactive monitor with line editing, history and tab completion, and clean output.
 * Ctrl-D leaves; the VM keeps running. With stdin not a terminal, it runs each line as a command and exits 1 if
 * any failed, which makes it a scriptable replacement for `socat - UNIX-CONNECT:PATH`.
 */
import readline from 'node:readline';
import { isQvmError, MonitorCommandError, MonitorError } from '../errors.js';
import { type AnyMonitor, connectMonitor } from '../qemu/monitor.js';
import { type Output, writeLine } from './output.js';

export async function consoleCommand(
  socketPath: string,
  options: { timeoutMs: number; label?: string },
  output: Output,
  input: NodeJS.ReadableStream & { isTTY?: boolean } = process.stdin,
): Promise<number> {
  const monitor = await connectMonitor(socketPath, { timeoutMs: options.timeoutMs });
  const interactive = Boolean(input.isTTY);
  const commands = interactive ? await helpCommands(monitor) : [];
  if (interactive) {
    writeLine(
      output.err,
      output.color.dim(
        `Connected to ${options.label ?? socketPath} (${monitor.kind.toUpperCase()}). Ctrl-D leaves; the VM keeps running.`,
      ),
    );
  }
  const rl = readline.createInterface({
    input,
    output: interactive ? (output.out as NodeJS.WritableStream) : undefined,
    prompt: '(qemu) ',
    terminal: interactive,
    historySize: 500,
    completer: (line: string) => {
      const hits = commands.filter((c) => c.startsWith(line));
      return [hits.length ? hits : commands, line];
    },
  });

  let failures = 0;
  /** Set when the connection ended under us: 'quit' when the user asked QEMU to quit, else the error. */
  let lost: 'quit' | MonitorError | undefined;
  rl.on('SIGINT', () => {
    // Like a shell: Ctrl-C abandons the line; only Ctrl-D leaves.
    rl.write(null, { ctrl: true, name: 'u' });
    output.out.write('\n');
    rl.prompt();
  });
  if (interactive) rl.prompt();
  for await (const line of rl) {
    const command = line.trim();
    if (command !== '') {
      try {
        const text = await monitor.hmp(command);
        if (text.trim() !== '') output.out.write(text.endsWith('\n') ? text : `${text}\n`);
      } catch (error) {
        if (error instanceof MonitorCommandError) {
          failures++;
          writeLine(output.err, output.color.red(error.qemuMessage));
        } else if (error instanceof MonitorError) {
          // QEMU went away (quit, crash) or froze: nothing more can be sent.
          lost = /^q(uit)?$/.test(command) ? 'quit' : error;
          if (lost === 'quit') writeLine(output.err, 'QEMU quit.');
          break;
        } else {
          throw error;
        }
      }
    }
    if (interactive) rl.prompt();
  }
  rl.close();
  if (interactive && !lost) output.out.write('\n');
  await monitor.close();
  if (lost instanceof MonitorError) throw lost;
  return !interactive && failures > 0 ? 1 : 0;
}

/** Command names for completion, from the monitor's own `help`. */
async function helpCommands(monitor: AnyMonitor): Promise<string[]> {
  try {
    const text = await monitor.hmp('help');
    const names = new Set<string>();
    for (const line of text.split('\n')) {
      const m = /^([a-z_][a-z0-9_-]*(?:\|[a-z0-9_-]+)*)/.exec(line);
      if (!m) continue;
      for (const name of m[1]!.split('|')) names.add(name);
    }
    for (const line of (await monitor.hmp('help info')).split('\n')) {
      const m = /^info ([a-z0-9_-]+)/.exec(line);
      if (m) names.add(`info ${m[1]}`);
    }
    return [...names].sort();
  } catch (error) {
    if (isQvmError(error)) return [];
    throw error;
  }
}
