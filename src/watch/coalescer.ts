/**
 * Turns triggers (a file changed, a VM event, the resync timer) into passes that never overlap. A trigger asks
 * for a pass after a short quiet period, so a burst (an editor writing a file in several steps, twenty saves in
 * a second) becomes one pass; a burst can delay a pass by at most `maxDelayMs`. Triggers that arrive during a
 * pass gather into exactly one more pass, which runs as soon as the current one ends.
 *
 * Pure scheduling: the pass itself is a callback, and the timers are Node's, so it is tested with fake timers.
 */

export interface CoalescerOptions {
  /** Quiet time after the last trigger before a pass starts. */
  quietMs: number;
  /** The longest a stream of triggers can put a pass off. */
  maxDelayMs: number;
}

const DEFAULT_COALESCING: CoalescerOptions = { quietMs: 100, maxDelayMs: 400 };

/** Schedules passes for triggers: coalesced bursts, never two passes at once. */
export class TriggerCoalescer {
  private readonly pendingTriggers = new Set<string>();
  private quietTimer: NodeJS.Timeout | undefined;
  private maxTimer: NodeJS.Timeout | undefined;
  private current: Promise<void> | undefined;
  private stopped = false;

  constructor(
    /** Runs one pass for the triggers that led to it. Errors are the callback's to handle. */
    private readonly pass: (triggers: string[]) => Promise<void>,
    private readonly options: CoalescerOptions = DEFAULT_COALESCING,
  ) {}

  /** Asks for a pass. */
  request(trigger: string): void {
    if (this.stopped) return;
    this.pendingTriggers.add(trigger);
    if (this.current) return; // the loop picks it up when the current pass ends
    clearTimeout(this.quietTimer);
    this.quietTimer = setTimeout(() => this.startLoop(), this.options.quietMs);
    this.maxTimer ??= setTimeout(() => this.startLoop(), this.options.maxDelayMs);
  }

  /** The pass in flight, if any (resolves when the loop of passes ends). */
  get running(): Promise<void> | undefined {
    return this.current;
  }

  /** No more passes; the one in flight is not interrupted. */
  stop(): void {
    this.stopped = true;
    this.clearTimers();
  }

  private clearTimers(): void {
    clearTimeout(this.quietTimer);
    clearTimeout(this.maxTimer);
    this.quietTimer = undefined;
    this.maxTimer = undefined;
  }

  private startLoop(): void {
    this.clearTimers();
    if (this.current || this.stopped) return;
    this.current = (async () => {
      try {
        while (this.pendingTriggers.size > 0 && !this.stopped) {
          const triggers = [...this.pendingTriggers];
          this.pendingTriggers.clear();
          await this.pass(triggers);
        }
      } finally {
        this.current = undefined;
      }
    })();
  }
}
