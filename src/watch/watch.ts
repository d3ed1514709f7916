/**
 * `qvm watch`: keeps the VMs converged while the manifest changes and while VMs drift or die.
 *
 * Level-based: a file change, a QEMU event or the resync timer only asks for a pass, and every pass is a
 * fresh load -> observe -> plan -> apply; no trigger is trusted to say what changed. Passes never overlap:
 * triggers that arrive during a pass gather into one more pass, and bursts (an editor writing a file in
 * several steps, twenty saves in a second) are coalesced by a short quiet period.
 *
 * An invalid manifest (YAML, schema, or a deleted or emptied file) never stops, restarts or changes
 * anything: the pass logs the located errors and ends, and the next valid save is applied.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import chokidar from 'chokidar';
import { realEffects } from '../apply/effects.js';
import { applyPlan } from '../apply/executor.js';
import { formatDiagnostic, isQvmError, ManifestError } from '../errors.js';
import { loadManifest } from '../manifest/manifest.js';
import type { Manifest } from '../manifest/types.js';
import { observe } from '../observe/observe.js';
import type { Observation } from '../observe/types.js';
import { plan as makePlan } from '../plan/plan.js';
import { renderPlan } from '../plan/render.js';
import type { Plan, VmChange } from '../plan/types.js';
import { QmpClient } from '../qemu/qmp.js';
import { acquireLock, describeHolder, type Lock } from '../runtime/lock.js';
import { type Namespace, namespaceFor, vmPaths } from '../runtime/paths.js';
import { Backoff } from './backoff.js';
import type { WatchLog } from './log.js';

export interface WatchOptions {
  /** A manifest file, or a folder of them. */
  source: string;
  intervalMs: number;
  prune: boolean;
  liveOnly: boolean;
  /** Monitor deadline while observing. */
  timeoutMs: number;
  log: WatchLog;
  /** Aborting ends watch: timers, watchers and event streams close; the VMs keep running. */
  signal: AbortSignal;
}

/** Quiet time after the last trigger before a pass starts, and the longest a burst can delay it. */
const QUIET_MS = 100;
const MAX_DELAY_MS = 400;
/** QMP events that mean a VM's state changed under us. */
const STATE_EVENTS = new Set(['SHUTDOWN', 'STOP', 'RESUME', 'RESET', 'GUEST_PANICKED']);

export async function watch(options: WatchOptions): Promise<void> {
  const watcher = new Watcher(options);
  await watcher.run();
}

class Watcher {
  private readonly namespace: Namespace;
  private readonly isFolder: boolean;
  private readonly absolute: string;
  private readonly backoff = new Backoff();
  private readonly triggers = new Set<string>();
  private readonly streams = new Map<string, QmpClient>();
  /** VMs this watch is stopping or restarting itself: their exit is not news. */
  private readonly expectedExits = new Set<string>();
  private passNumber = 0;
  private lastNotes = new Set<string>();
  private running: Promise<void> | undefined;
  private quietTimer: NodeJS.Timeout | undefined;
  private maxTimer: NodeJS.Timeout | undefined;
  private backoffTimers = new Map<string, NodeJS.Timeout>();

  constructor(private readonly options: WatchOptions) {
    this.absolute = path.resolve(options.source);
    this.isFolder = isFolder(this.absolute);
    this.namespace = namespaceFor(options.source);
  }

  async run(): Promise<void> {
    const { log, signal } = this.options;
    log.emit({
      event: 'watch-started',
      manifest: this.options.source,
      namespace: this.namespace.dir,
      intervalMs: this.options.intervalMs,
      liveOnly: this.options.liveOnly,
      prune: this.options.prune,
    });
    // Watch the folder, not the file: editors that save by writing a temporary file and renaming it over the
    // manifest replace the watched inode, and a deleted manifest that comes back must be seen too.
    const folder = this.isFolder ? this.absolute : path.dirname(this.absolute);
    const files = chokidar.watch(folder, { depth: 0, ignoreInitial: true });
    files.on('all', (_event, file) => {
      if (this.isManifestFile(path.resolve(file))) this.request('manifest changed');
    });
    files.on('error', (error) =>
      log.emit({ event: 'error', message: `watching ${folder}: ${(error as Error).message}` }),
    );
    const resync = setInterval(() => this.request('resync'), this.options.intervalMs);

    this.request('watch started');
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      signal.addEventListener('abort', () => resolve(), { once: true });
    });

    clearInterval(resync);
    clearTimeout(this.quietTimer);
    clearTimeout(this.maxTimer);
    for (const timer of this.backoffTimers.values()) clearTimeout(timer);
    await files.close();
    await Promise.all([...this.streams.values()].map((s) => s.close()));
    this.streams.clear();
    // A pass in flight gets a moment to finish its current step; its waits are aborted by the same signal.
    await Promise.race([this.running, new Promise((r) => setTimeout(r, 500))]);
  }

  private isManifestFile(file: string): boolean {
    if (!this.isFolder) return file === this.absolute;
    return path.dirname(file) === this.absolute && /^[^.].*\.ya?ml$/.test(path.basename(file));
  }

  /** Asks for a pass. Bursts are coalesced; during a pass, triggers gather into one more pass. */
  private request(trigger: string): void {
    if (this.options.signal.aborted) return;
    this.triggers.add(trigger);
    if (this.running) return; // the loop picks it up when the current pass ends
    clearTimeout(this.quietTimer);
    this.quietTimer = setTimeout(() => this.startLoop(), QUIET_MS);
    this.maxTimer ??= setTimeout(() => this.startLoop(), MAX_DELAY_MS);
  }

  private startLoop(): void {
    clearTimeout(this.quietTimer);
    clearTimeout(this.maxTimer);
    this.quietTimer = undefined;
    this.maxTimer = undefined;
    if (this.running || this.options.signal.aborted) return;
    this.running = (async () => {
      try {
        while (this.triggers.size > 0 && !this.options.signal.aborted) {
          const triggers = [...this.triggers];
          this.triggers.clear();
          await this.pass(triggers);
        }
      } finally {
        this.running = undefined;
      }
    })();
  }

  private async pass(triggers: string[]): Promise<void> {
    const { log } = this.options;
    const number = ++this.passNumber;
    const started = Date.now();
    log.emit({ event: 'pass-started', pass: number, triggers });
    let changes = 0;
    let failed = 0;
    let startedNow: string[] = [];
    let lock: Lock | undefined;
    try {
      let manifest: Manifest;
      try {
        manifest = await loadManifest(this.options.source);
      } catch (error) {
        if (!(error instanceof ManifestError)) throw error;
        log.emit({
          event: 'error',
          pass: number,
          message: `${this.options.source} is not a valid manifest; nothing was changed, waiting for the next save`,
          diagnostics: error.diagnostics.map(formatDiagnostic),
        });
        return;
      }
      lock = await acquireLock(this.namespace, 'watch', {
        wait: true,
        signal: this.options.signal,
        onWait: (holder) =>
          log.emit({ event: 'waiting-for-lock', pass: number, holder: describeHolder(holder) }),
      });
      const observation = await observe(manifest, this.namespace, { timeoutMs: this.options.timeoutMs });
      const full = makePlan(manifest, observation, {
        namespace: this.namespace,
        prune: this.options.prune,
        restartPolicy: true,
      });
      for (const problem of full.problems) {
        const where = problem.location
          ? `${formatDiagnostic({ ...problem.location, message: '' }).replace(/: $/, '')}: `
          : '';
        log.emit({ event: 'error', pass: number, message: `${problem.vm}: ${where}${problem.message}` });
      }
      // A standing note (a VM the guest powered off) is said once, not at every resync.
      const notes = new Map(full.notes.map((n) => [`${n.vm}\u0000${n.message}`, n]));
      for (const [key, note] of notes) {
        if (!this.lastNotes.has(key))
          log.emit({ event: 'note', pass: number, vm: note.vm, message: note.message });
      }
      this.lastNotes = new Set(notes.keys());

      const toApply = this.select(full, number);
      changes = toApply.changes.length;
      if (changes > 0) {
        for (const change of toApply.changes) {
          if (change.action === 'stop' || change.action === 'restart' || change.action === 'save') {
            this.expectedExits.add(change.vm);
          }
          if (change.action === 'start' && change.replacesPid !== undefined)
            this.expectedExits.add(change.vm);
        }
        const results = await applyPlan(toApply, manifest, {
          effects: realEffects(manifest, this.namespace, { signal: this.options.signal }),
          onProgress: (event) => {
            if (event.type === 'done') {
              log.emit({
                event: 'action-applied',
                pass: number,
                vm: event.vm,
                summary: event.summary,
                durationMs: event.elapsedMs,
              });
            } else if (event.type === 'failed') {
              log.emit({
                event: 'action-failed',
                pass: number,
                vm: event.vm,
                error: event.error.message,
                durationMs: event.elapsedMs,
              });
            }
          },
        });
        failed = results.filter((r) => !r.ok).length;
        startedNow = toApply.changes
          .filter(
            (c) =>
              (c.action === 'start' || c.action === 'restart') && results.some((r) => r.vm === c.vm && r.ok),
          )
          .map((c) => c.vm);
      }
      await this.syncEventStreams(manifest, changes > 0 ? undefined : observation, startedNow);
    } catch (error) {
      if (!isQvmError(error)) throw error;
      log.emit({ event: 'error', pass: number, message: error.message });
    } finally {
      await lock?.release();
      log.emit({ event: 'pass-finished', pass: number, durationMs: Date.now() - started, changes, failed });
    }
  }

  /** The changes this pass applies: --live-only holds back what would replace or end a process; back-off holds restarts. */
  private select(full: Plan, pass: number): Plan {
    const { log } = this.options;
    const now = Date.now();
    const kept: VmChange[] = [];
    for (const change of full.changes) {
      const text = summaryLine(full, change);
      if (
        this.options.liveOnly &&
        (change.action === 'restart' || change.action === 'stop' || change.action === 'save')
      ) {
        log.emit({
          event: 'pending',
          pass,
          vm: change.vm,
          change: text,
          reason: '--live-only; `qvm apply` or watch without --live-only applies it',
        });
        // What can change without the restart still does.
        if (change.action === 'restart' && change.liveForwards) {
          log.emit({ event: 'plan', pass, vm: change.vm, change: summaryLine(full, change.liveForwards) });
          kept.push(change.liveForwards);
        }
        continue;
      }
      const recovering =
        change.action === 'start' && (change.reason === 'exited' || change.reason === 'guest-powered-off');
      if (recovering) {
        const delay = this.backoff.delayMs(change.vm, now);
        if (delay > 0) {
          log.emit({
            event: 'backoff',
            pass,
            vm: change.vm,
            restarts: this.backoff.restartsInWindow(change.vm, now),
            delayMs: delay,
          });
          this.scheduleAfterBackoff(change.vm, delay);
          continue;
        }
        this.backoff.recordRestart(change.vm, now);
      } else if (change.action === 'start' || change.action === 'stop') {
        // Started or stopped on purpose: earlier deaths no longer count against it.
        this.backoff.reset(change.vm);
      }
      log.emit({ event: 'plan', pass, vm: change.vm, change: text });
      kept.push(change);
    }
    return { ...full, changes: kept };
  }

  private scheduleAfterBackoff(vm: string, delayMs: number): void {
    clearTimeout(this.backoffTimers.get(vm));
    this.backoffTimers.set(
      vm,
      setTimeout(() => {
        this.backoffTimers.delete(vm);
        this.request(`${vm}: back-off over`);
      }, delayMs),
    );
  }

  /**
   * Holds a QMP connection on the `events.sock` of every running VM qvm started, so a SHUTDOWN, a STOP or the
   * process dying triggers a pass at once instead of at the next resync. Adopted VMs have one monitor, which
   * watch must not hold, so they are only resynced.
   */
  private async syncEventStreams(
    manifest: Manifest,
    observation?: Observation,
    startedNow: string[] = [],
  ): Promise<void> {
    const wanted = new Set(manifest.vms.filter((v) => !v.monitor).map((v) => v.name));
    for (const [vm, stream] of this.streams) {
      if (!wanted.has(vm) || stream.closed) {
        this.streams.delete(vm);
        await stream.close();
      }
    }
    await Promise.all(
      [...wanted].map(async (vm) => {
        if (this.streams.has(vm)) return;
        if (observation && observation.vms.get(vm)?.state !== 'running') return;
        const socket = vmPaths(this.namespace, vm).events;
        let stream: QmpClient;
        try {
          stream = await QmpClient.connect(socket, { timeoutMs: 2000 });
        } catch {
          // Not running. A VM this very pass started that is already gone died at once: say so and look again
          // now rather than at the next resync.
          if (startedNow.includes(vm)) {
            this.options.log.emit({ event: 'vm-exited', vm, detail: 'its QEMU ended right after starting' });
            this.request(`${vm} exited`);
          }
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
          if (!this.expectedExits.has(vm))
            this.options.log.emit({ event: 'vm-event', vm, qmpEvent: e.event, detail });
          this.request(`${vm}: ${e.event}`);
        });
        stream.on('close', () => {
          this.streams.delete(vm);
          if (this.expectedExits.delete(vm)) return;
          this.options.log.emit({ event: 'vm-exited', vm, detail: 'its QEMU process ended' });
          this.request(`${vm} exited`);
        });
      }),
    );
  }
}

function isFolder(file: string): boolean {
  try {
    return statSync(file).isDirectory();
  } catch {
    return false;
  }
}

/** One line for a change, as the plan would print it. */
function summaryLine(plan: Plan, change: VmChange): string {
  const first = renderPlan({ ...plan, changes: [change], problems: [], notes: [] }).split('\n')[0] ?? '';
  return first.trim().replace(/^[-+~!]\s+\S+\s+/, '');
}
