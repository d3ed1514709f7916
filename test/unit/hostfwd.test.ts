import { describe, expect, it } from 'vitest';
import {
  describeForward,
  formatHostfwd,
  formatHostfwdRemoval,
  hostSidesCollide,
  parseHostfwd,
  sameForward,
} from '../../src/model/forward.js';

describe('parseHostfwd', () => {
  it('reads QEMU command-line rules', () => {
    expect(parseHostfwd('tcp::10022-:22')).toEqual({
      ok: true,
      value: { proto: 'tcp', hostAddress: '', hostPort: 10022, guestAddress: '', guestPort: 22 },
    });
    expect(parseHostfwd('udp:0.0.0.0:5353-10.0.2.15:53')).toEqual({
      ok: true,
      value: {
        proto: 'udp',
        hostAddress: '0.0.0.0',
        hostPort: 5353,
        guestAddress: '10.0.2.15',
        guestPort: 53,
      },
    });
  });
  it('treats an empty protocol as tcp, as QEMU does', () => {
    expect(parseHostfwd(':127.0.0.1:8080-:80')).toMatchObject({ ok: true, value: { proto: 'tcp' } });
  });
  it.each([
    ['bogus', 'must be [tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport'],
    ['sctp::1-:2', 'must be [tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport'],
    ['tcp:1.2.3:80-:80', 'host address "1.2.3" is not an IPv4 address'],
    ['tcp::0-:80', 'host port "0" is not a port from 1 to 65535'],
    ['tcp::70000-:80', 'host port "70000" is not a port from 1 to 65535'],
    ['tcp::80-:x', 'guest port "x" is not a port from 1 to 65535'],
    ['tcp::80-10.0.2:80', 'guest address "10.0.2" is not an IPv4 address'],
  ])('rejects %j: %s', (rule, reason) => expect(parseHostfwd(rule)).toEqual({ ok: false, reason }));
});

describe('formatting', () => {
  const f = {
    proto: 'tcp' as const,
    hostAddress: '127.0.0.1',
    hostPort: 8080,
    guestAddress: '',
    guestPort: 80,
  };
  it('writes hostfwd_add and hostfwd_remove arguments', () => {
    expect(formatHostfwd(f)).toBe('tcp:127.0.0.1:8080-:80');
    expect(formatHostfwdRemoval(f)).toBe('tcp:127.0.0.1:8080');
    expect(describeForward(f)).toBe('tcp 127.0.0.1:8080 -> :80');
  });
  it('knows 0.0.0.0 covers every address and an empty guest address is 10.0.2.15', () => {
    expect(hostSidesCollide(f, { ...f, hostAddress: '0.0.0.0' })).toBe(true);
    expect(hostSidesCollide(f, { ...f, hostAddress: '127.0.0.2' })).toBe(false);
    expect(hostSidesCollide(f, { ...f, proto: 'udp' })).toBe(false);
    expect(sameForward(f, { ...f, guestAddress: '10.0.2.15' })).toBe(true);
    expect(sameForward(f, { ...f, guestPort: 81 })).toBe(false);
  });
});
