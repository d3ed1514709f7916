/** `qvm plan` and `qvm apply`: one reconcile pass; plan stops after showing it, apply carries it out. */
import { formatDuration } from '../model/units.js';
import { planJson, renderPlan } from '../plan/render.js';
import type { Plan } from '../plan/types.js';
import { runPass } from '../reconcile/pass.js';
import { sayWaiting } from './context.js';
import { type Output, writeLine } from './output.js';
import type { ProgressView } from './progress.js';

export interface PlanFlags {
  file: string;
  prune: boolean;
  timeout: number;
  output?: 'human' | 'json';
  refreshSnapshot?: boolean;
  discardSavedState?: boolean;
}

function planOptions(flags: PlanFlags) {
  return {
    prune: flags.prune,
    refreshSnapshots: flags.refreshSnapshot === true,
    discardSavedState: flags.discardSavedState === true,
  };
}

export async function planCommand(
  flags: PlanFlags & { detailedExitcode: boolean },
  output: Output,
): Promise<number> {
  const { plan } = await runPass({
    source: flags.file,
    command: 'plan',
    wait: false,
    timeoutMs: flags.timeout,
    planOptions: planOptions(flags),
    dryRun: true,
  });
  if (flags.output === 'json') writeLine(output.out, JSON.stringify(planJson(plan), null, 2));
  else output.out.write(renderPlan(plan, { color: output.color.isColorSupported }));
  if (plan.problems.length > 0) return 1;
  if (flags.detailedExitcode && plan.changes.length > 0) return 2;
  return 0;
}

export async function applyCommand(
  flags: PlanFlags & { dryRun: boolean; wait: boolean },
  output: Output,
): Promise<number> {
  const json = flags.output === 'json';
  let view: ProgressView | undefined;
  let started = 0;
  const { plan, results } = await runPass({
    source: flags.file,
    command: 'apply',
    wait: flags.wait,
    lockOnlyForChanges: true,
    onLockWait: sayWaiting(output, flags.file),
    timeoutMs: flags.timeout,
    planOptions: planOptions(flags),
    dryRun: flags.dryRun,
    onPlan: async (p) => {
      showPlan(p, json, output);
      if (!flags.dryRun && p.changes.length > 0 && !json) {
        writeLine(output.out);
        // The progress display (log-update and its terminal helpers) is loaded only when there is progress.
        view = await (await import('./progress.js')).progressView(output);
      }
      started = Date.now();
    },
    onProgress: (event) => {
      if (!json) return view?.onProgress(event);
      const { error, ...rest } = event as typeof event & { error?: Error };
      writeLine(
        output.out,
        JSON.stringify({ event: rest.type, ...rest, ...(error ? { error: error.message } : {}) }),
      );
    },
  });
  view?.finish();
  if (flags.dryRun || plan.changes.length === 0) return plan.problems.length > 0 ? 1 : 0;
  const failed = results.filter((r) => !r.ok);
  if (!json) {
    const c = output.color;
    const applied = results.length - failed.length;
    const line = `Apply: ${applied} of ${results.length} done in ${formatDuration(Date.now() - started)}${failed.length ? `, ${failed.length} failed` : ''}.`;
    writeLine(output.out, `\n${failed.length ? c.red(line) : c.green(line)}`);
    for (const result of failed) writeLine(output.err, `${c.red('error:')} ${result.error!.message}`);
  }
  return failed.length > 0 || plan.problems.length > 0 ? 1 : 0;
}

function showPlan(plan: Plan, json: boolean, output: Output): void {
  if (json) writeLine(output.out, JSON.stringify({ plan: planJson(plan) }));
  else output.out.write(renderPlan(plan, { color: output.color.isColorSupported }));
}
