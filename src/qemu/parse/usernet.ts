/**
 * `info usernet` into the port forwards QEMU has set up. Only `[HOST_FORWARD]` rows are forwards; live
 * connections show as other rows (`TCP[ESTABLISHED]`, `UDP[10 sec]`) and are skipped. The netdev id comes from
 * the `Hub -1 (net0):` line above each table; `*` as an address means 0.0.0.0. The table itself is printed by
 * libslirp and has the same shape in QEMU 7.2 through 10.x.
 */
import type { HostForward, Proto } from '../../model/forward.js';

export interface ObservedForward extends HostForward {
  netdev: string;
}

/** Any row of the table: a forward (`HOST_FORWARD`) or a connection (`ESTABLISHED`, `SYN_SENT`, `10 sec`, ...). */
export interface UsernetRow extends ObservedForward {
  state: string;
}

const HUB = /^\s*Hub\s+-?\d+\s+\(([^)]+)\):\s*$/;
const ROW = /^\s*(TCP|UDP)\[([^\]]+)\]\s+-?\d+\s+(\S+)\s+(\d+)\s+(\S+)\s+(\d+)\b/;

/** Every row of the `info usernet` tables: forwards and live connections, each with its netdev. */
/** The forwards (`HOST_FORWARD` rows) of `info usernet` output. */
export function parseUsernetRows(text: string): UsernetRow[] {
  const rows: UsernetRow[] = [];
  let netdev = '';
  for (const line of text.split(/\r?\n/)) {
    const hub = HUB.exec(line);
    if (hub) {
      netdev = hub[1]!;
      continue;
    }
    const row = ROW.exec(line);
    if (!row) continue;
    const [, proto, state, hostAddress, hostPort, guestAddress, guestPort] = row;
    rows.push({
      netdev,
      state: state!,
      proto: proto!.toLowerCase() as Proto,
      hostAddress: hostAddress === '*' ? '0.0.0.0' : hostAddress!,
      hostPort: Number(hostPort),
      guestAddress: guestAddress === '*' ? '' : guestAddress!,
      guestPort: Number(guestPort),
    });
  }
  return rows;
}

export function parseUsernet(text: string): ObservedForward[] {
  return parseUsernetRows(text)
    .filter((row) => row.state === 'HOST_FORWARD')
    .map(({ state: _state, ...forward }) => forward);
}
