/**
 * Progress of an apply, per VM: a live display on a terminal (one line per VM, redrawn in place), plain
 * lines otherwise (CI logs, pipes).
 */
import { createLogUpdate } from 'log-update';
import type { ProgressEvent } from '../apply/executor.js';
import { formatDuration } from '../model/units.js';
import { type Output, writeLine } from './output.js';

export interface ProgressView {
  onProgress(event: ProgressEvent): void;
  finish(): void;
}

export function progressView(output: Output): ProgressView {
  return output.interactive ? liveView(output) : plainView(output);
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

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

function liveView(output: Output): ProgressView {
  const { color: c } = output;
  const update = createLogUpdate(output.out as NodeJS.WriteStream, { showCursor: false });
  const rows = new Map<string, { text: string; started: number; final?: string }>();
  let frame = 0;
  const draw = () => {
    const width = Math.max(...[...rows.keys()].map((k) => k.length), 0) + 2;
    const lines = [...rows].map(
      ([vm, row]) =>
        row.final ??
        `${c.cyan(SPINNER[frame % SPINNER.length]!)} ${vm.padEnd(width)}${row.text} ${c.dim(formatDuration(Date.now() - row.started))}`,
    );
    update(lines.join('\n'));
  };
  const timer = setInterval(() => {
    frame++;
    draw();
  }, 100);
  timer.unref();
  return {
    onProgress(event) {
      const width = Math.max(...[...rows.keys(), event.vm].map((k) => k.length)) + 2;
      switch (event.type) {
        case 'begin':
          rows.set(event.vm, { text: 'waiting', started: Date.now() });
          break;
        case 'step':
          rows.get(event.vm)!.text = event.step;
          break;
        case 'done':
          rows.get(event.vm)!.final =
            `${c.green('✓')} ${event.vm.padEnd(width)}${event.summary} ${c.dim(formatDuration(event.elapsedMs))}`;
          break;
        case 'failed':
          rows.get(event.vm)!.final =
            `${c.red('✗')} ${event.vm.padEnd(width)}${c.red(event.error.message.replace(`${event.vm}: `, ''))}`;
          break;
      }
      draw();
    },
    finish() {
      clearInterval(timer);
      draw();
      update.done();
    },
  };
}
