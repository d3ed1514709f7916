/**
 * `savevm` as qvm uses it everywhere (warm snapshots, hibernation, `qvm snapshot save`): with a deadline long
 * enough to write the guest's RAM, and checked afterwards, because QEMU's HMP may print nothing and still
 * not have saved (a full disk, a device without snapshot support).
 */
import { MonitorCommandError } from '../errors.js';
import { parseSnapshots } from './parse/snapshots.js';

/** savevm writes RAM into the disk: allow it minutes, not the usual monitor deadline. */
const SAVEVM_TIMEOUT_MS = 300_000;

/** Runs one HMP command line and returns its text (throwing QEMU's failures). */
export type HmpRunner = (command: string, timeoutMs?: number) => Promise<string>;

/** The loadable snapshot tags the monitor lists now. */
export async function snapshotTags(run: HmpRunner): Promise<string[]> {
  return parseSnapshots(await run('info snapshots')).loadable.map((s) => s.tag);
}

/** `savevm TAG`, then proof that TAG is on the disk; throws MonitorCommandError (with `detail`) otherwise. */
export async function savevmVerified(
  run: HmpRunner,
  socket: string,
  tag: string,
  detail = '',
): Promise<void> {
  await run(`savevm ${tag}`, SAVEVM_TIMEOUT_MS);
  if (!(await snapshotTags(run)).includes(tag)) {
    throw new MonitorCommandError(
      `savevm ${tag}`,
      `snapshot ${tag} is not on the disk after savevm${detail}`,
      socket,
    );
  }
}
