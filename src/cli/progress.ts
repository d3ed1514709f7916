/**
 * Progress of an apply, per VM: a live display on a terminal (one line per VM, redrawn in place: see
 * progress-live.ts), plain lines otherwise (CI logs, pipes).
 */
import type { ProgressEvent } from '../apply/executor.js';
import { formatDuration } from '../model/units.js';
import { type Output, writeLine } from './output.js';

export interface ProgressView {
  onProgress(event: ProgressEvent): void;
  finish(): void;
}

/**
 * The live display is loaded only on a terminal: log-update's width helpers compile emoji-regex's pattern when
 * loaded, 11-12 ms that an apply in a pipe or a CI log never needs.
 */
export async function progressView(output: Output): Promise<ProgressView> {
  return output.interactive ? (await import('./progress-live.js')).liveView(output) : plainView(output);
}

function plainView(output: Output): ProgressView {
  const { color: c } = output;
  return {
    onProgress(event) {
      switch (event.type) {
        case 'begin':
          break;
        case 'step':
          writeLine(output.out, `${event.vm}: ${event.step}`);
          break;
        case 'done':
          writeLine(
            output.out,
            `${event.vm}: ${c.green(event.summary)} in ${formatDuration(event.elapsedMs)}`,
          );
          break;
        case 'failed':
          writeLine(
            output.err,
            `${event.vm}: ${c.red(`failed: ${event.error.message.replace(`${event.vm}: `, '')}`)}`,
          );
          break;
      }
    },
    finish() {},
  };
}
