/**
 * `info usernet` into the port forwards QEMU has set up. Only `[HOST_FORWARD]` rows are forwards; live
 * connections show as other rows (`TCP[ESTABLISHED]`, `UDP[10 sec]`) and are skipped. The netdev id comes from
 * the `Hub -1 (net0):` line above each table; `*` as an address means 0.0.0.0. The table itself is printed by
 * libslirp and has the same shape in QEMU 7.2 through 10.x.
 */
import type { HostForward, Proto } from '../hostfwd.js';

export interface ObservedForward extends HostForward {
  netdev: string;
}

const HUB = /^\s*Hub\s+-?\d+\s+\(([^)]+)\):\s*$/;
const ROW = /^\s*(TCP|UDP)\[HOST_FORWARD\]\s+-?\d+\s+(\S+)\s+(\d+)\s+(\S+)\s+(\d+)\b/;

export function parseUsernet(text: string): ObservedForward[] {
  const forwards: ObservedForward[] = [];
  let netdev = '';
  for (const line of text.split(/\r?\n/)) {
    const hub = HUB.exec(line);
    if (hub) {
      netdev = hub[1]!;
      continue;
    }
    const row = ROW.exec(line);
    if (!row) continue;
    const [, proto, hostAddress, hostPort, guestAddress, guestPort] = row;
    forwards.push({
      netdev,
      proto: proto!.toLowerCase() as Proto,
      hostAddress: hostAddress === '*' ? '0.0.0.0' : hostAddress!,
      hostPort: Number(hostPort),
      guestAddress: guestAddress === '*' ? '' : guestAddress!,
      guestPort: Number(guestPort),
    });
  }
  return forwards;
}
