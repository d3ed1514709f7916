/**
 * Port forwards of QEMU user networking (slirp), in QEMU's own `hostfwd` syntax:
 * `[tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport`.
 *
 * QEMU quirks that shape this module:
 * - an empty protocol means tcp;
 * - an empty host address means every interface (0.0.0.0) to QEMU. qvm never sends an empty host address:
 *   the manifest layer fills in 127.0.0.1 so nothing is exposed unless the manifest says so;
 * - an empty guest address means the guest's DHCP address, 10.0.2.15 on the default user network;
 * - IPv4 only.
 */

export type Proto = 'tcp' | 'udp';

export interface HostForward {
  proto: Proto;
  /** IPv4 address on the host. `0.0.0.0` is every interface. */
  hostAddress: string;
  hostPort: number;
  /** IPv4 address in the guest, or '' for the guest's DHCP address. */
  guestAddress: string;
  guestPort: number;
}

/** Where slirp's built-in DHCP server puts the first guest: what an empty guest address means. */
const DEFAULT_GUEST_ADDRESS = '10.0.2.15';

const IPV4 =
  /^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$/;

function isIPv4(text: string): boolean {
  return IPV4.test(text);
}

function parsePort(text: string): number | undefined {
  if (!/^[0-9]{1,5}$/.test(text)) return undefined;
  const port = Number.parseInt(text, 10);
  return port >= 1 && port <= 65535 ? port : undefined;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; reason: string };

/**
 * Parses a rule as written on a QEMU command line. An empty host address stays empty here; callers decide what
 * it means (qvm: loopback).
 */
export function parseHostfwd(rule: string): ParseResult<HostForward> {
  const m = /^(tcp|udp)?:([^:-]*):([^-]*)-([^:]*):(.*)$/.exec(rule);
  if (!m) return { ok: false, reason: 'must be [tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport' };
  const [, proto = 'tcp', hostAddress = '', hostPortText = '', guestAddress = '', guestPortText = ''] = m;
  if (hostAddress !== '' && !isIPv4(hostAddress)) {
    return { ok: false, reason: `host address "${hostAddress}" is not an IPv4 address` };
  }
  if (guestAddress !== '' && !isIPv4(guestAddress)) {
    return { ok: false, reason: `guest address "${guestAddress}" is not an IPv4 address` };
  }
  const hostPort = parsePort(hostPortText);
  if (hostPort === undefined)
    return { ok: false, reason: `host port "${hostPortText}" is not a port from 1 to 65535` };
  const guestPort = parsePort(guestPortText);
  if (guestPort === undefined) {
    return { ok: false, reason: `guest port "${guestPortText}" is not a port from 1 to 65535` };
  }
  return { ok: true, value: { proto: proto as Proto, hostAddress, hostPort, guestAddress, guestPort } };
}

/** The rule for `hostfwd=` and `hostfwd_add`. */
export function formatHostfwd(f: HostForward): string {
  return `${f.proto}:${f.hostAddress}:${f.hostPort}-${f.guestAddress}:${f.guestPort}`;
}

/** The argument of `hostfwd_remove`: QEMU matches on proto, host address and host port only. */
export function formatHostfwdRemoval(f: Pick<HostForward, 'proto' | 'hostAddress' | 'hostPort'>): string {
  return `${f.proto}:${f.hostAddress}:${f.hostPort}`;
}

/** One line for people: `tcp 127.0.0.1:8080 -> :80`. */
export function describeForward(f: HostForward): string {
  return `${f.proto} ${f.hostAddress}:${f.hostPort} -> ${f.guestAddress}:${f.guestPort}`;
}

/** Two host sides collide when proto and port match and either address covers the other (0.0.0.0 covers all). */
export function hostSidesCollide(
  a: Pick<HostForward, 'proto' | 'hostAddress' | 'hostPort'>,
  b: Pick<HostForward, 'proto' | 'hostAddress' | 'hostPort'>,
): boolean {
  if (a.proto !== b.proto || a.hostPort !== b.hostPort) return false;
  return a.hostAddress === b.hostAddress || a.hostAddress === '0.0.0.0' || b.hostAddress === '0.0.0.0';
}

/** Equal as QEMU would run them: an empty guest address is the default guest address. */
export function sameForward(a: HostForward, b: HostForward): boolean {
  return (
    a.proto === b.proto &&
    a.hostAddress === b.hostAddress &&
    a.hostPort === b.hostPort &&
    a.guestPort === b.guestPort &&
    (a.guestAddress || DEFAULT_GUEST_ADDRESS) === (b.guestAddress || DEFAULT_GUEST_ADDRESS)
  );
}

/** Whether an address is on the loopback network (127.0.0.0/8): reachable only from this machine. */
export function isLoopback(address: string): boolean {
  return address.startsWith('127.');
}
