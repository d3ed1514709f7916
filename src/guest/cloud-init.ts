/**
 * The cloud-init NoCloud seed of a VM: meta-data (instance-id, hostname), user-data and network-config, as
 * files a read-only drive labelled `cidata` serves to the guest. Pure: the same inputs give the same files.
 *
 * qvm adds its own part to the user's #cloud-config without dropping anything the user wrote (comments
 * included): the `ssh:` user with qvm's key, and the host key qvm generated. The instance-id is a hash of the
 * seed's content, so a changed seed is a new instance to cloud-init (it runs again) and to qvm (a restart,
 * shown in the plan, and a warm snapshot taken under the old seed is not resumed).
 */
import { isMap, isSeq, parseDocument, type YAMLMap, YAMLSeq } from 'yaml';
import type { CloudInitSpec } from '../manifest/types.js';
import { crypto } from '../runtime/builtins.js';
import type { KeyPair } from './ssh.js';

export interface SeedFiles {
  instanceId: string;
  'meta-data': string;
  'user-data': string;
  'network-config'?: string;
}

/**
 * What qvm adds for `ssh:`: the user, their authorized key, and the VM's host key pair. Without a host key
 * (`qvm export`: qvm's private host key never leaves this machine) the guest makes its own.
 */
export interface SshProvision {
  user: string;
  authorizedKey: string;
  hostKey?: KeyPair;
}

/** A share the guest mounts at boot, by its tag. */
export interface GuestMount {
  tag: string;
  guest: string;
  writable: boolean;
}

/**
 * How the shares reach the guest: virtio-9p as qvm attaches them, or virtiofs (KubeVirt's filesystems, for
 * `qvm export`), whose tag is the filesystem's name.
 */
export type ShareType = '9p' | 'virtiofs';

/** The seed of a VM named `hostname`, from its manifest data and what qvm adds. */
export function buildSeed(
  hostname: string,
  cloudInit: CloudInitSpec | undefined,
  ssh: SshProvision | undefined,
  mounts: GuestMount[] = [],
  shareType: ShareType = '9p',
): SeedFiles {
  const userData = mergeUserData(cloudInit?.userData, ssh, mounts, shareType);
  const networkConfig = cloudInit?.networkConfig;
  const hash = crypto()
    .createHash('sha256')
    .update(JSON.stringify([hostname, userData, networkConfig ?? null]))
    .digest('hex');
  const instanceId = `qvm-${hash.slice(0, 16)}`;
  return {
    instanceId,
    'meta-data': `instance-id: ${instanceId}\nlocal-hostname: ${hostname}\n`,
    'user-data': userData,
    ...(networkConfig !== undefined ? { 'network-config': networkConfig } : {}),
  };
}

/**
 * A shell line that mounts the shares now and at every later boot: fstab lines (`nofail`, so a boot never
 * waits for a share), replacing the ones an earlier seed wrote (tags follow the list's order). cloud-init's own
 * `mounts:` module is not used: it runs before the users are created, and a mount point it made under
 * /home/USER would leave that home owned by root. Folders made on the way into the ssh user's home are given
 * to that user. Guest paths are checked by the schema: no spaces or quotes.
 */
function mountScript(mounts: GuestMount[], user: string | undefined, type: ShareType): string {
  const home = user ? `/home/${user}` : undefined;
  const lines = [`sed -i '/^qvm[0-9]* .* ${type} /d' /etc/fstab`];
  for (const m of mounts) {
    const options = `${type === '9p' ? 'trans=virtio,version=9p2000.L,' : ''}nofail,${m.writable ? 'rw' : 'ro'}`;
    lines.push(`echo '${m.tag} ${m.guest} ${type} ${options} 0 0' >> /etc/fstab`, `mkdir -p ${m.guest}`);
    if (home && m.guest.startsWith(`${home}/`)) {
      const parts = m.guest.slice(home.length + 1).split('/');
      const made = parts.map((_, i) => `${home}/${parts.slice(0, i + 1).join('/')}`);
      lines.push(`chown ${user}: ${made.join(' ')}`);
    }
  }
  lines.push(`mount -a -t ${type}`);
  return lines.join('; ');
}

/**
 * The user's user data with qvm's additions. A script (`#!...`) is passed as it is (the checker allows one only
 * without `ssh:`); #cloud-config is edited as a YAML document, so the user's keys, order and comments stay.
 */
export function mergeUserData(
  userData: string | undefined,
  ssh: SshProvision | undefined,
  mounts: GuestMount[] = [],
  shareType: ShareType = '9p',
): string {
  if (userData?.startsWith('#!')) return userData;
  const doc = parseDocument(userData ?? '#cloud-config\n');
  if (!isMap(doc.contents)) doc.contents = doc.createNode({}) as unknown as typeof doc.contents;
  if (ssh) {
    const users = doc.get('users');
    const list = isSeq(users) ? users : new YAMLSeq();
    // Listing users replaces the distro's default user unless `default` is listed: keep it, as cloud-init does.
    if (!isSeq(users)) list.add('default');
    const existing = list.items.find((u) => isMap(u) && u.get('name') === ssh.user) as YAMLMap | undefined;
    if (existing) {
      const keys = existing.get('ssh_authorized_keys');
      const seq = isSeq(keys) ? keys : new YAMLSeq();
      if (!seq.items.some((k) => String((k as { value?: unknown }).value ?? k) === ssh.authorizedKey))
        seq.add(ssh.authorizedKey);
      existing.set('ssh_authorized_keys', seq);
    } else {
      list.add(
        doc.createNode({
          name: ssh.user,
          shell: '/bin/bash',
          sudo: 'ALL=(ALL) NOPASSWD:ALL',
          lock_passwd: true,
          ssh_authorized_keys: [ssh.authorizedKey],
        }),
      );
    }
    doc.set('users', list);
    if (ssh.hostKey) {
      // The host key qvm knows in advance; cloud-init writes it before sshd starts and generates no other.
      doc.set(
        'ssh_keys',
        doc.createNode({ ed25519_private: ssh.hostKey.privateKey, ed25519_public: ssh.hostKey.publicKey }),
      );
      doc.set('ssh_genkeytypes', doc.createNode([]));
    }
  }
  if (mounts.length) {
    // First in runcmd (it runs after the users exist), so the user's own commands find the shares mounted.
    const runcmd = doc.get('runcmd');
    const list = isSeq(runcmd) ? runcmd : new YAMLSeq();
    list.items.unshift(doc.createNode(['sh', '-c', mountScript(mounts, ssh?.user, shareType)]));
    doc.set('runcmd', list);
  }
  // The yaml library separates a document's leading comment from its content by a blank line.
  const text = doc.toString({ lineWidth: 0 }).replace(/^#cloud-config\n\n/, '#cloud-config\n');
  return text.startsWith('#cloud-config') ? text : `#cloud-config\n${text}`;
}
