/**
 * Drawing a plan: the human form (Terraform-style, colour only when asked) and the JSON form. Both read the
 * same Plan; neither changes it.
 */
import { structuredPatch } from 'diff';
import pc from 'picocolors';
import { formatDiagnostic } from '../errors.js';
import { apiDocument } from '../model/api.js';
import { argvLines, QEMU_SYSTEM } from '../qemu/argv.js';
import { changeSymbol, describeChange, forwardText } from './describe.js';
import type { Plan, PlanLocation } from './types.js';

type Colors = ReturnType<typeof pc.createColors>;

export interface Summary {
  start: number;
  live: number;
  restart: number;
  stop: number;
  save: number;
}

/** How many changes of each kind the plan has. */
function summarize(plan: Plan): Summary {
  const summary: Summary = { start: 0, live: 0, restart: 0, stop: 0, save: 0 };
  const kind = { start: 'start', update: 'live', restart: 'restart', stop: 'stop', save: 'save' } as const;
  for (const change of plan.changes) summary[kind[change.action]]++;
  return summary;
}

/** `file:line:col: path` of a problem's location, as validate prints it. */
export function locationText(location: PlanLocation): string {
  return formatDiagnostic({ ...location, message: '' }).replace(/: $/, '');
}

/** The plan for people: one line per VM with a symbol, details under it, then a summary and notes. */
export function renderPlan(plan: Plan, options: { color?: boolean } = {}): string {
  const c = pc.createColors(options.color ?? false);
  const names = [...plan.changes.map((ch) => ch.vm), ...plan.problems.map((p) => p.vm)];
  const width = Math.max(0, ...names.map((n) => n.length)) + 3;
  const lines: string[] = [];
  const head = (symbol: string, vm: string, text: string) =>
    lines.push(`${symbol} ${vm.padEnd(width)}${text}`);
  const sub = (text: string) => lines.push(`${' '.repeat(4 + width + 2)}${text}`);
  const paint = { '+': c.green, '-': c.red, '~': c.yellow, '-/+': c.yellow };

  for (const change of plan.changes) {
    const symbol = changeSymbol(change);
    head(paint[symbol](symbol.padStart(3)), change.vm, describeChange(change, plan.baseDir));
    if (change.action === 'restart') {
      for (const line of argvDiff(change.argsBefore, change.launch.args, c)) sub(line);
    } else if (change.action === 'update') {
      for (const f of change.remove)
        sub(c.red(`- ${forwardText(f)}${f.drift ? ' (drift: added outside qvm)' : ''}`));
      for (const f of change.add) sub(c.green(`+ ${forwardText(f)}`));
    }
  }
  for (const problem of plan.problems) {
    const where = problem.location ? `${locationText(problem.location)}: ` : '';
    head(c.red('  !'), problem.vm, c.red(`error: ${where}${problem.message}`));
  }

  const out: string[] = [];
  if (plan.changes.length === 0 && plan.problems.length === 0) {
    out.push('No changes. The VMs match the manifest.');
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

/** The qemu command line before and after, one option per line, as a unified diff with a little context. */
function argvDiff(before: string[], after: string[], c: Colors): string[] {
  const patch = structuredPatch(
    'before',
    'after',
    `${argvLines(before).join('\n')}\n`,
    `${argvLines(after).join('\n')}\n`,
    '',
    '',
    { context: 1 },
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

/** The plan as JSON for scripts (`kind: Plan` of qvm/v1): the same data, plus the summary. */
export function planJson(plan: Plan): object {
  return apiDocument('Plan', { summary: summarize(plan), ...plan });
}
