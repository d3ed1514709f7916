/**
 * A change in words, one way for everyone who shows it: the plan renderer and watch's log. Pure.
 */
import { SAVED_STATE_TAG } from '../model/names.js';
import { formatSize } from '../model/units.js';
import type { PlannedForward, StartChange, StartSteps, VmChange } from './types.js';

/** A path as the user wrote it: relative to the manifest's folder when inside it. */
export function display(baseDir: string, file: string): string {
  if (file === baseDir) return '.';
  const prefix = baseDir.endsWith('/') ? baseDir : `${baseDir}/`;
  return file.startsWith(prefix) ? file.slice(prefix.length) : file;
}

/** The plan symbol of a change, as Terraform draws them: `-/+` replaces the process, `~` changes it live. */
export function changeSymbol(change: VmChange): '+' | '-' | '~' | '-/+' {
  switch (change.action) {
    case 'start':
      return '+';
    case 'restart':
      return '-/+';
    case 'update':
      return '~';
    case 'stop':
    case 'save':
      return '-';
    default:
      return assertNever(change);
  }
}

/** The one-line headline of a change: `restart: memory 512M -> 1G`. */
export function describeChange(change: VmChange, baseDir: string): string {
  switch (change.action) {
    case 'start':
      return startText(change, baseDir);
    case 'restart': {
      const why = [
        ...(change.refreshSnapshot ? [`refresh snapshot ${change.saveSnapshot}`] : []),
        ...(change.stuckIn ? [`stuck in ${change.stuckIn}`] : []),
        ...change.fields.map((f) => f.text ?? `${f.field} ${f.from} -> ${f.to}`),
      ];
      return `restart: ${why.length ? why.join(', ') : 'the command line changed'}`;
    }
    case 'update': {
      const what = [
        ...(change.add.length || change.remove.length ? ['forwards'] : []),
        ...(change.resume ? [`resume (${change.resumeReason ?? 'it was paused'})`] : []),
        ...(change.dropStraySnapshot
          ? [`delete the left-over saved state ${change.dropStraySnapshot} (never loaded)`]
          : []),
        ...(!change.dropStraySnapshot && change.forgetSavedState
          ? ['forget a stale saved-state record']
          : []),
      ];
      return `${what.join(', ')}, live`;
    }
    case 'stop': {
      const why = {
        'not-in-manifest': 'not in the manifest (apply --prune)',
        destroy: 'destroy',
        'state-stopped': 'state is stopped',
      }[change.reason];
      return `stop: ${why}${change.adopted ? ' (quit through its monitor; it was started outside qvm)' : ''}`;
    }
    case 'save':
      return `save: hibernate (savevm ${change.tag}), then stop; the next start resumes there`;
    default:
      return assertNever(change);
  }
}

/** A forward for people, marking ones reachable from other machines. */
export function forwardText(f: PlannedForward): string {
  const text = `${f.proto} ${f.hostAddress}:${f.hostPort} -> ${f.guestAddress}:${f.guestPort}`;
  return f.exposed
    ? `${text} (exposed on ${f.hostAddress === '0.0.0.0' ? 'every interface' : f.hostAddress})`
    : text;
}

function startText(change: StartChange, baseDir: string): string {
  const details: string[] = [];
  if (change.fetchImage) {
    const size =
      change.fetchImage.sizeBytes !== undefined ? ` (${mebibytes(change.fetchImage.sizeBytes)})` : '';
    details.push(`downloads ${change.fetchImage.label}${size}`);
  }
  if (change.createDisk) {
    const size =
      change.createDisk.sizeBytes !== undefined ? `, ${formatSize(change.createDisk.sizeBytes)}` : '';
    const base =
      change.fetchImage?.label ??
      change.imageLabel ??
      (change.createDisk.backing && display(baseDir, change.createDisk.backing));
    details.push(
      `creates ${display(baseDir, change.createDisk.path)}${size}${base ? `, overlay of ${base}` : ''}`,
    );
  }
  if (change.bootFrom?.kind === 'snapshot') details.push(`from snapshot ${change.bootFrom.tag}`);
  details.push(...stepDetails(change, baseDir));
  if (change.sshAt) details.push(`ssh on ${change.sshAt.host}:${change.sshAt.port}`);
  for (const f of change.forwards.filter((f) => f.exposed)) {
    details.push(
      `exposes ${f.proto} ${f.hostAddress}:${f.hostPort} on ${f.hostAddress === '0.0.0.0' ? 'every interface' : f.hostAddress}`,
    );
  }
  const paren = details.length ? ` (${details.join('; ')})` : '';
  switch (change.reason) {
    case 'new':
      return `start${paren}`;
    case 'resume':
      return `start: resume the saved state${paren}`;
    case 'exited':
      return `start: its QEMU exited (${change.detail ?? 'gone'})${paren}`;
    case 'guest-powered-off':
      return `start: the guest powered off${paren}`;
    default:
      return assertNever(change.reason);
  }
}

/** A byte count for people, in whole MiB: `346M`. */
function mebibytes(bytes: number): string {
  return `${Math.max(1, Math.round(bytes / 2 ** 20))}M`;
}

/** The disk and warm-snapshot steps a start will take, in plan words. */
function stepDetails(change: StartSteps, baseDir: string): string[] {
  const out: string[] = [];
  if (change.resizeDisk) {
    out.push(
      `grows the disk ${formatSize(change.resizeDisk.fromBytes)} -> ${formatSize(change.resizeDisk.toBytes)}`,
    );
  }
  for (const d of change.createDataDisks ?? [])
    out.push(`creates data disk ${display(baseDir, d.path)}, ${formatSize(d.sizeBytes!)}`);
  for (const g of change.growDataDisks ?? [])
    out.push(`grows ${display(baseDir, g.path)} ${formatSize(g.fromBytes)} -> ${formatSize(g.toBytes)}`);
  for (const drop of change.dropSnapshots ?? []) {
    if (drop.tag === change.staleSnapshot?.tag) continue; // said by "is stale" below
    out.push(drop.tag === SAVED_STATE_TAG ? 'drops the saved state' : `drops snapshot ${drop.tag}`);
  }
  if (change.staleSnapshot)
    out.push(`snapshot ${change.staleSnapshot.tag} is stale: ${change.staleSnapshot.why}`);
  if (change.saveSnapshot) out.push(`cold boot, then saves snapshot ${change.saveSnapshot} once ready`);
  return out;
}

function assertNever(value: never): never {
  throw new Error(`bug: unhandled ${JSON.stringify(value)}`);
}
