/** `qvm plan` and `qvm apply`: observe, plan, show; apply also carries the plan out. */

import { realEffects } from '../apply/effects.js';
import { applyPlan } from '../apply/executor.js';
import { formatDuration } from '../model/units.js';
import { observe } from '../observe/observe.js';
import { plan as makePlan } from '../plan/plan.js';
import { planJson, renderPlan } from '../plan/render.js';
import type { Plan } from '../plan/types.js';
import { type Context, loadContext, takeLock } from './context.js';
import { type Output, writeLine } from './output.js';
import { progressView } from './progress.js';

export interface PlanFlags {
  file: string;
  prune: boolean;
  timeout: number;
  output?: 'human' | 'json';
  refreshSnapshot?: boolean;
}

export async function computePlan(context: Context, flags: PlanFlags): Promise<Plan> {
  const observation = await observe(context.manifest, context.namespace, { timeoutMs: flags.timeout });
  return makePlan(context.manifest, observation, {
    namespace: context.namespace,
    prune: flags.prune,
    refreshSnapshots: flags.refreshSnapshot === true,
  });
}

export async function planCommand(
  flags: PlanFlags & { detailedExitcode: boolean },
  output: Output,
): Promise<number> {
  const context = await loadContext(flags.file);
  const plan = await computePlan(context, flags);
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
  const context = await loadContext(flags.file);
  // Observe and plan under the lock: what another qvm changed while we waited must be seen.
  const lock = flags.dryRun ? undefined : await takeLock(context, 'apply', flags.wait, output);
  try {
    return await applyLocked(context, flags, output);
  } finally {
    await lock?.release();
  }
}

async function applyLocked(
  context: Context,
  flags: PlanFlags & { dryRun: boolean },
  output: Output,
): Promise<number> {
  const plan = await computePlan(context, flags);
  const json = flags.output === 'json';
  if (json) writeLine(output.out, JSON.stringify({ plan: planJson(plan) }));
  else output.out.write(renderPlan(plan, { color: output.color.isColorSupported }));
  if (flags.dryRun || plan.changes.length === 0) return plan.problems.length > 0 ? 1 : 0;

  if (!json) writeLine(output.out);
  const view = json ? undefined : progressView(output);
  const started = Date.now();
  const results = await applyPlan(plan, context.manifest, {
    effects: realEffects(context.manifest, context.namespace),
    onProgress: (event) => {
      if (json) {
        const { error, ...rest } = event as typeof event & { error?: Error };
        writeLine(
          output.out,
          JSON.stringify({ event: rest.type, ...rest, ...(error ? { error: error.message } : {}) }),
        );
      } else {
        view?.onProgress(event);
      }
    },
  });
  view?.finish();
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
