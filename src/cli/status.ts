/** `qvm status`: one row per VM of the manifest, and any running VM of its namespace it no longer lists. */

import { sendHmp } from '../apply/effects.js';
import { guestAddresses, withAgent } from '../guest/agent.js';
import type { Manifest } from '../manifest/types.js';
import { apiDocument } from '../model/api.js';
import { isLoopback } from '../model/forward.js';
import { SAVED_STATE_TAG } from '../model/names.js';
import { formatDuration } from '../model/units.js';
import { observe } from '../observe/observe.js';
import type { Observation, ObservedVm } from '../observe/types.js';
import { probeOnce } from '../ready/probe.js';
import { capSerialLog } from '../runtime/logs.js';
import { vmPaths } from '../runtime/paths.js';
import { loadContext } from './context.js';
import { type Output, writeLine } from './output.js';

export interface StatusRow {
  name: string;
  state: string;
  pid: number | null;
  forwards: string[];
  snapshots: string[];
  uptimeMs: number | null;
  /** The readiness probe's answer now; null without a probe or when not running. */
  ready: boolean | null;
  inManifest: boolean;
  adopted: boolean;
  /** Forwards reachable from other machines (not on a loopback address). */
  exposed: string[];
  /** For a running VM with `agent: true`: whether its agent answered, and the guest's IP addresses. */
  agent?: { connected: boolean; addresses: string[] };
  error?: string;
}

/** In words: running, paused, powered off by the guest, saved (hibernated), stopped, unresponsive. */
function stateWord(vm: ObservedVm): string {
  switch (vm.state) {
    case 'unknown':
      return 'unresponsive';
    case 'stopped':
      if (vm.elsewhere) return `running elsewhere (${vm.elsewhere.root})`;
      if (vm.disk?.snapshots?.includes(SAVED_STATE_TAG))
        return vm.savedState && 'record' in vm.savedState ? 'saved' : 'stopped (unrecorded saved state)';
      return vm.stale ? 'stopped (crashed)' : 'stopped';
    case 'running':
      switch (vm.runstate) {
        case 'running':
          return 'running';
        case 'shutdown':
          return 'stopped (guest powered off)';
        case 'paused':
          return 'paused';
        case 'io-error':
          return 'paused (I/O error)';
        default:
          return `stuck (${vm.runstate})`;
      }
  }
}

export function statusRows(
  manifest: Manifest,
  observation: Observation,
  nowMs: number,
  readiness: ReadonlyMap<string, boolean> = new Map(),
  agents: ReadonlyMap<string, StatusRow['agent']> = new Map(),
): StatusRow[] {
  const row = (vm: ObservedVm, inManifest: boolean): StatusRow => {
    const forwards = vm.state === 'running' ? vm.forwards : [];
    const describe = (f: (typeof forwards)[number]) =>
      `${f.proto} ${f.hostAddress}:${f.hostPort}->${f.guestPort}`;
    const snapshots = vm.state === 'running' ? vm.snapshots : (vm.disk?.snapshots ?? []);
    return {
      name: vm.name,
      state: stateWord(vm),
      pid: vm.state !== 'stopped' && vm.pid !== undefined ? vm.pid : null,
      forwards: forwards.map(describe),
      snapshots: snapshots.filter((s) => s !== SAVED_STATE_TAG),
      uptimeMs:
        vm.state === 'running' && vm.startedAtMs !== undefined ? Math.max(0, nowMs - vm.startedAtMs) : null,
      ready: readiness.get(vm.name) ?? null,
      inManifest,
      adopted: vm.adopted,
      exposed: forwards.filter((f) => !isLoopback(f.hostAddress)).map(describe),
      ...(agents.get(vm.name) ? { agent: agents.get(vm.name)! } : {}),
      ...(vm.state === 'unknown' ? { error: vm.error } : {}),
    };
  };
  return [
    ...manifest.vms.map((spec) => row(observation.vms.get(spec.name)!, true)),
    ...observation.orphans.map((vm) => row(vm, false)),
  ];
}

export function renderStatus(rows: StatusRow[], color: Output['color']): string {
  // The agent's columns only when some VM has an agent: other tables stay as they were.
  const agents = rows.some((r) => r.agent);
  const header = [
    'NAME',
    'STATE',
    'READY',
    'PID',
    ...(agents ? ['AGENT', 'ADDRESSES'] : []),
    'FORWARDS',
    'SNAPSHOTS',
    'UPTIME',
  ];
  const table = rows.map((r) => [
    r.name + (r.inManifest ? '' : ' (not in manifest)') + (r.adopted ? ' (adopted)' : ''),
    r.state,
    r.ready === null ? '-' : r.ready ? 'yes' : 'no',
    r.pid === null ? '-' : String(r.pid),
    ...(agents
      ? [
          r.agent ? (r.agent.connected ? 'yes' : 'no') : '-',
          r.agent?.addresses.length ? r.agent.addresses.join(', ') : '-',
        ]
      : []),
    r.forwards.length ? r.forwards.map((f) => (r.exposed.includes(f) ? `${f}!` : f)).join(', ') : '-',
    r.snapshots.length ? r.snapshots.join(', ') : '-',
    r.uptimeMs === null ? '-' : formatDuration(Math.floor(r.uptimeMs / 1000) * 1000),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((cells) => cells[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const out = [line(header), ...table.map(line)];
  if (rows.some((r) => r.exposed.length))
    out.push(color.yellow('! marks a forward exposed beyond this machine (not on 127.0.0.1).'));
  for (const r of rows) if (r.error) out.push(color.red(`${r.name}: ${r.error}`));
  return `${out.join('\n')}\n`;
}

/** Whether the VM's agent answers, and the guest's addresses (IPv4 first), within the timeout. */
async function agentStatus(socket: string, timeoutMs: number): Promise<StatusRow['agent']> {
  try {
    const interfaces = await withAgent(socket, (agent) => guestAddresses(agent, timeoutMs), {
      syncTimeoutMs: Math.min(timeoutMs, 2000),
    });
    const addresses = interfaces.flatMap((i) => i.addresses);
    return {
      connected: true,
      addresses: [...addresses.filter((a) => !a.includes(':')), ...addresses.filter((a) => a.includes(':'))],
    };
  } catch {
    return { connected: false, addresses: [] };
  }
}

export async function statusCommand(
  flags: { file: string; timeout: number; output?: 'human' | 'json' },
  output: Output,
): Promise<number> {
  const { manifest, namespace } = await loadContext(flags.file);
  const observation = await observe(manifest, namespace, { timeoutMs: flags.timeout });
  for (const vm of [...manifest.vms.filter((v) => !v.monitor), ...observation.orphans])
    capSerialLog(vmPaths(namespace, vm.name));
  const readiness = new Map<string, boolean>();
  await Promise.all(
    manifest.vms.map(async (spec) => {
      const vm = observation.vms.get(spec.name);
      if (!spec.ready || vm?.state !== 'running' || vm.runstate !== 'running') return;
      const socket = spec.monitor ?? vmPaths(namespace, spec.name).qmp;
      const result = await probeOnce(spec.ready, {
        usernet: () => sendHmp(socket, 'info usernet', flags.timeout),
        agentSocket: vmPaths(namespace, spec.name).agent,
      });
      readiness.set(spec.name, result.ready);
    }),
  );
  // After the probes: the agent serves one client at a time.
  const agents = new Map<string, StatusRow['agent']>();
  await Promise.all(
    manifest.vms.map(async (spec) => {
      const vm = observation.vms.get(spec.name);
      if (!spec.agent || vm?.state !== 'running' || vm.runstate !== 'running') return;
      agents.set(spec.name, await agentStatus(vmPaths(namespace, spec.name).agent, flags.timeout));
    }),
  );
  const rows = statusRows(manifest, observation, Date.now(), readiness, agents);
  if (flags.output === 'json')
    writeLine(
      output.out,
      JSON.stringify(apiDocument('StatusList', { manifest: flags.file, items: rows }), null, 2),
    );
  else output.out.write(renderStatus(rows, output.color));
  return 0;
}
