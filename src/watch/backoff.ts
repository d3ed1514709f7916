/**
 * Back-off for VMs that keep dying under `qvm watch`: each restart within the window doubles the wait before
 * the next one (1 s, 2 s, 4 s, ... up to 5 min); a VM that stays up for the window is forgiven. Pure: the
 * clock is an argument.
 */

const BACKOFF_WINDOW_MS = 60_000;
const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 300_000;

/** The restart history of VMs that died, and how long each must wait before the next restart. */
export class Backoff {
  private readonly starts = new Map<string, number[]>();

  /** Records a (re)start of a VM that had died. */
  recordRestart(vm: string, nowMs: number): void {
    this.starts.set(vm, [...this.recent(vm, nowMs), nowMs]);
  }

  /** Forgets a VM's history (it was stopped or started on purpose, or left the manifest). */
  reset(vm: string): void {
    this.starts.delete(vm);
  }

  /** Milliseconds to wait before the VM may be restarted again; 0 when it may be restarted now. */
  delayMs(vm: string, nowMs: number): number {
    const recent = this.recent(vm, nowMs);
    if (recent.length === 0) return 0;
    const delay = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (recent.length - 1));
    return Math.max(0, recent.at(-1)! + delay - nowMs);
  }

  restartsInWindow(vm: string, nowMs: number): number {
    return this.recent(vm, nowMs).length;
  }

  private recent(vm: string, nowMs: number): number[] {
    return (this.starts.get(vm) ?? []).filter((t) => nowMs - t < BACKOFF_WINDOW_MS);
  }
}
