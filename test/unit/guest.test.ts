/** The pure parts of guest provisioning: the cloud-init seed, the user-data merge, ssh arguments and config. */
import { describe, expect, it } from 'vitest';
import { buildSeed, mergeUserData, type SshProvision } from '../../src/guest/cloud-init.js';
import { shellQuote, sshArgs, sshConfig } from '../../src/guest/ssh.js';
import { imagePath, partialPath } from '../../src/images/cache.js';
import type { SshAccess } from '../../src/model/access.js';
import { cacheRoot } from '../../src/runtime/paths.js';

const ssh: SshProvision = {
  user: 'dev',
  authorizedKey: 'ssh-ed25519 AAAAuser qvm',
  hostKey: {
    privateKey: '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n',
    publicKey: 'ssh-ed25519 AAAAhost qvm-host',
  },
};

describe('mergeUserData', () => {
  it("adds the ssh user, the host key and no generated keys, keeping the user's keys, order and comments", () => {
    const merged = mergeUserData(
      '#cloud-config\n# keep me\npackages: [git, make] # inline too\nruncmd:\n  - [sh, -c, "echo hi"]\n',
      ssh,
    );
    expect(merged).toBe(
      [
        '#cloud-config',
        '# keep me',
        'packages: [ git, make ] # inline too',
        'runcmd:',
        '  - [ sh, -c, "echo hi" ]',
        'users:',
        '  - default',
        '  - name: dev',
        '    shell: /bin/bash',
        '    sudo: ALL=(ALL) NOPASSWD:ALL',
        '    lock_passwd: true',
        '    ssh_authorized_keys:',
        '      - ssh-ed25519 AAAAuser qvm',
        'ssh_keys:',
        '  ed25519_private: |',
        '    -----BEGIN OPENSSH PRIVATE KEY-----',
        '    AAAA',
        '    -----END OPENSSH PRIVATE KEY-----',
        '  ed25519_public: ssh-ed25519 AAAAhost qvm-host',
        'ssh_genkeytypes: []',
        '',
      ].join('\n'),
    );
  });

  it("adds qvm's key to a user the user data already declares, once, and keeps their users list as written", () => {
    const userData =
      '#cloud-config\nusers:\n  - name: dev\n    groups: [docker]\n    ssh_authorized_keys: [ssh-rsa AAAAmine]\n';
    const merged = mergeUserData(userData, ssh);
    expect(merged).toContain(
      'users:\n  - name: dev\n    groups: [ docker ]\n    ssh_authorized_keys: [ ssh-rsa AAAAmine, ssh-ed25519 AAAAuser qvm ]\n',
    );
    expect(merged).not.toContain('- default');
    // Merging the result again changes nothing: the key is not added twice.
    expect(mergeUserData(merged, ssh)).toBe(merged);
  });

  it('passes a script through untouched and makes an empty #cloud-config without ssh', () => {
    expect(mergeUserData('#!/bin/sh\necho hi\n', undefined)).toBe('#!/bin/sh\necho hi\n');
    expect(mergeUserData(undefined, undefined)).toBe('#cloud-config\n{}\n');
  });
});

describe('buildSeed', () => {
  it('names the instance by a hash of the content, with the VM name as hostname', () => {
    const seed = buildSeed('dev', { userData: '#cloud-config\nlocale: C.UTF-8\n' }, undefined);
    expect(seed.instanceId).toMatch(/^qvm-[0-9a-f]{16}$/);
    expect(seed['meta-data']).toBe(`instance-id: ${seed.instanceId}\nlocal-hostname: dev\n`);
    expect(seed['user-data']).toBe('#cloud-config\nlocale: C.UTF-8\n');
    expect(seed['network-config']).toBeUndefined();
  });

  it('gives the same id for the same inputs, and a new one when user data, network config or name change', () => {
    const base = buildSeed('dev', { userData: '#cloud-config\nlocale: C.UTF-8\n' }, ssh).instanceId;
    expect(buildSeed('dev', { userData: '#cloud-config\nlocale: C.UTF-8\n' }, ssh).instanceId).toBe(base);
    const others = [
      buildSeed('dev', { userData: '#cloud-config\nlocale: C\n' }, ssh),
      buildSeed('dev', { userData: '#cloud-config\nlocale: C.UTF-8\n', networkConfig: 'version: 2\n' }, ssh),
      buildSeed('web', { userData: '#cloud-config\nlocale: C.UTF-8\n' }, ssh),
      buildSeed('dev', { userData: '#cloud-config\nlocale: C.UTF-8\n' }, { ...ssh, user: 'ops' }),
    ].map((s) => s.instanceId);
    expect(new Set([base, ...others]).size).toBe(5);
  });
});

const access: SshAccess = {
  vm: 'dev',
  host: '127.0.0.1',
  port: 40022,
  user: 'dev',
  identity: '/home/u/.local/state/qvm/ns/ssh/id_ed25519',
  knownHosts: '/home/u/.local/state/qvm/ns/ssh/known_hosts-dev',
  hostKeyAlias: 'qvm-ns-dev',
};

describe('ssh', () => {
  it('prints Host blocks plain ssh and VS Code accept', () => {
    expect(sshConfig([access, { ...access, vm: 'db', port: 40023, hostKeyAlias: 'qvm-ns-db' }])).toBe(
      [
        'Host qvm-dev',
        '  HostName 127.0.0.1',
        '  Port 40022',
        '  User dev',
        '  IdentityFile /home/u/.local/state/qvm/ns/ssh/id_ed25519',
        '  IdentitiesOnly yes',
        '  UserKnownHostsFile /home/u/.local/state/qvm/ns/ssh/known_hosts-dev',
        '  StrictHostKeyChecking yes',
        '  HostKeyAlias qvm-ns-dev',
        '',
        'Host qvm-db',
        '  HostName 127.0.0.1',
        '  Port 40023',
        '  User dev',
        '  IdentityFile /home/u/.local/state/qvm/ns/ssh/id_ed25519',
        '  IdentitiesOnly yes',
        '  UserKnownHostsFile /home/u/.local/state/qvm/ns/ssh/known_hosts-dev',
        '  StrictHostKeyChecking yes',
        '  HostKeyAlias qvm-ns-db',
        '',
      ].join('\n'),
    );
  });

  it('checks the host key strictly and quotes each word of the command for the remote shell', () => {
    expect(sshArgs(access, ['printf', '%s|', 'two words', "it's"], { batch: true })).toEqual([
      '-F',
      '/dev/null',
      '-i',
      '/home/u/.local/state/qvm/ns/ssh/id_ed25519',
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'UserKnownHostsFile=/home/u/.local/state/qvm/ns/ssh/known_hosts-dev',
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'HostKeyAlias=qvm-ns-dev',
      '-o',
      'HostKeyAlgorithms=ssh-ed25519',
      '-o',
      'LogLevel=ERROR',
      '-o',
      'BatchMode=yes',
      '-p',
      '40022',
      'dev@127.0.0.1',
      'printf',
      "'%s|'",
      "'two words'",
      "'it'\\''s'",
    ]);
    expect(shellQuote('')).toBe("''");
    expect(shellQuote('/var/tmp/a-b_c.txt')).toBe('/var/tmp/a-b_c.txt');
  });
});

describe('image cache paths', () => {
  it('follows QVM_CACHE_DIR, then XDG_CACHE_HOME, and refuses relative folders', () => {
    expect(cacheRoot({ QVM_CACHE_DIR: '/srv/cache/' })).toBe('/srv/cache/');
    expect(cacheRoot({ XDG_CACHE_HOME: '/home/u/.cache' })).toBe('/home/u/.cache/qvm');
    expect(cacheRoot({ QVM_CACHE_DIR: '', XDG_CACHE_HOME: '/x' })).toBe('/x/qvm');
    expect(() => cacheRoot({ QVM_CACHE_DIR: 'cache' })).toThrow(
      'QVM_CACHE_DIR must be an absolute path, got "cache"',
    );
    const digest = { algorithm: 'sha512' as const, hex: 'ab'.repeat(64) };
    expect(imagePath(digest, '/c')).toBe(`/c/images/sha512/${'ab'.repeat(64)}`);
    expect(partialPath(digest, '/c')).toBe(`/c/images/partial/sha512-${'ab'.repeat(64)}`);
  });
});
