/**
 * Drawing a plan: the human form (Terraform-style, colour only when asked) and the JSON form. Both read the
 * same Plan; neither changes it.
 */
import { structuredPatch } from 'diff';
import pc from 'picocolors';
import { formatDiagnostic } from '../errors.js';
import { describeForward, type HostForward, isLoopback } from '../model/forward.js';
import { formatSize } from '../model/units.js';
import { argvLines, QEMU_SYSTEM } from '../qemu/argv.js';
import { display } from './plan.js';
import type { AfterStart, Plan, StartChange, VmChange } from './types.js';

type Colors = ReturnType<typeof pc.createColors>;

export interface Summary {
  start: number;
  live: number;
  restart: number;
  stop: number;
  save: number;
}

export function summarize(plan: Plan): Summary {
  const summary: Summary = { start: 0, live: 0, restart: 0, stop: 0, save: 0 };
  for (const change of plan.changes) {
    switch (change.action) {
      case 'start':
        summary.start++;
        break;
      case 'update':
        summary.live++;
        break;
      case 'restart':
        summary.restart++;
        break;
      case 'stop':
        summary.stop++;
        break;
      case 'save':
        summary.save++;
        break;
      default:
        assertNever(change);
    }
  }
  return summary;
}

export function hasChanges(plan: Plan): boolean {
  return plan.changes.length > 0;
}

/** A forward for people, marking ones reachable from other machines. */
export function forwardText(f: HostForward): string {
  return isLoopback(f.hostAddress)
    ? describeForward(f)
    : `${describeForward(f)} (exposed on ${f.hostAddress === '0.0.0.0' ? 'every interface' : f.hostAddress})`;
}

export function renderPlan(plan: Plan, options: { color?: boolean } = {}): string {
  const c = pc.createColors(options.color ?? false);
  const names = [...plan.changes.map((ch) => ch.vm), ...plan.problems.map((p) => p.vm)];
  const width = Math.max(0, ...names.map((n) => n.length)) + 3;
  const lines: string[] = [];
  const head = (symbol: string, vm: string, text: string) =>
    lines.push(`  ${symbol} ${vm.padEnd(width)}${text}`);
  const sub = (text: string) => lines.push(`${' '.repeat(4 + width + 2)}${text}`);

  for (const change of plan.changes) {
    switch (change.action) {
      case 'start':
        head(c.green('+'), change.vm, startText(plan, change));
        break;
      case 'restart': {
        const why = [
          ...(change.refreshSnapshot ? [`refresh snapshot ${change.saveSnapshot}`] : []),
          ...(change.stuckIn ? [`stuck in ${change.stuckIn}`] : []),
          ...change.fields.map((f) => `${f.field} ${f.from} -> ${f.to}`),
        ];
        head(
          c.yellow('~'),
          change.vm,
          `restart: ${why.length ? why.join(', ') : 'the command line changed'}`,
        );
        for (const line of argvDiff(change.argsBefore, change.argsAfter, c)) sub(line);
        break;
      }
      case 'update': {
        const what = [
          ...(change.add.length || change.remove.length ? ['forwards'] : []),
          ...(change.resume ? ['resume (it was paused)'] : []),
        ];
        head(c.yellow('~'), change.vm, `${what.join(', ')}, live`);
        for (const f of change.remove) {
          sub(c.red(`- ${forwardText(f)}${f.drift ? ' (drift: added outside qvm)' : ''}`));
        }
        for (const f of change.add) sub(c.green(`+ ${forwardText(f)}`));
        break;
      }
      case 'stop': {
        const why =
          change.reason === 'not-in-manifest'
            ? 'not in the manifest (apply --prune)'
            : change.reason === 'destroy'
              ? 'destroy'
              : 'state is stopped';
        const how = change.adopted ? ' (quit through its monitor; it was started outside qvm)' : '';
        head(c.red('-'), change.vm, `stop: ${why}${how}`);
        break;
      }
      case 'save':
        head(
          c.red('-'),
          change.vm,
          `save: hibernate (savevm ${change.tag}), then stop; the next start resumes there`,
        );
        break;
      default:
        assertNever(change);
    }
  }
  for (const problem of plan.problems) {
    const where = problem.location
      ? `${formatDiagnostic({ ...problem.location, message: '' }).replace(/: $/, '')}: `
      : '';
    head(c.red('!'), problem.vm, c.red(`error: ${where}${problem.message}`));
  }

  const out: string[] = [];
  if (plan.changes.length === 0 && plan.problems.length === 0) {
    out.push(`No changes. The VMs match the manifest.`);
  } else {
    out.push(...lines, '');
    const s = summarize(plan);
    const parts = [
      `${s.start} to start`,
      `${s.live} to change live`,
      `${s.restart} to restart`,
      `${s.stop} to stop`,
    ];
    if (s.save) parts.push(`${s.save} to save`);
    out.push(`${c.bold('Plan:')} ${parts.join(', ')}.`);
    if (plan.problems.length) {
      const n = plan.problems.length;
      out.push(
        c.red(
          n === 1
            ? '1 error: the VM marked ! is left as it is.'
            : `${n} errors: the VMs marked ! are left as they are.`,
        ),
      );
    }
  }
  for (const note of plan.notes) out.push(c.dim(`Note: ${note.vm} ${note.message}.`));
  return `${out.join('\n')}\n`;
}

function startText(plan: Plan, change: StartChange): string {
  const details: string[] = [];
  if (change.createDisk) {
    const size =
      change.createDisk.sizeBytes !== undefined ? `, ${formatSize(change.createDisk.sizeBytes)}` : '';
    const backing = change.createDisk.backing
      ? `, overlay of ${display({ dir: plan.baseDir }, change.createDisk.backing)}`
      : '';
    details.push(`creates ${display({ dir: plan.baseDir }, change.createDisk.path)}${size}${backing}`);
  }
  if (change.bootFrom?.kind === 'snapshot') details.push(`from snapshot ${change.bootFrom.tag}`);
  details.push(...afterStartDetails(change));
  details.push(...exposedDetails(change.args));
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

/** Forwards on the command line that other machines can reach: a start must say so, as a live add does. */
function exposedDetails(args: string[]): string[] {
  const netdev = args[args.indexOf('-netdev') + 1] ?? '';
  const out: string[] = [];
  for (const m of netdev.matchAll(/hostfwd=(tcp|udp):([0-9.]+):(\d+)-/g)) {
    const [, proto, address, port] = m;
    if (!isLoopback(address!)) {
      out.push(
        `exposes ${proto} ${address}:${port} on ${address === '0.0.0.0' ? 'every interface' : address}`,
      );
    }
  }
  return out;
}

/** The warm-snapshot steps a start will take, in plan words. */
function afterStartDetails(change: AfterStart): string[] {
  const out: string[] = [];
  if (change.resizeDisk) {
    out.push(
      `grows the disk ${formatSize(change.resizeDisk.fromBytes)} -> ${formatSize(change.resizeDisk.toBytes)}`,
    );
  }
  if (change.dropSnapshot) out.push(`drops snapshot ${change.dropSnapshot}`);
  if (change.saveSnapshot) out.push(`cold boot, then saves snapshot ${change.saveSnapshot} once ready`);
  return out;
}

/** The qemu command line before and after, one option per line, as a unified diff with a little context. */
export function argvDiff(before: string[], after: string[], c: Colors): string[] {
  const patch = structuredPatch(
    'before',
    'after',
    `${argvLines(before).join('\n')}\n`,
    `${argvLines(after).join('\n')}\n`,
    '',
    '',
    {
      context: 1,
    },
  );
  if (patch.hunks.length === 0) return [];
  const lines = [c.dim(`${QEMU_SYSTEM} command line:`)];
  for (const hunk of patch.hunks) {
    if (lines.length > 1) lines.push(c.dim('  ...'));
    for (const line of hunk.lines) {
      if (line.startsWith('\\')) continue;
      const text = line.slice(1);
      if (line[0] === '+') lines.push(c.green(`+ ${text}`));
      else if (line[0] === '-') lines.push(c.red(`- ${text}`));
      else lines.push(c.dim(`  ${text}`));
    }
  }
  return lines;
}

/** The plan as JSON for scripts: the same data, plus the summary. */
export function planJson(plan: Plan): object {
  return { formatVersion: 1, summary: summarize(plan), ...plan };
}

function assertNever(value: never): never {
  throw new Error(`bug: unhandled ${JSON.stringify(value)}`);
}

export type { VmChange };
