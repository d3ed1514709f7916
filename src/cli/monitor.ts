/**
 * `qvm monitor`: one monitor command, with an exit status. The socket may be QMP or HMP. A command that starts
 * with `{` is sent as raw QMP JSON (QMP sockets only) and its `return` is printed as JSON.
 */
import { MonitorClosedError, MonitorCommandError, UsageError } from '../errors.js';
import { connectMonitor } from '../qemu/monitor.js';
import { QmpClient } from '../qemu/qmp.js';
import { type Output, writeLine } from './output.js';

/** HMP's quit command, as people type it. */
const QUIT = /^\s*q(uit)?\s*$/;

export async function monitorCommand(
  socketPath: string,
  words: string[],
  options: { timeoutMs: number },
  output: Output,
): Promise<number> {
  const commandLine = words.join(' ');
  if (commandLine.trim() === '')
    throw new UsageError('no monitor command given, e.g. `qvm monitor --socket PATH info status`');
  const monitor = await connectMonitor(socketPath, { timeoutMs: options.timeoutMs });
  try {
    if (commandLine.trimStart().startsWith('{')) {
      if (!(monitor instanceof QmpClient)) {
        throw new UsageError(`${socketPath} is an HMP monitor; raw QMP JSON needs a QMP socket`);
      }
      let request: { execute?: unknown; arguments?: unknown };
      try {
        request = JSON.parse(commandLine);
      } catch (error) {
        throw new UsageError(`the QMP request is not valid JSON: ${(error as Error).message}`);
      }
      if (typeof request.execute !== 'string')
        throw new UsageError('a QMP request needs an "execute" member');
      if (request.execute === 'qmp_capabilities') {
        throw new MonitorCommandError(
          'qmp_capabilities',
          'capabilities were already negotiated by qvm',
          socketPath,
        );
      }
      const result = await monitor.execute(
        request.execute,
        request.arguments as Record<string, unknown> | undefined,
      );
      writeLine(output.out, JSON.stringify(result, null, 2));
      return 0;
    }
    let text: string;
    try {
      text = await monitor.hmp(commandLine);
    } catch (error) {
      // `quit` ends QEMU: the connection closing under it is the answer that it worked.
      if (error instanceof MonitorClosedError && QUIT.test(commandLine)) return 0;
      throw error;
    }
    if (text.trim() !== '') output.out.write(text.endsWith('\n') ? text : `${text}\n`);
    return 0;
  } finally {
    await monitor.close();
  }
}
