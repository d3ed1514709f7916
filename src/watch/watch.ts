/**
 * `qvm watch`: keeps the VMs converged while the manifest changes and while VMs drift or die.
 *
 * Level-based: a file change, a QEMU event or the resync timer only asks for a pass (coalescer.ts), and every
 * pass is a fresh reconcile pass (reconcile/pass.ts); no trigger is trusted to say what changed.
 *
 * An invalid manifest (YAML, schema, or a deleted or emptied file) never stops, restarts or changes
 * anything: the pass logs the located errors and ends, and the next valid save is applied. Any other failure
 * of a pass is logged, and watch carries on with the next one.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import chokidar from 'chokidar';
import { formatDiagnostic, isQvmError, ManifestError } from '../errors.js';
import { describeChange } from '../plan/describe.js';
import { locationText } from '../plan/render.js';
import type { Plan, VmChange } from '../plan/types.js';
import { runPass } from '../reconcile/pass.js';
import { describeHolder } from '../runtime/lock.js';
import { namespaceFor } from '../runtime/paths.js';
import { Backoff } from './backoff.js';
import { TriggerCoalescer } from './coalescer.js';
import { EventStreams } from './events.js';
import type { WatchLog } from './log.js';
import { selectChanges } from './select.js';

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

/** Watches until the signal aborts. */
export async function watch(options: WatchOptions): Promise<void> {
  const { log, signal } = options;
  const namespace = namespaceFor(options.source);
  const absolute = path.resolve(options.source);
  const folderMode = isFolder(absolute);
  const runner = new PassRunner(options);
  const coalescer = new TriggerCoalescer((triggers) => runner.pass(triggers));
  runner.requestPass = (trigger) => coalescer.request(trigger);
  log.emit({
    event: 'watch-started',
    manifest: options.source,
    namespace: namespace.dir,
    intervalMs: options.intervalMs,
    liveOnly: options.liveOnly,
    prune: options.prune,
  });
  // Watch the folder, not the file: editors that save by writing a temporary file and renaming it over the
  // manifest replace the watched inode, and a deleted manifest that comes back must be seen too.
  const folder = folderMode ? absolute : path.dirname(absolute);
  const isManifest = (file: string) =>
    folderMode
      ? path.dirname(file) === absolute && /^[^.].*\.ya?ml$/.test(path.basename(file))
      : file === absolute;
  const files = chokidar.watch(folder, { depth: 0, ignoreInitial: true });
  files.on('all', (_event, file) => {
    if (isManifest(path.resolve(file))) coalescer.request('manifest changed');
  });
  files.on('error', (error) =>
    log.emit({ event: 'error', message: `watching ${folder}: ${(error as Error).message}` }),
  );
  const resync = setInterval(() => coalescer.request('resync'), options.intervalMs);

  coalescer.request('watch started');
  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    signal.addEventListener('abort', () => resolve(), { once: true });
  });

  clearInterval(resync);
  coalescer.stop();
  runner.stop();
  await files.close();
  await runner.streams.closeAll();
  // A pass in flight gets a moment to finish its current step; its waits are aborted by the same signal.
  await Promise.race([coalescer.running, new Promise((r) => setTimeout(r, 500))]);
}

/** One pass of watch: the reconcile pass, with watch's selection, logging and event streams around it. */
class PassRunner {
  readonly streams: EventStreams;
  requestPass: (trigger: string) => void = () => {};
  private readonly backoff = new Backoff();
  private readonly backoffTimers = new Map<string, NodeJS.Timeout>();
  private passNumber = 0;
  private lastNotes = new Set<string>();

  constructor(private readonly options: WatchOptions) {
    const { log } = options;
    this.streams = new EventStreams(namespaceFor(options.source), {
      onStateEvent: (vm, qmpEvent, detail, expected) => {
        if (!expected) log.emit({ event: 'vm-event', vm, qmpEvent, detail });
        this.requestPass(`${vm}: ${qmpEvent}`);
      },
      onExit: (vm, detail, expected) => {
        if (expected) return;
        log.emit({ event: 'vm-exited', vm, detail });
        this.requestPass(`${vm} exited`);
      },
    });
  }

  stop(): void {
    for (const timer of this.backoffTimers.values()) clearTimeout(timer);
  }

  async pass(triggers: string[]): Promise<void> {
    const { log } = this.options;
    const pass = ++this.passNumber;
    const started = Date.now();
    log.emit({ event: 'pass-started', pass, triggers });
    let changes = 0;
    let failed = 0;
    try {
      const result = await runPass({
        source: this.options.source,
        command: 'watch',
        wait: true,
        signal: this.options.signal,
        onLockWait: (holder) => log.emit({ event: 'waiting-for-lock', pass, holder: describeHolder(holder) }),
        timeoutMs: this.options.timeoutMs,
        planOptions: { prune: this.options.prune, restartPolicy: true },
        onPlan: (plan) => this.report(plan, pass),
        select: (plan) => this.select(plan, pass),
        onProgress: (event) => {
          if (event.type === 'done')
            log.emit({
              event: 'action-applied',
              pass,
              vm: event.vm,
              summary: event.summary,
              durationMs: event.elapsedMs,
            });
          else if (event.type === 'failed')
            log.emit({
              event: 'action-failed',
              pass,
              vm: event.vm,
              error: event.error.message,
              durationMs: event.elapsedMs,
            });
        },
      });
      changes = result.applied.changes.length;
      failed = result.results.filter((r) => !r.ok).length;
      const startedNow = result.applied.changes
        .filter(
          (c) =>
            (c.action === 'start' || c.action === 'restart') &&
            result.results.some((r) => r.vm === c.vm && r.ok),
        )
        .map((c) => c.vm);
      const wanted = new Set(result.manifest.vms.filter((v) => !v.monitor).map((v) => v.name));
      // Without changes the observation is current: skip VMs it saw down. After changes, try them all.
      const isDown = (vm: string) => changes === 0 && result.observation.vms.get(vm)?.state !== 'running';
      await this.streams.sync(wanted, isDown, startedNow);
    } catch (error) {
      this.logFailure(error, pass);
    } finally {
      log.emit({ event: 'pass-finished', pass, durationMs: Date.now() - started, changes, failed });
    }
  }

  /** A pass that failed as a whole: an invalid manifest, a runtime folder qvm cannot use, or a bug. */
  private logFailure(error: unknown, pass: number): void {
    const { log } = this.options;
    if (error instanceof ManifestError) {
      log.emit({
        event: 'error',
        pass,
        message: `${this.options.source} is not a valid manifest; nothing was changed, waiting for the next save`,
        diagnostics: error.diagnostics.map(formatDiagnostic),
      });
    } else if (isQvmError(error)) {
      log.emit({ event: 'error', pass, message: error.message });
    } else {
      // watch must outlive a bug in one pass: say it is one, and carry on with the next pass.
      const detail =
        error instanceof Error ? (process.env.QVM_DEBUG ? error.stack : error.message) : String(error);
      log.emit({
        event: 'error',
        pass,
        message: `internal error (this is a bug in qvm; please report it): ${detail}`,
      });
    }
  }

  /** Problems, and notes once (a standing note, like a VM the guest powered off, is said once). */
  private report(plan: Plan, pass: number): void {
    const { log } = this.options;
    for (const problem of plan.problems) {
      const where = problem.location ? `${locationText(problem.location)}: ` : '';
      log.emit({ event: 'error', pass, message: `${problem.vm}: ${where}${problem.message}` });
    }
    const notes = new Map(plan.notes.map((n) => [`${n.vm}\u0000${n.message}`, n]));
    for (const [key, note] of notes) {
      if (!this.lastNotes.has(key)) log.emit({ event: 'note', pass, vm: note.vm, message: note.message });
    }
    this.lastNotes = new Set(notes.keys());
  }

  private select(full: Plan, pass: number): Plan {
    const { log } = this.options;
    const text = (change: VmChange) => describeChange(change, full.baseDir);
    const selection = selectChanges(full, this.options.liveOnly, this.backoff, Date.now());
    for (const { change } of selection.pending) {
      log.emit({
        event: 'pending',
        pass,
        vm: change.vm,
        change: text(change),
        reason: '--live-only; `qvm apply` or watch without --live-only applies it',
      });
    }
    for (const b of selection.backedOff) {
      log.emit({ event: 'backoff', pass, vm: b.vm, restarts: b.restarts, delayMs: b.delayMs });
      this.scheduleAfterBackoff(b.vm, b.delayMs);
    }
    for (const change of selection.plan.changes) {
      log.emit({ event: 'plan', pass, vm: change.vm, change: text(change) });
      if (change.action === 'stop' || change.action === 'restart' || change.action === 'save')
        this.streams.expectExit(change.vm);
      if (change.action === 'start' && change.replacesPid !== undefined) this.streams.expectExit(change.vm);
    }
    return selection.plan;
  }

  private scheduleAfterBackoff(vm: string, delayMs: number): void {
    clearTimeout(this.backoffTimers.get(vm));
    this.backoffTimers.set(
      vm,
      setTimeout(() => {
        this.backoffTimers.delete(vm);
        this.requestPass(`${vm}: back-off over`);
      }, delayMs),
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
