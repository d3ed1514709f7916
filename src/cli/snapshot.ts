/**
 * `qvm snapshot list|save|delete VM [TAG]`: snapshots by hand, through the monitor while the VM runs and
 * with qemu-img while it is stopped. Deleting the snapshot the manifest boots from needs --force.
 */
import { sendHmp } from '../apply/effects.js';
import { UsageError, VmStateError } from '../errors.js';
import { SAVED_STATE_TAG, SNAPSHOT_TAG } from '../model/names.js';
import { observeVm } from '../observe/observe.js';
import { display } from '../plan/describe.js';
import { deleteSnapshot, imageInfo } from '../qemu/img.js';
import { parseSnapshots } from '../qemu/parse/snapshots.js';
import { savevmVerified } from '../qemu/savevm.js';
import { vmPaths } from '../runtime/paths.js';
import { findVm, loadContext } from './context.js';
import { type Output, writeLine } from './output.js';

export async function snapshotCommand(
  verb: string,
  vm: string,
  tag: string | undefined,
  flags: { file: string; timeout: number; force: boolean },
  output: Output,
): Promise<number> {
  if (!['list', 'save', 'delete'].includes(verb))
    throw new UsageError(`unknown snapshot action "${verb}": use list, save or delete`);
  if (verb !== 'list') {
    if (!tag) throw new UsageError(`qvm snapshot ${verb} needs a tag: qvm snapshot ${verb} ${vm} TAG`);
    if (!SNAPSHOT_TAG.test(tag))
      throw new UsageError(
        `snapshot tags are letters, digits, '.', '_' and '-', at most 64; got ${JSON.stringify(tag)}`,
      );
    if (tag === SAVED_STATE_TAG)
      throw new UsageError(`${SAVED_STATE_TAG} is qvm's own tag for hibernation (state: saved)`);
  }
  const context = await loadContext(flags.file);
  const spec = findVm(context, vm);
  const observed = await observeVm(vm, context.namespace, spec, { timeoutMs: flags.timeout });
  if (observed.state === 'unknown')
    throw new VmStateError(`${vm} does not answer on its monitor: ${observed.error}`);
  const running = observed.state === 'running' && observed.runstate !== 'shutdown';
  const socket = spec.monitor ?? vmPaths(context.namespace, vm).qmp;
  const diskPath = spec.disk?.path;

  if (verb === 'list') {
    const list = running
      ? parseSnapshots(await sendHmp(socket, 'info snapshots', flags.timeout)).loadable
      : undefined;
    const rows: string[][] = [];
    if (list) {
      for (const s of list) rows.push([s.tag, s.vmSize, s.date, s.vmClock]);
    } else {
      if (!diskPath)
        throw new VmStateError(`${vm} is not running and has no disk in the manifest to read snapshots from`);
      for (const name of (await imageInfo(diskPath)).snapshots) rows.push([name, '', '', '']);
    }
    if (rows.length === 0) {
      writeLine(output.out, `${vm} has no snapshots.`);
      return 0;
    }
    const mark = (name: string) =>
      name === spec.snapshot
        ? '  (the manifest boots from it)'
        : name === SAVED_STATE_TAG
          ? '  (hibernated state)'
          : '';
    const header = ['TAG', 'VM SIZE', 'DATE', 'VM CLOCK'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]) =>
      cells
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd();
    writeLine(output.out, line(list ? header : ['TAG']));
    for (const r of rows) writeLine(output.out, (list ? line(r) : r[0]!) + mark(r[0]!));
    return 0;
  }

  if (verb === 'save') {
    if (!running)
      throw new VmStateError(
        `${vm} is not running: a snapshot holds the VM's RAM, so save needs it running (qvm apply starts it)`,
      );
    await savevmVerified(
      (command, timeoutMs) => sendHmp(socket, command, timeoutMs ?? flags.timeout),
      socket,
      tag!,
    );
    writeLine(output.out, `${vm}: saved snapshot ${tag}`);
    return 0;
  }

  if (tag === spec.snapshot && !flags.force) {
    const at = context.manifest.locate(['vms', vm, 'snapshot']);
    throw new UsageError(
      `${vm} boots from snapshot ${tag} (${spec.source}${at ? `:${at.line}` : ''}); deleting it makes the next start cold. Add --force to delete it anyway`,
    );
  }
  if (running) {
    const tags = parseSnapshots(await sendHmp(socket, 'info snapshots', flags.timeout)).loadable.map(
      (s) => s.tag,
    );
    // QEMU 7.2's delvm reports success for a tag that does not exist: check first.
    if (!tags.includes(tag!))
      throw new VmStateError(`${vm} has no snapshot ${tag} (it has: ${tags.join(', ') || 'none'})`);
    await sendHmp(socket, `delvm ${tag}`, 60_000);
  } else {
    if (!diskPath) throw new VmStateError(`${vm} is not running and has no disk in the manifest`);
    const tags = (await imageInfo(diskPath)).snapshots;
    if (!tags.includes(tag!))
      throw new VmStateError(
        `${display(context.manifest.dir, diskPath)} has no snapshot ${tag} (it has: ${tags.join(', ') || 'none'})`,
      );
    await deleteSnapshot(diskPath, tag!);
  }
  writeLine(output.out, `${vm}: deleted snapshot ${tag}`);
  return 0;
}
