/** How `qvm watch` events are drawn: human lines with timestamps, or NDJSON (--json) for log shippers. */
import type { WatchLog } from '../watch/log.js';
import type { Output } from './output.js';

function clock(date: Date): string {
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

export function jsonLog(output: Output, now: () => Date = () => new Date()): WatchLog {
  return {
    emit(event) {
      output.out.write(`${JSON.stringify({ time: now().toISOString(), ...event })}\n`);
    },
  };
}

export function humanLog(output: Output, now: () => Date = () => new Date()): WatchLog {
  const c = output.color;
  const line = (text: string, stream = output.out) => stream.write(`${c.dim(clock(now()))} ${text}\n`);
  return {
    emit(event) {
      switch (event.event) {
        case 'watch-started':
          line(
            `watching ${event.manifest} (resync every ${event.intervalMs / 1000}s${event.liveOnly ? ', live changes only' : ''}${event.prune ? ', pruning' : ''}); Ctrl-C stops watching, the VMs keep running`,
          );
          break;
        case 'pass-started':
          line(`pass ${event.pass}: ${event.triggers.join(', ')}`);
          break;
        case 'plan':
          line(`  ${event.vm}: ${event.change}`);
          break;
        case 'pending':
          line(c.yellow(`  ${event.vm}: ${event.change} (pending: ${event.reason})`));
          break;
        case 'note':
          line(c.dim(`  ${event.vm} ${event.message}`));
          break;
        case 'waiting-for-lock':
          line(c.dim(`  waiting for ${event.holder} to finish with these VMs`));
          break;
        case 'action-applied':
          line(c.green(`  ${event.vm}: ${event.summary} (${event.durationMs} ms)`));
          break;
        case 'action-failed':
          line(c.red(`  ${event.vm}: failed: ${event.error}`), output.err);
          break;
        case 'backoff':
          line(
            c.yellow(
              `  ${event.vm}: keeps dying (${event.restarts} restarts in the last minute); backing off, next try in ${Math.ceil(event.delayMs / 1000)}s`,
            ),
          );
          break;
        case 'vm-exited':
          line(c.yellow(`${event.vm} exited: ${event.detail}`));
          break;
        case 'vm-event':
          line(`${event.vm}: QEMU event ${event.qmpEvent}${event.detail ? ` (${event.detail})` : ''}`);
          break;
        case 'error':
          line(c.red(`error: ${event.message}`), output.err);
          for (const d of event.diagnostics ?? []) line(c.red(`  ${d}`), output.err);
          break;
        case 'pass-finished':
          line(
            c.dim(
              `pass ${event.pass} done in ${event.durationMs} ms: ${event.changes === 0 ? 'nothing to do' : `${event.changes} change${event.changes === 1 ? '' : 's'}${event.failed ? `, ${event.failed} failed` : ''}`}`,
            ),
          );
          break;
        case 'watch-stopped':
          line(`stopped watching (${event.signal}); the VMs keep running`);
          break;
      }
    },
  };
}
