/** `qvm watch`: the reconcile loop in the foreground until SIGINT or SIGTERM. */

import { watch } from '../watch/watch.js';
import type { Output } from './output.js';
import { humanLog, jsonLog } from './watch-log.js';

export async function watchCommand(
  flags: {
    file: string;
    interval: number;
    prune: boolean;
    liveOnly: boolean;
    json: boolean;
    timeout: number;
  },
  output: Output,
): Promise<number> {
  const log = flags.json ? jsonLog(output) : humanLog(output);
  const controller = new AbortController();
  const stop = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) return;
    log.emit({ event: 'watch-stopped', signal });
    controller.abort();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  await watch({
    source: flags.file,
    intervalMs: flags.interval,
    prune: flags.prune,
    liveOnly: flags.liveOnly,
    timeoutMs: flags.timeout,
    log,
    signal: controller.signal,
  });
  // Stopping is promised within a second: should a monitor conversation of an aborted pass still hold the
  // event loop, do not wait for its deadline. The VMs are separate processes and keep running.
  setTimeout(() => process.exit(0), 300).unref();
  return 0;
}
