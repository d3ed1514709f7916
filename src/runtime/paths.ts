/**
 * Where qvm keeps what it knows about VMs, named in one place. Two roots, one folder per manifest (its
 * namespace, a hash of the manifest's path, so two manifests can both have a VM named `web` and socket paths
 * stay short) and one subfolder per VM:
 *
 * The runtime root holds what lives as long as the process: sockets, pidfile, logs, the launch record.
 *   <root>/<namespace>/namespace.json     which manifest (or folder of manifests) this namespace belongs to
 *   <root>/<namespace>/lock               the namespace's lock (flock; only the owner can open it)
 *   <root>/<namespace>/<vm>/qmp.sock      QMP, for qvm's own commands
 *   <root>/<namespace>/<vm>/events.sock   QMP, held by `qvm watch` for events, so the first stays free
 *   <root>/<namespace>/<vm>/hmp.sock      HMP, for people (`qvm console`, `qvm monitor VM`), so an open
 *                                         console never blocks qvm's own QMP socket
 *   <root>/<namespace>/<vm>/serial.sock   the serial console (also logged to serial.log, capped)
 *   <root>/<namespace>/<vm>/qemu.pid      QEMU's pidfile (locked by QEMU while it runs)
 *   <root>/<namespace>/<vm>/launch.json   how the running process was started (argv and launch spec)
 *   <root>/<namespace>/<vm>/qemu.log      QEMU's own messages (via -D; the previous run's in qemu.previous.log)
 *   <root>/kvm-probe.json                 whether KVM can run guests here, cached per host boot
 *
 *   <root>/<namespace>/<vm>/cidata-<id>/  the VM's cloud-init seed (one folder per seed: a running VM's
 *                                         stays as it was while a new one is written)
 *
 * The state root holds what must outlive the process and a reboot:
 *   <state>/<namespace>/<vm>/disks.json        the disks qvm created or first opened, with inode and format
 *   <state>/<namespace>/<vm>/saved-state.json  the VM was hibernated by qvm (state: saved), and how it ran
 *   <state>/<namespace>/<vm>/snapshots.json    how the VM ran when qvm saved each of its warm snapshots
 *   <state>/<namespace>/ssh/id_ed25519         the manifest's SSH user key (and .pub)
 *   <state>/<namespace>/<vm>/ssh_host_ed25519_key  the VM's SSH host key (and .pub), known before it boots
 *   <state>/<namespace>/<vm>/known_hosts       that host key, under the VM's alias
 *   <state>/<namespace>/<vm>/ssh-port          the loopback port qvm picked for SSH, kept across restarts
 *
 * The runtime root does not depend on how qvm was started (a login shell, cron, sudo, systemd): it is
 * $QVM_RUNTIME_DIR when that is set (an explicit override), else /run/qvm for root and /tmp/qvm-<uid> for
 * everyone else. The state root is $QVM_STATE_DIR, else $XDG_STATE_HOME/qvm, else ~/.local/state/qvm with ~
 * read from the password database, not $HOME. Every folder must be ours and 0700: qvm checks each one it
 * reads, not only the ones it creates.
 */
import { type Dirent, existsSync, lstatSync, mkdirSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import path from 'node:path';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';
import { RuntimeDirError } from '../errors.js';
import { VM_NAME } from '../model/names.js';

/** Linux's sun_path is 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

export interface VmPaths {
  dir: string;
  qmp: string;
  events: string;
  hmp: string;
  serial: string;
  /** The guest agent's channel (virtio-serial org.qemu.guest_agent.0), with `agent: true`. */
  agent: string;
  /** The VNC server's socket, with `display: vnc`. */
  vnc: string;
  serialLog: string;
  /** The serial log's previous part, once it was rotated (serial.log is capped). */
  serialLogRotated: string;
  pidfile: string;
  launch: string;
  qemuLog: string;
  /** The previous run's qemu.log (QEMU truncates its log when it starts). */
  previousQemuLog: string;
  /** The VM's folder in the state root, and the records kept there. */
  stateDir: string;
  disks: string;
  savedState: string;
  snapshots: string;
  sshHostKey: string;
  knownHosts: string;
  sshPort: string;
}

export interface Namespace {
  /** 16 hex characters identifying the manifest or folder. */
  id: string;
  /** Absolute path of the manifest file or folder the namespace belongs to. */
  source: string;
  /** The namespace's folder in the runtime root. */
  dir: string;
  /** namespace.json: which manifest the namespace belongs to, so a port held by one of its VMs can be named. */
  record: string;
  /** The namespace's lock file. */
  lock: string;
  /** The namespace's folder in the state root. */
  stateDir: string;
  /** The manifest's SSH user key. */
  sshKey: string;
}

/** The KVM probe's cached answer (qemu/accel.ts), shared by every namespace of the root. */
export function kvmProbeCache(root = runtimeRoot()): string {
  return path.join(root, 'kvm-probe.json');
}

function uid(): number {
  return process.getuid?.() ?? 0;
}

/** The folder every namespace's runtime files live in. */
export function runtimeRoot(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env.QVM_RUNTIME_DIR;
  if (explicit !== undefined && explicit !== '') {
    if (!path.isAbsolute(explicit))
      throw new RuntimeDirError(`QVM_RUNTIME_DIR must be an absolute path, got ${JSON.stringify(explicit)}`);
    return path.normalize(explicit);
  }
  if (uid() === 0 && isDirectory('/run')) return '/run/qvm';
  return `/tmp/qvm-${uid()}`;
}

/** Whether the runtime root comes from QVM_RUNTIME_DIR rather than qvm's own default. */
export function runtimeRootOverridden(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.QVM_RUNTIME_DIR !== undefined && env.QVM_RUNTIME_DIR !== '';
}

/** An absolute folder from an environment variable (plus `suffix`); undefined when unset or empty. */
function folderFromEnv(env: NodeJS.ProcessEnv, variable: string, suffix: string): string | undefined {
  const value = env[variable];
  if (value === undefined || value === '') return undefined;
  if (!path.isAbsolute(value))
    throw new RuntimeDirError(`${variable} must be an absolute path, got ${JSON.stringify(value)}`);
  return path.join(path.normalize(value), suffix);
}

/** The folder qvm's durable records live in. */
export function stateRoot(env: NodeJS.ProcessEnv = process.env): string {
  return (
    folderFromEnv(env, 'QVM_STATE_DIR', '') ??
    folderFromEnv(env, 'XDG_STATE_HOME', 'qvm') ??
    path.join(homeOf(), '.local', 'state', 'qvm')
  );
}

/**
 * The folder of what qvm can make again (images, compiled code, parsed manifests): $QVM_CACHE_DIR, else
 * $XDG_CACHE_HOME/qvm, else ~/.cache/qvm.
 */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  return (
    folderFromEnv(env, 'QVM_CACHE_DIR', '') ??
    folderFromEnv(env, 'XDG_CACHE_HOME', 'qvm') ??
    path.join(homeOf(), '.cache', 'qvm')
  );
}

/** The user's home from the password database: sudo, cron and systemd set $HOME differently, the uid is one. */
function homeOf(): string {
  try {
    return userInfo().homedir;
  } catch {
    return process.env.HOME ?? '/';
  }
}

function isDirectory(dir: string): boolean {
  try {
    return statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

/** The namespace of a manifest file or folder; the same path always gives the same namespace. */
export function namespaceFor(source: string, root = runtimeRoot(), state = stateRoot()): Namespace {
  let absolute = path.resolve(source);
  try {
    absolute = realpathSync(absolute);
  } catch {
    // A manifest that does not exist (yet) still has a namespace: its folder's real path plus its name.
    try {
      absolute = path.join(realpathSync(path.dirname(absolute)), path.basename(absolute));
    } catch {
      // keep the resolved path
    }
  }
  // SHA-256 in JavaScript: node:crypto costs every command 1-2 ms to load, for one short digest.
  const id = bytesToHex(sha256(utf8ToBytes(absolute))).slice(0, 16);
  const dir = path.join(root, id);
  return {
    id,
    source: absolute,
    dir,
    record: namespaceRecord(dir),
    lock: path.join(dir, 'lock'),
    stateDir: path.join(state, id),
    sshKey: path.join(state, id, 'ssh', 'id_ed25519'),
  };
}

/** namespace.json in a namespace folder: which manifest the namespace belongs to. */
export function namespaceRecord(namespaceDir: string): string {
  return path.join(namespaceDir, 'namespace.json');
}

/** The folder of a VM's cloud-init seed with this instance-id. */
export function seedDir(paths: VmPaths, instanceId: string): string {
  return path.join(paths.dir, `cidata-${instanceId}`);
}

/** The unix sockets QEMU serves for a VM (monitors, serial console, agent, VNC). */
export function socketFiles(paths: VmPaths): string[] {
  return [paths.qmp, paths.events, paths.hmp, paths.serial, paths.agent, paths.vnc];
}

/** The runtime and state files of one VM of a namespace. */
export function vmPaths(namespace: Namespace, vm: string): VmPaths {
  // Names are validated by the manifest schema; this is the last line against a name escaping the folder.
  if (!VM_NAME.test(vm)) throw new RuntimeDirError(`invalid VM name ${JSON.stringify(vm)}`);
  // Plain concatenation, not path.join: the namespace's folders are normalized and the name has no slash, and
  // observing 100 VMs made 2,000 joins (13 ms).
  const dir = `${namespace.dir}/${vm}`;
  const stateDir = `${namespace.stateDir}/${vm}`;
  const paths: VmPaths = {
    dir,
    qmp: `${dir}/qmp.sock`,
    events: `${dir}/events.sock`,
    hmp: `${dir}/hmp.sock`,
    serial: `${dir}/serial.sock`,
    agent: `${dir}/qga.sock`,
    vnc: `${dir}/vnc.sock`,
    serialLog: `${dir}/serial.log`,
    serialLogRotated: `${dir}/serial.log.1`,
    pidfile: `${dir}/qemu.pid`,
    launch: `${dir}/launch.json`,
    qemuLog: `${dir}/qemu.log`,
    previousQemuLog: `${dir}/qemu.previous.log`,
    stateDir,
    disks: `${stateDir}/disks.json`,
    savedState: `${stateDir}/saved-state.json`,
    snapshots: `${stateDir}/snapshots.json`,
    sshHostKey: `${stateDir}/ssh_host_ed25519_key`,
    knownHosts: `${stateDir}/known_hosts`,
    sshPort: `${stateDir}/ssh-port`,
  };
  for (const socket of socketFiles(paths)) {
    if (Buffer.byteLength(socket) > MAX_SOCKET_PATH_BYTES) {
      throw new RuntimeDirError(
        `the runtime folder path is too long for unix sockets (${Buffer.byteLength(socket)} bytes, the limit is ${MAX_SOCKET_PATH_BYTES}): ${socket}; set QVM_RUNTIME_DIR to a shorter folder`,
      );
    }
  }
  return paths;
}

/**
 * mkdir -p, one level at a time: Node's recursive mkdir reports ENOENT where the real error is EROFS or
 * EACCES, and the user needs the real one.
 */
function mkdirStepwise(dir: string): void {
  const parent = path.dirname(dir);
  if (parent !== dir && !existsSync(parent)) mkdirStepwise(parent);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
}

/**
 * Creates a private folder (0700) or checks an existing one: it must be a real folder (not a symlink), owned
 * by us, and not readable or writable by others, since it holds monitor sockets that control the VMs.
 */
export function ensurePrivateDir(dir: string): void {
  try {
    mkdirStepwise(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new RuntimeDirError(
      `cannot create the runtime folder ${dir}: ${code === 'EROFS' ? 'read-only file system' : code === 'EACCES' ? 'permission denied' : code === 'ENOSPC' ? 'no space left on device' : (error as Error).message}`,
      { cause: error },
    );
  }
  checkPrivateDir(dir);
}

/**
 * Checks a folder qvm reads: when it exists, it must be a real folder, ours and closed to others. A folder
 * that someone else owns or can write could hold planted sockets, pidfiles or records.
 */
export function checkPrivateDir(dir: string): void {
  let stat: ReturnType<typeof lstatSync>;
  try {
    stat = lstatSync(dir);
  } catch {
    return; // not there: nothing to trust or distrust
  }
  if (!stat.isDirectory())
    throw new RuntimeDirError(`${dir} is not a folder (a symlink or a file is in the way)`);
  if (stat.uid !== uid()) {
    throw new RuntimeDirError(
      `${dir} belongs to another user (uid ${stat.uid}); qvm keeps monitor sockets there`,
    );
  }
  if ((stat.mode & 0o077) !== 0) {
    throw new RuntimeDirError(
      `${dir} is open to other users (mode ${(stat.mode & 0o777).toString(8)}); qvm keeps monitor sockets there. Run: chmod 700 ${dir}`,
    );
  }
}

/** Checks every folder of a namespace that qvm may read: both roots, the namespace folders, each VM folder. */
export function checkNamespace(namespace: Namespace): void {
  for (const dir of [
    path.dirname(namespace.dir),
    namespace.dir,
    path.dirname(namespace.stateDir),
    namespace.stateDir,
  ]) {
    checkPrivateDir(dir);
  }
  for (const parent of [namespace.dir, namespace.stateDir]) {
    let entries: Dirent[];
    try {
      entries = readdirSync(parent, { withFileTypes: true });
    } catch {
      continue;
    }
    // VM folders, and anything planted in their place (a symlink named like a VM is refused, not followed).
    for (const entry of entries) {
      if (VM_NAME.test(entry.name) && (entry.isDirectory() || entry.isSymbolicLink()))
        checkPrivateDir(path.join(parent, entry.name));
    }
  }
}
