/**
 * `info status`: `VM status: running`, `VM status: paused`, `VM status: paused (restore-vm)`.
 * The word in parentheses is QEMU's RunState when it says more than "paused" (restore-vm, internal-error,
 * shutdown, io-error, ...). QMP's query-status gives the same as JSON.
 */

export interface VmStatus {
  running: boolean;
  /** QEMU's RunState: running, paused, restore-vm, shutdown, internal-error, ... */
  status: string;
}

/** The run state in `info status` output; undefined when the text is not that output. */
export function parseStatus(text: string): VmStatus | undefined {
  const m = /VM status:\s*(running|paused)(?:\s*\(([^)]+)\))?/.exec(text);
  if (!m) return undefined;
  const [, word, detail] = m;
  return { running: word === 'running', status: detail ?? word! };
}
