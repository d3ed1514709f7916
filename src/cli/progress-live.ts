/** The live progress display of an apply on a terminal: one line per VM, redrawn in place. */
import { createLogUpdate } from 'log-update';
import { formatDuration } from '../model/units.js';
import type { Output } from './output.js';
import type { ProgressView } from './progress.js';

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

export function liveView(output: Output): ProgressView {
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
