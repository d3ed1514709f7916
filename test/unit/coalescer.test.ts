/** Watch's trigger coalescing and back-off, with fake timers: no QEMU, no waiting. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Backoff } from '../../src/watch/backoff.js';
import { TriggerCoalescer } from '../../src/watch/coalescer.js';

describe('TriggerCoalescer', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  /** A coalescer whose passes are recorded and end only when the test says so. */
  function recording() {
    const passes: string[][] = [];
    let finish: () => void = () => {};
    const coalescer = new TriggerCoalescer(
      (triggers) => {
        passes.push(triggers);
        return new Promise<void>((resolve) => {
          finish = resolve;
        });
      },
      { quietMs: 100, maxDelayMs: 400 },
    );
    return { passes, coalescer, finish: () => finish() };
  }

  it('waits for a quiet period, then runs one pass for a burst of triggers', async () => {
    const { passes, coalescer } = recording();
    coalescer.request('manifest changed');
    await vi.advanceTimersByTimeAsync(50);
    coalescer.request('manifest changed');
    coalescer.request('resync');
    await vi.advanceTimersByTimeAsync(99);
    expect(passes).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(passes).toEqual([['manifest changed', 'resync']]);
  });

  it('does not let a steady stream of triggers put a pass off longer than the maximum delay', async () => {
    const { passes, coalescer } = recording();
    for (let t = 0; t < 10; t++) {
      coalescer.request(`save ${t}`);
      await vi.advanceTimersByTimeAsync(50);
    }
    expect(passes).toHaveLength(1);
    expect(passes[0]).toEqual([
      'save 0',
      'save 1',
      'save 2',
      'save 3',
      'save 4',
      'save 5',
      'save 6',
      'save 7',
    ]);
  });

  it('never overlaps passes: triggers during a pass gather into exactly one more', async () => {
    const { passes, coalescer, finish } = recording();
    coalescer.request('first');
    await vi.advanceTimersByTimeAsync(100);
    expect(passes).toEqual([['first']]);
    coalescer.request('a');
    coalescer.request('b');
    coalescer.request('a');
    await vi.advanceTimersByTimeAsync(1000);
    expect(passes).toHaveLength(1);
    finish();
    await vi.advanceTimersByTimeAsync(0);
    expect(passes).toEqual([['first'], ['a', 'b']]);
    finish();
    await vi.advanceTimersByTimeAsync(1000);
    expect(passes).toHaveLength(2);
    expect(coalescer.running).toBeUndefined();
  });

  it('runs nothing more once stopped', async () => {
    const { passes, coalescer } = recording();
    coalescer.request('x');
    coalescer.stop();
    await vi.advanceTimersByTimeAsync(1000);
    coalescer.request('y');
    await vi.advanceTimersByTimeAsync(1000);
    expect(passes).toEqual([]);
  });
});

describe('Backoff', () => {
  it('doubles the wait with each restart within the window, and forgets a VM that stayed up', () => {
    const b = new Backoff();
    expect(b.delayMs('web', 0)).toBe(0);
    b.recordRestart('web', 0);
    expect(b.delayMs('web', 0)).toBe(1000);
    expect(b.delayMs('web', 400)).toBe(600);
    b.recordRestart('web', 1000);
    expect(b.delayMs('web', 1000)).toBe(2000);
    b.recordRestart('web', 3000);
    expect(b.delayMs('web', 3000)).toBe(4000);
    expect(b.restartsInWindow('web', 3000)).toBe(3);
    // A minute after the last restart the history is gone.
    expect(b.delayMs('web', 63_000)).toBe(0);
    expect(b.restartsInWindow('web', 63_000)).toBe(0);
  });

  it('caps the wait at five minutes, and reset forgets at once', () => {
    const b = new Backoff();
    for (let i = 0; i < 20; i++) b.recordRestart('web', i);
    expect(b.delayMs('web', 19)).toBe(300_000);
    b.reset('web');
    expect(b.delayMs('web', 19)).toBe(0);
    expect(b.delayMs('other', 19)).toBe(0);
  });
});
