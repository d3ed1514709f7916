/**
 * The one error tree. Everything qvm throws on purpose extends QvmError; the CLI entry point is the only
 * place that prints errors and picks exit codes. Anything else that reaches it is a bug and is reported as one.
 */

/** A located problem in a manifest: the unit of `qvm validate` output and of plan errors. */
export interface Diagnostic {
  file: string;
  line?: number;
  column?: number;
  /** Field path in the manifest, e.g. `vms.web.forwards[1].host`. */
  path?: string;
  message: string;
}

export function formatDiagnostic(d: Diagnostic): string {
  let where = d.file;
  if (d.line !== undefined) where += `:${d.line}`;
  if (d.line !== undefined && d.column !== undefined) where += `:${d.column}`;
  return d.path ? `${where}: ${d.path}: ${d.message}` : `${where}: ${d.message}`;
}

export class QvmError extends Error {
  /** Exit code the CLI uses when this error ends a command. */
  readonly exitCode: number = 1;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The command line itself is wrong (unknown VM, missing argument). */
export class UsageError extends QvmError {}

/** A manifest that cannot be loaded or does not validate: every problem at once, each located. */
export class ManifestError extends QvmError {
  constructor(
    readonly file: string,
    readonly diagnostics: Diagnostic[],
  ) {
    super(diagnostics.map(formatDiagnostic).join('\n'));
  }
}

/** Anything that went wrong talking to a QEMU monitor. `socket` is the path that was used. */
export class MonitorError extends QvmError {
  constructor(
    message: string,
    readonly socket: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Nobody answered at the socket: missing, refused, permission denied. Exit code 2 for `qvm monitor`. */
export class MonitorConnectError extends MonitorError {
  override readonly exitCode = 2;
}

/** QEMU did not answer within the timeout: frozen (SIGSTOP), overloaded, or another client holds the socket. */
export class MonitorTimeoutError extends MonitorError {
  override readonly exitCode = 2;
  constructor(
    message: string,
    socket: string,
    readonly command: string | undefined,
    readonly timeoutMs: number,
  ) {
    super(message, socket);
  }
}

/** The connection ended before the reply came: QEMU died or quit mid-command. */
export class MonitorClosedError extends MonitorError {
  override readonly exitCode = 2;
  constructor(
    message: string,
    socket: string,
    readonly command: string | undefined,
  ) {
    super(message, socket);
  }
}

/** The socket spoke something that is neither QMP nor HMP as we know them. */
export class MonitorProtocolError extends MonitorError {
  override readonly exitCode = 2;
}

/** QEMU ran the command and reported a failure. Keeps the command sent and QEMU's own words. */
export class MonitorCommandError extends MonitorError {
  constructor(
    readonly command: string,
    /** QEMU's message, exactly as QEMU wrote it (trimmed). */
    readonly qemuMessage: string,
    socket: string,
    /** The QMP error class (GenericError, CommandNotFound, ...) when the reply came over QMP. */
    readonly errorClass?: string,
  ) {
    super(qemuMessage, socket);
  }
}

/** A qemu-system or qemu-img process failed; `stderr` holds what QEMU said. */
export class QemuProcessError extends QvmError {
  constructor(
    message: string,
    readonly command: string[],
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** qvm would not create a disk because a file appeared at its path meanwhile; that file was left untouched. */
export class DiskExistsError extends QemuProcessError {}

/** A program qvm runs (qemu-system-x86_64, qemu-img) is not installed. The message carries the install command. */
export class MissingToolError extends QvmError {}

/** The runtime directory or a file in it is unsafe or unusable (wrong owner, wrong mode, read-only). */
export class RuntimeDirError extends QvmError {}

/** A VM-scoped failure during apply: which VM, what was being done, and the underlying error. */
export class VmActionError extends QvmError {
  constructor(
    readonly vm: string,
    readonly action: string,
    cause: unknown,
  ) {
    super(`${vm}: ${action}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/** A lock held by another qvm, when --no-wait was given or the wait timed out. */
export class LockBusyError extends QvmError {}

/** An image could not be fetched, did not have its pinned digest, or is not one qvm can use safely. */
export class ImageError extends QvmError {}

/** A readiness probe did not succeed within its timeout, or the VM's QEMU exited while waiting for it. */
export class NotReadyError extends QvmError {}

/**
 * A command that needs the VM in another state, or with something the manifest does not give it: a snapshot of
 * a stopped VM, a tag the disk does not have.
 */
export class VmStateError extends QvmError {}

export function isQvmError(e: unknown): e is QvmError {
  return e instanceof QvmError;
}
