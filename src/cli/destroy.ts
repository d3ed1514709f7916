/**
 * `qvm destroy [VM...]`: stops VMs and removes their runtime files; disks are kept. With --delete-disks it
 * also deletes the disks qvm created: only those, recognised by path and inode, never a backing image and
 * never a file that was there before qvm (or that replaced the one qvm created).
 */
import { rmSync, statSync, unlinkSync } from 'node:fs';
import { realEffects } from '../apply/effects.js';
import { applyPlan } from '../apply/executor.js';
import { UsageError } from '../errors.js';
import { listNamespaceVms, observeVm } from '../observe/observe.js';
import { display } from '../plan/plan.js';
import type { Plan, StopChange } from '../plan/types.js';
import { vmPaths } from '../runtime/paths.js';
import { forgetCreatedDisk, readCreatedDisks } from '../runtime/records.js';
import { type Context, loadContext, takeLock } from './context.js';
import { type Output, writeLine } from './output.js';
import { progressView } from './progress.js';

export async function destroyCommand(
  names: string[],
  flags: { file: string; timeout: number; deleteDisks: boolean; wait: boolean },
  output: Output,
): Promise<number> {
  const context = await loadContext(flags.file);
  const lock = await takeLock(context, 'destroy', flags.wait, output);
  try {
    return await destroyLocked(context, names, flags, output);
  } finally {
    await lock.release();
  }
}

async function destroyLocked(
  context: Context,
  names: string[],
  flags: { timeout: number; deleteDisks: boolean },
  output: Output,
): Promise<number> {
  const { manifest, namespace } = context;
  const known = new Set([...manifest.vms.map((v) => v.name), ...listNamespaceVms(namespace)]);
  for (const name of names) {
    if (!known.has(name))
      throw new UsageError(`no VM named "${name}" in ${manifest.file} or its runtime folder`);
  }
  const targets = names.length > 0 ? names : [...known];
  const c = output.color;
  const stops: StopChange[] = [];
  const skipped: string[] = [];
  // Observed in parallel, as plan does: a frozen VM costs one timeout, not one per VM after it.
  const observations = await Promise.all(
    targets.map((name) => {
      const spec = manifest.vms.find((v) => v.name === name);
      return spec?.monitor ? undefined : observeVm(name, namespace, spec, { timeoutMs: flags.timeout });
    }),
  );
  targets.forEach((name, i) => {
    const spec = manifest.vms.find((v) => v.name === name);
    const observed = observations[i];
    if (!observed) {
      skipped.push(name);
      return;
    }
    if (observed.state === 'stopped') return;
    const paths = vmPaths(namespace, name);
    stops.push({
      action: 'stop',
      vm: name,
      reason: 'destroy',
      adopted: false,
      ...(observed.pid !== undefined ? { pid: observed.pid } : {}),
      socket: paths.qmp,
      stopTimeoutMs: spec?.stopTimeoutMs ?? 30_000,
      alreadyPoweredOff: observed.state === 'running' && observed.runstate === 'shutdown',
    });
  });
  for (const name of skipped) {
    writeLine(
      output.out,
      c.dim(
        `${name}: skipped: adopted VMs (monitor:) are not destroyed by qvm; set state: stopped to quit one`,
      ),
    );
  }
  let failed = 0;
  if (stops.length > 0) {
    const plan: Plan = { baseDir: manifest.dir, changes: stops, problems: [], notes: [], unchanged: [] };
    const view = progressView(output);
    const results = await applyPlan(plan, manifest, {
      effects: realEffects(manifest, namespace),
      onProgress: (e) => view.onProgress(e),
    });
    view.finish();
    failed = results.filter((r) => !r.ok).length;
    for (const r of results) if (!r.ok) writeLine(output.err, `${c.red('error:')} ${r.error!.message}`);
  }

  for (const name of targets) {
    if (skipped.includes(name) || stops.some((s) => s.vm === name && failed > 0)) continue;
    const paths = vmPaths(namespace, name);
    for (const file of [paths.pidfile, paths.qmp, paths.events, paths.hmp, paths.serial, paths.launch]) {
      rmSync(file, { force: true });
    }
    const deleted: string[] = [];
    if (flags.deleteDisks) {
      for (const disk of readCreatedDisks(paths.dir)) {
        const shown = display(manifest, disk.path);
        let stat: ReturnType<typeof statSync> | undefined;
        try {
          stat = statSync(disk.path);
        } catch {
          forgetCreatedDisk(paths.dir, disk.path);
          continue;
        }
        if (stat.dev !== disk.dev || stat.ino !== disk.ino) {
          writeLine(
            output.out,
            c.yellow(`${name}: kept ${shown}: it is not the file qvm created (it was replaced since)`),
          );
          forgetCreatedDisk(paths.dir, disk.path);
          continue;
        }
        unlinkSync(disk.path);
        deleted.push(disk.path);
        forgetCreatedDisk(paths.dir, disk.path);
        writeLine(output.out, `${name}: deleted ${shown} (created by qvm)`);
      }
      // Nothing is left worth keeping: logs go with the VM.
      rmSync(paths.dir, { recursive: true, force: true });
    }
    const spec = manifest.vms.find((v) => v.name === name);
    const created = new Set(deleted);
    const keptDisk =
      spec?.disk && !created.has(spec.disk.path)
        ? `; kept ${display(manifest, spec.disk.path)}${flags.deleteDisks ? ' (qvm did not create it)' : ''}`
        : '';
    writeLine(output.out, `${name}: destroyed${keptDisk}`);
  }
  return failed > 0 ? 1 : 0;
}
