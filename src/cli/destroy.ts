/**
 * `qvm destroy [VM...]`: stops VMs and removes their runtime files; disks are kept. With --delete-disks it
 * also deletes the disks qvm created: only those, recognised by path and inode, never a backing image and
 * never a file that was there before qvm (or that replaced the one qvm created).
 *
 * The stops are planned and applied by the same reconcile pass as apply; this command only adds the clean-up
 * after it, still under the namespace's lock. Each VM's result stands on its own: one VM that fails to stop
 * keeps only its own files.
 */
import { existsSync, rmSync, type Stats, statSync, unlinkSync } from 'node:fs';
import type { VmResult } from '../apply/executor.js';
import { UsageError } from '../errors.js';
import { listNamespaceVms } from '../observe/observe.js';
import { display } from '../plan/describe.js';
import type { Plan } from '../plan/types.js';
import { type Context, runPass } from '../reconcile/pass.js';
import { socketFiles, vmPaths } from '../runtime/paths.js';
import { processWithFd, readProcess } from '../runtime/process.js';
import { forgetKnownDisk, readKnownDisks, readSavedState, removeRecord } from '../runtime/records.js';
import { sayWaiting } from './context.js';
import { type Output, writeLine } from './output.js';
import { progressView } from './progress.js';

export async function destroyCommand(
  names: string[],
  flags: { file: string; timeout: number; deleteDisks: boolean; deleteDataDisks: boolean; wait: boolean },
  output: Output,
): Promise<number> {
  const c = output.color;
  if (flags.deleteDataDisks && !flags.deleteDisks)
    throw new UsageError(
      '--delete-data-disks goes with --delete-disks: qvm destroy --delete-disks --delete-data-disks',
    );
  let view: Awaited<ReturnType<typeof progressView>> | undefined;
  let targets: string[] = [];
  const { plan, results } = await runPass({
    source: flags.file,
    command: 'destroy',
    wait: flags.wait,
    onLockWait: sayWaiting(output, flags.file),
    timeoutMs: flags.timeout,
    planOptions: (context) => {
      targets = destroyTargets(context, names);
      return { prune: false, destroy: targets };
    },
    onPlan: async (p) => {
      for (const note of p.notes) writeLine(output.out, c.dim(`${note.vm}: ${note.message}`));
      for (const problem of p.problems)
        writeLine(output.err, `${c.red('error:')} ${problem.vm}: ${problem.message}`);
      if (p.changes.length > 0) view = await progressView(output);
    },
    onProgress: (event) => view?.onProgress(event),
    afterApply: (context, applied, results) => {
      view?.finish();
      for (const r of results) if (!r.ok) writeLine(output.err, `${c.red('error:')} ${r.error!.message}`);
      cleanUp(context, targets, applied, results, flags, output);
    },
  });
  return results.some((r) => !r.ok) || plan.problems.length > 0 ? 1 : 0;
}

/** The VMs named (each must be of the manifest or its namespace), or all of both. */
function destroyTargets(context: Context, names: string[]): string[] {
  const known = new Set([...context.manifest.vms.map((v) => v.name), ...listNamespaceVms(context.namespace)]);
  for (const name of names) {
    if (!known.has(name))
      throw new UsageError(`no VM named "${name}" in ${context.manifest.file} or its runtime folder`);
  }
  return names.length > 0 ? names : [...known];
}

/** Removes the runtime files (and with --delete-disks the disks qvm created) of each VM that is now down. */
function cleanUp(
  context: Context,
  targets: string[],
  applied: Plan,
  results: VmResult[],
  flags: { deleteDisks: boolean; deleteDataDisks: boolean },
  output: Output,
): void {
  const { deleteDisks } = flags;
  const { manifest, namespace } = context;
  const failed = new Set([
    ...results.filter((r) => !r.ok).map((r) => r.vm),
    ...applied.problems.map((p) => p.vm),
  ]);
  const skipped = new Set(applied.notes.map((n) => n.vm));
  for (const name of targets) {
    if (failed.has(name) || skipped.has(name)) continue;
    const paths = vmPaths(namespace, name);
    for (const file of [paths.pidfile, ...socketFiles(paths), paths.launch]) {
      rmSync(file, { force: true });
    }
    const deleted = deleteDisks ? deleteCreatedDisks(context, name, flags.deleteDataDisks, output) : [];
    if (deleteDisks) {
      // Nothing is left worth keeping: logs go with the VM, and a saved state goes with its disk.
      rmSync(paths.dir, { recursive: true, force: true });
      const saved = readSavedState(paths.savedState);
      if (saved && !('unreadable' in saved) && deleted.includes(saved.disk.path))
        removeRecord(paths.savedState);
    }
    const spec = manifest.vms.find((v) => v.name === name);
    const keptDisk =
      spec?.disk && !deleted.includes(spec.disk.path) && existsSync(spec.disk.path)
        ? `; kept ${display(manifest.dir, spec.disk.path)}${deleteDisks ? ' (qvm did not create it)' : ''}`
        : '';
    writeLine(output.out, `${name}: destroyed${keptDisk}`);
  }
}

/**
 * Deletes the disks qvm created for a VM, each only when it is still the very file qvm created, no other VM of
 * the manifest declares it (a VM renamed, a disk handed over), and no process has it open. Every disk kept is
 * said, with why. Returns the paths deleted.
 */
function deleteCreatedDisks(
  context: Context,
  name: string,
  deleteDataDisks: boolean,
  output: Output,
): string[] {
  const { manifest, namespace } = context;
  const record = vmPaths(namespace, name).disks;
  const deleted: string[] = [];
  const keep = (shown: string, why: string) =>
    writeLine(output.out, output.color.yellow(`${name}: kept ${shown}: ${why}`));
  for (const disk of readKnownDisks(record).filter((d) => d.created)) {
    const shown = display(manifest.dir, disk.path);
    let stat: Stats;
    try {
      stat = statSync(disk.path);
    } catch {
      forgetKnownDisk(record, disk.path);
      continue;
    }
    if (stat.dev !== disk.dev || stat.ino !== disk.ino) {
      keep(shown, 'it is not the file qvm created (it was replaced since)');
      forgetKnownDisk(record, disk.path);
      continue;
    }
    if (disk.role === 'data' && !deleteDataDisks) {
      keep(shown, 'a data disk (--delete-data-disks deletes it too)');
      continue;
    }
    const claimant = manifest.vms.find(
      (v) =>
        v.name !== name &&
        [v.disk?.path, ...v.dataDisks.map((d) => d.path)].some((p) => p !== undefined && sameFile(p, stat)),
    );
    if (claimant) {
      keep(shown, `VM ${claimant.name} of the manifest declares it as its disk`);
      continue;
    }
    const holder = processHolding(stat);
    if (holder) {
      keep(shown, `it is open in ${holder}`);
      continue;
    }
    unlinkSync(disk.path);
    deleted.push(disk.path);
    forgetKnownDisk(record, disk.path);
    writeLine(output.out, `${name}: deleted ${shown} (created by qvm)`);
  }
  return deleted;
}

function sameFile(file: string, stat: Stats): boolean {
  try {
    const other = statSync(file);
    return other.dev === stat.dev && other.ino === stat.ino;
  } catch {
    return false;
  }
}

/** A process that has this file open (a QEMU qvm does not know of, a backup, a loop device's owner). */
function processHolding(stat: Stats): string | undefined {
  const pid = processWithFd((fd) => {
    const target = statSync(fd);
    return target.dev === stat.dev && target.ino === stat.ino;
  });
  if (pid === undefined) return undefined;
  const argv = readProcess(pid)?.argv ?? [];
  return `pid ${pid} (${argv.join(' ').slice(0, 60) || 'unknown'})`;
}
