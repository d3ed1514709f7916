/**
 * QMP event streams: watch holds a connection on the `events.sock` of every running VM qvm started, so a
 * SHUTDOWN, a STOP or the process dying is news at once instead of at the next resync. Adopted VMs have one
 * monitor, which watch must not hold, so they are only resynced.
 */
import { QmpClient } from '../qemu/qmp.js';
import { type Namespace, vmPaths } from '../runtime/paths.js';

/** QMP events that mean a VM's state changed under us. */
const STATE_EVENTS = new Set(['SHUTDOWN', 'STOP', 'RESUME', 'RESET', 'GUEST_PANICKED']);

export interface StreamHandlers {
  /** A state event; `expected` when this watch itself is stopping or restarting the VM. */
  onStateEvent(vm: string, event: string, detail: string, expected: boolean): void;
  /** The VM's QEMU exited (its event connection closed); `expected` as above. */
  onExit(vm: string, detail: string, expected: boolean): void;
}

/** Watch's QMP event connections, one per running VM qvm started. */
export class EventStreams {
  private readonly streams = new Map<string, QmpClient>();
  /** VMs this watch is stopping or restarting itself: their exit is not news. */
  private readonly expectedExits = new Set<string>();

  constructor(
    private readonly namespace: Namespace,
    private readonly handlers: StreamHandlers,
  ) {}

  /** This watch is about to stop or replace the VM's process: its exit is expected. */
  expectExit(vm: string): void {
    this.expectedExits.add(vm);
  }

  /**
   * Holds a stream for each of `wanted` that runs (skipping those `isDown` says are down), and drops streams of
   * VMs no longer wanted. A VM in `startedNow` that has no socket died right after starting: reported as an exit.
   */
  async sync(wanted: Set<string>, isDown: (vm: string) => boolean, startedNow: string[]): Promise<void> {
    for (const [vm, stream] of this.streams) {
      if (!wanted.has(vm) || stream.closed) {
        this.streams.delete(vm);
        await stream.close();
      }
    }
    await Promise.all(
      [...wanted]
        .filter((vm) => !this.streams.has(vm) && !isDown(vm))
        .map((vm) => this.open(vm, startedNow.includes(vm))),
    );
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.streams.values()].map((s) => s.close()));
    this.streams.clear();
  }

  private async open(vm: string, justStarted: boolean): Promise<void> {
    let stream: QmpClient;
    try {
      stream = await QmpClient.connect(vmPaths(this.namespace, vm).events, { timeoutMs: 2000 });
    } catch {
      if (justStarted) this.handlers.onExit(vm, 'its QEMU ended right after starting', false);
      return;
    }
    this.expectedExits.delete(vm);
    this.streams.set(vm, stream);
    stream.on('event', (e) => {
      if (!STATE_EVENTS.has(e.event)) return;
      const detail =
        e.event === 'SHUTDOWN'
          ? `${e.data?.guest ? 'by the guest' : 'by the host'}, ${String(e.data?.reason ?? '')}`
          : '';
      this.handlers.onStateEvent(vm, e.event, detail, this.expectedExits.has(vm));
    });
    stream.on('close', () => {
      this.streams.delete(vm);
      const expected = this.expectedExits.delete(vm);
      this.handlers.onExit(vm, 'its QEMU process ended', expected);
    });
  }
}
