/**
 * `qvm snapshot list|save|delete VM [TAG]`: snapshots by hand, through the monitor while the VM runs and
 * with qemu-img while it is stopped. Deleting the snapshot the manifest boots from needs --force. A VM with
 * 9p shares and an agent is saved with its shares unmounted, as apply saves it.
 */
import { realEffects, sendHmp } from '../apply/effects.js';
import { withSharesUnmounted } from '../apply/executor.js';
import { UsageError, VmStateError } from '../errors.js';
import type { VmSpec } from '../manifest/types.js';
import { apiDocument } from '../model/api.js';
import { SAVED_STATE_TAG, SNAPSHOT_TAG } from '../model/names.js';
import { observeVm } from '../observe/observe.js';
import { display } from '../plan/describe.js';
import { deleteSnapshot, imageInfo } from '../qemu/img.js';
import { parseSnapshots } from '../qemu/parse/snapshots.js';
import { savevmVerified, snapshotTags } from '../qemu/savevm.js';
import { vmPaths } from '../runtime/paths.js';
import { type Context, findVm, loadContext } from './context.js';
import { type Output, writeLine } from './output.js';

interface Flags {
  file: string;
  timeout: number;
  force: boolean;
  output?: 'human' | 'json';
}

/** The VM as the snapshot verbs need it: running or not, and where to reach it. */
interface Target {
  context: Context;
  spec: VmSpec;
  running: boolean;
  socket: string;
  hmp: (command: string, timeoutMs?: number) => Promise<string>;
  /**
   * The guest agent's socket when the running QEMU was started with 9p shares and an agent: QEMU refuses to
   * save while the guest has a share mounted, and the agent can unmount them.
   */
  shareAgent?: string;
}

export async function snapshotCommand(
  verb: string,
  vm: string,
  tag: string | undefined,
  flags: Flags,
  output: Output,
): Promise<number> {
  if (!['list', 'save', 'delete'].includes(verb))
    throw new UsageError(`unknown snapshot action "${verb}": use list, save or delete`);
  if (verb !== 'list') checkTag(verb, vm, tag);
  const context = await loadContext(flags.file);
  const spec = findVm(context, vm);
  const observed = await observeVm(vm, context.namespace, spec, { timeoutMs: flags.timeout });
  if (observed.state === 'unknown')
    throw new VmStateError(`${vm} does not answer on its monitor: ${observed.error}`);
  const paths = vmPaths(context.namespace, vm);
  const socket = spec.monitor ?? paths.qmp;
  // What the running QEMU was started with, which may differ from the manifest until the next apply.
  const launched = observed.state === 'running' ? observed.launch?.launch : undefined;
  const target: Target = {
    context,
    spec,
    running: observed.state === 'running' && observed.runstate !== 'shutdown',
    socket,
    hmp: (command, timeoutMs) => sendHmp(socket, command, timeoutMs ?? flags.timeout),
    ...(launched?.agent && launched.mounts?.length ? { shareAgent: paths.agent } : {}),
  };
  if (verb === 'list') return listSnapshots(target, flags.output === 'json', output);
  if (verb === 'save') return saveSnapshot(target, tag!, output);
  return removeSnapshot(target, tag!, flags.force, output);
}

function checkTag(verb: string, vm: string, tag: string | undefined): void {
  if (!tag) throw new UsageError(`qvm snapshot ${verb} needs a tag: qvm snapshot ${verb} ${vm} TAG`);
  if (!SNAPSHOT_TAG.test(tag))
    throw new UsageError(
      `snapshot tags are letters, digits, '.', '_' and '-', at most 64; got ${JSON.stringify(tag)}`,
    );
  if (tag === SAVED_STATE_TAG)
    throw new UsageError(`${SAVED_STATE_TAG} is qvm's own tag for hibernation (state: saved)`);
}

/** The disk a stopped VM's snapshots are read from, or an error saying there is none. */
function diskOf(target: Target): string {
  if (!target.spec.disk)
    throw new VmStateError(`${target.spec.name} is not running and has no disk in the manifest`);
  return target.spec.disk.path;
}

/** A snapshot as `snapshot list -o json` prints it; a stopped VM's disk gives only the tags. */
export interface SnapshotRow {
  tag: string;
  vmSize: string | null;
  date: string | null;
  vmClock: string | null;
  /** The manifest's `snapshot:`: every start boots from it. */
  bootsFrom: boolean;
  /** qvm's own tag for a hibernated VM (`state: saved`). */
  savedState: boolean;
}

async function listSnapshots(target: Target, json: boolean, output: Output): Promise<number> {
  const { spec } = target;
  const rows = target.running
    ? parseSnapshots(await target.hmp('info snapshots')).loadable.map((s) => [
        s.tag,
        s.vmSize,
        s.date,
        s.vmClock,
      ])
    : (await imageInfo(diskOf(target), target.spec.disk!.format)).snapshots.map((name) => [name, '', '', '']);
  if (json) {
    const items = rows.map(
      ([tag, vmSize, date, vmClock]): SnapshotRow => ({
        tag: tag!,
        vmSize: vmSize || null,
        date: date || null,
        vmClock: vmClock || null,
        bootsFrom: tag === spec.snapshot,
        savedState: tag === SAVED_STATE_TAG,
      }),
    );
    const document = apiDocument('SnapshotList', { vm: spec.name, running: target.running, items });
    writeLine(output.out, JSON.stringify(document, null, 2));
    return 0;
  }
  if (rows.length === 0) {
    writeLine(output.out, `${spec.name} has no snapshots.`);
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
  writeLine(output.out, target.running ? line(header) : 'TAG');
  for (const r of rows) writeLine(output.out, (target.running ? line(r) : r[0]!) + mark(r[0]!));
  return 0;
}

async function saveSnapshot(target: Target, tag: string, output: Output): Promise<number> {
  if (!target.running)
    throw new VmStateError(
      `${target.spec.name} is not running: a snapshot holds the VM's RAM, so save needs it running (qvm apply starts it)`,
    );
  const { spec, shareAgent } = target;
  // As apply saves: with the shares unmounted through the agent, and mounted again whatever happened.
  await withSharesUnmounted(
    shareAgent,
    realEffects(target.context.namespace),
    (step) => writeLine(output.out, `${spec.name}: ${step}`),
    () => savevmVerified(target.hmp, target.socket, tag),
  );
  writeLine(output.out, `${spec.name}: saved snapshot ${tag}`);
  return 0;
}

async function removeSnapshot(target: Target, tag: string, force: boolean, output: Output): Promise<number> {
  const { spec, context } = target;
  if (tag === spec.snapshot && !force) {
    const at = context.manifest.locate(['vms', spec.name, 'snapshot']);
    throw new UsageError(
      `${spec.name} boots from snapshot ${tag} (${spec.source}${at ? `:${at.line}` : ''}); deleting it makes the next start cold. Add --force to delete it anyway`,
    );
  }
  if (target.running) {
    const tags = await snapshotTags(target.hmp);
    // QEMU 7.2's delvm reports success for a tag that does not exist: check first.
    if (!tags.includes(tag))
      throw new VmStateError(`${spec.name} has no snapshot ${tag} (it has: ${tags.join(', ') || 'none'})`);
    await target.hmp(`delvm ${tag}`, 60_000);
  } else {
    const disk = diskOf(target);
    const tags = (await imageInfo(disk, spec.disk!.format)).snapshots;
    if (!tags.includes(tag))
      throw new VmStateError(
        `${display(context.manifest.dir, disk)} has no snapshot ${tag} (it has: ${tags.join(', ') || 'none'})`,
      );
    await deleteSnapshot(disk, tag);
  }
  writeLine(output.out, `${spec.name}: deleted snapshot ${tag}`);
  return 0;
}
