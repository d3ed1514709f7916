/**
 * What `qvm watch` says: human lines with timestamps, or NDJSON events (--json) for log shippers.
 * Every event has `time` (ISO 8601) and `event`.
 */
import type { Output } from '../cli/output.js';

export type WatchEvent =
  | {
      event: 'watch-started';
      manifest: string;
      namespace: string;
      intervalMs: number;
      liveOnly: boolean;
      prune: boolean;
    }
  | { event: 'pass-started'; pass: number; triggers: string[] }
  | { event: 'plan'; pass: number; vm: string; change: string }
  | { event: 'pending'; pass: number; vm: string; change: string; reason: string }
  | { event: 'note'; pass: number; vm: string; message: string }
  | { event: 'waiting-for-lock'; pass: number; holder: string }
  | { event: 'action-applied'; pass: number; vm: string; summary: string; durationMs: number }
  | { event: 'action-failed'; pass: number; vm: string; error: string; durationMs: number }
  | { event: 'backoff'; pass: number; vm: string; restarts: number; delayMs: number }
  | { event: 'vm-exited'; vm: string; detail: string }
  | { event: 'vm-event'; vm: string; qmpEvent: string; detail: string }
  | { event: 'error'; pass?: number; message: string; diagnostics?: string[] }
  | { event: 'pass-finished'; pass: number; durationMs: number; changes: number; failed: number }
  | { event: 'watch-stopped'; signal: string };

export interface WatchLog {
  emit(event: WatchEvent): void;
}

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
