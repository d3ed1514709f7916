/**
 * Where qvm keeps a VM's runtime files: sockets, pidfile, logs and the launch record. One private folder
 * per manifest (its namespace), one subfolder per VM, so two manifests in different folders can both have a
 * VM named `web`. Unix socket paths are limited to about 108 bytes, so the folder is short and does not
 * contain the manifest's path: the namespace is a hash of it.
 *
 *   <root>/<namespace>/namespace.json     which manifest (or folder of manifests) this namespace belongs to
 *   <root>/<namespace>/<vm>/qmp.sock      QMP, for qvm's own commands
 *   <root>/<namespace>/<vm>/events.sock   QMP, held by `qvm watch` for events, so the first stays free
 *   <root>/<namespace>/<vm>/hmp.sock      HMP, for people (`qvm console`, `qvm monitor VM`), so an open
 *                                         console never blocks qvm's own QMP socket
 *   <root>/<namespace>/<vm>/serial.sock   the serial console (also logged to serial.log)
 *   <root>/<namespace>/<vm>/qemu.pid      QEMU's pidfile (locked by QEMU while it runs)
 *   <root>/<namespace>/<vm>/launch.json   how the running process was started (argv and launch spec)
 *   <root>/<namespace>/<vm>/disks.json    the disks qvm created for this VM (for destroy --delete-disks)
 *   <root>/<namespace>/<vm>/qemu.log      QEMU's own messages (via -D; the previous run's in qemu.previous.log)
 *   <root>/kvm-probe.json                 whether KVM can run guests here, cached per host boot
 *
 * root is $QVM_RUNTIME_DIR, else $XDG_RUNTIME_DIR/qvm, else /tmp/qvm-<uid>; it must be ours and 0700.
 */
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, realpathSync } from 'node:fs';
import path from 'node:path';
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
  serialLog: string;
  pidfile: string;
  launch: string;
  createdDisks: string;
  qemuLog: string;
  /** The previous run's qemu.log (QEMU truncates its log when it starts). */
  previousQemuLog: string;
}

export interface Namespace {
  /** 16 hex characters identifying the manifest or folder. */
  id: string;
  /** Absolute path of the manifest file or folder the namespace belongs to. */
  source: string;
  dir: string;
  /** namespace.json: which manifest the namespace belongs to, so a port held by one of its VMs can be named. */
  record: string;
}

/** The KVM probe's cached answer (qemu/accel.ts), shared by every namespace of the root. */
export function kvmProbeCache(root = runtimeRoot()): string {
  return path.join(root, 'kvm-probe.json');
}

/** The folder every namespace lives in. */
export function runtimeRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.QVM_RUNTIME_DIR) return path.resolve(env.QVM_RUNTIME_DIR);
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'qvm');
  return `/tmp/qvm-${process.getuid?.() ?? 0}`;
}

/** The namespace of a manifest file or folder; the same path always gives the same namespace. */
export function namespaceFor(source: string, root = runtimeRoot()): Namespace {
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
  const id = createHash('sha256').update(absolute).digest('hex').slice(0, 16);
  const dir = path.join(root, id);
  return { id, source: absolute, dir, record: namespaceRecord(dir) };
}

/** namespace.json in a namespace folder: which manifest the namespace belongs to. */
export function namespaceRecord(namespaceDir: string): string {
  return path.join(namespaceDir, 'namespace.json');
}

/** The runtime files of one VM of a namespace. */
export function vmPaths(namespace: Namespace, vm: string): VmPaths {
  // Names are validated by the manifest schema; this is the last line against a name escaping the folder.
  if (!VM_NAME.test(vm)) throw new RuntimeDirError(`invalid VM name ${JSON.stringify(vm)}`);
  const dir = path.join(namespace.dir, vm);
  const paths: VmPaths = {
    dir,
    qmp: path.join(dir, 'qmp.sock'),
    events: path.join(dir, 'events.sock'),
    hmp: path.join(dir, 'hmp.sock'),
    serial: path.join(dir, 'serial.sock'),
    serialLog: path.join(dir, 'serial.log'),
    pidfile: path.join(dir, 'qemu.pid'),
    launch: path.join(dir, 'launch.json'),
    createdDisks: path.join(dir, 'disks.json'),
    qemuLog: path.join(dir, 'qemu.log'),
    previousQemuLog: path.join(dir, 'qemu.previous.log'),
  };
  for (const socket of [paths.qmp, paths.events, paths.hmp, paths.serial]) {
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
      `cannot create the runtime folder ${dir}: ${code === 'EROFS' ? 'read-only file system' : code === 'EACCES' ? 'permission denied' : (error as Error).message}`,
      { cause: error },
    );
  }
  const stat = lstatSync(dir);
  if (!stat.isDirectory())
    throw new RuntimeDirError(`${dir} is not a folder (a symlink or a file is in the way)`);
  const uid = process.getuid?.();
  if (uid !== undefined && stat.uid !== uid) {
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
