/**
 * What `qvm watch` says, as events: the CLI draws them as human lines or NDJSON (cli/watch-log.ts). Every
 * event is stamped with `time` (ISO 8601) when it is written.
 */

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
