/**
 * Preparing the guest side of the manifest's VMs before they are planned: for `ssh:`, the keys, the known
 * host key and the loopback port; for `cloudInit:` or `ssh:`, the seed's files. The result is the manifest
 * with what qvm made filled in (the VM's SSH access and its forward to port 22, the seed's folder and
 * instance-id), so the planner stays a pure function of it.
 *
 * Everything here is idempotent and written atomically into qvm's private folders, so `plan` may run it as
 * well as `apply`: keys and ports are made once and kept, and a seed folder, named by its content's hash, is
 * written once and never changed (a running VM's vvfat drive reads its files).
 */
import { existsSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { type Manifest, SSH_FORWARD_ADDRESS, SSH_FORWARD_INDEX, type VmSpec } from '../manifest/types.js';
import type { SshAccess } from '../model/access.js';
import { ensurePrivateDir, type Namespace, seedDir, type VmPaths, vmPaths } from '../runtime/paths.js';
import { buildSeed, type SeedFiles, type SshProvision } from './cloud-init.js';
import { ensureKeyPair, type KeyPair, sshPort, writeKnownHosts } from './ssh.js';

/** The manifest with each VM's SSH access and cloud-init seed prepared. */
export async function prepareGuests(manifest: Manifest, namespace: Namespace): Promise<Manifest> {
  if (!manifest.vms.some((v) => v.ssh || v.cloudInit)) return manifest;
  const vms = await Promise.all(manifest.vms.map((spec) => prepareVm(spec, namespace)));
  return { ...manifest, vms };
}

async function prepareVm(spec: VmSpec, namespace: Namespace): Promise<VmSpec> {
  if (!spec.ssh && !spec.cloudInit) return spec;
  const paths = vmPaths(namespace, spec.name);
  let keys: GuestKeys | undefined;
  if (spec.ssh) {
    const userKey = ensureKeyPair(namespace.sshKey, `qvm@${namespace.id}`);
    const hostKey = ensureKeyPair(paths.sshHostKey, `qvm-${spec.name}`);
    writeKnownHosts(paths.knownHosts, sshAlias(spec.name), hostKey.publicKey);
    keys = { port: await sshPort(paths.sshPort, spec.ssh.port), userPublicKey: userKey.publicKey, hostKey };
  }
  const { prepared, seed } = preparedGuest(spec, namespace, keys);
  writeSeed(paths, seed);
  return prepared;
}

/** What qvm made for a VM's SSH access: its loopback port, the user's public key and the VM's host key. */
export interface GuestKeys {
  port: number;
  userPublicKey: string;
  hostKey: KeyPair;
}

const sshAlias = (vm: string) => `qvm-${vm}`;

/**
 * The VM as it is planned once its keys and port are made (`keys`, for `ssh:`), and the seed it boots with.
 * Pure: the property tests plan the very shape `apply` plans.
 */
export function preparedGuest(
  spec: VmSpec,
  namespace: Namespace,
  keys: GuestKeys | undefined,
): { prepared: VmSpec; seed: SeedFiles } {
  const paths = vmPaths(namespace, spec.name);
  let prepared = spec;
  let provision: SshProvision | undefined;
  if (spec.ssh && keys) {
    const access: SshAccess = {
      vm: spec.name,
      host: SSH_FORWARD_ADDRESS,
      port: keys.port,
      user: spec.ssh.user,
      identity: namespace.sshKey,
      knownHosts: paths.knownHosts,
      hostKeyAlias: sshAlias(spec.name),
    };
    provision = { user: spec.ssh.user, authorizedKey: keys.userPublicKey, hostKey: keys.hostKey };
    const sshForward = {
      proto: 'tcp' as const,
      hostAddress: SSH_FORWARD_ADDRESS,
      hostPort: keys.port,
      guestAddress: '',
      guestPort: 22,
      index: SSH_FORWARD_INDEX,
    };
    prepared = {
      ...prepared,
      ssh: { ...spec.ssh, port: keys.port, access },
      forwards: [...spec.forwards, sshForward],
      ...(spec.ready?.kind === 'ssh' ? { ready: { ...spec.ready, access } } : {}),
    };
  }
  const seed = buildSeed(spec.name, spec.cloudInit, provision, spec.mounts);
  return {
    prepared: { ...prepared, seed: { dir: seedDir(paths, seed.instanceId), instanceId: seed.instanceId } },
    seed,
  };
}

/** Writes a seed's folder once: built under a temporary name and renamed, so it is whole or absent. */
function writeSeed(paths: VmPaths, seed: SeedFiles): void {
  const dir = seedDir(paths, seed.instanceId);
  if (existsSync(dir)) return;
  ensurePrivateDir(paths.dir);
  const temporary = `${dir}.tmp-${process.pid}`;
  rmSync(temporary, { recursive: true, force: true });
  ensurePrivateDir(temporary);
  for (const name of ['meta-data', 'user-data', 'network-config'] as const) {
    const text = seed[name];
    if (text !== undefined) writeFileSync(path.join(temporary, name), text, { mode: 0o600 });
  }
  try {
    renameSync(temporary, dir);
  } catch (error) {
    rmSync(temporary, { recursive: true, force: true });
    if (!existsSync(dir)) throw error;
  }
}
