/**
 * `qvm ssh VM [-- CMD ARGS...]`, `qvm cp [-r] SRC... DST` and `qvm ssh-config [VM...]`: the system's OpenSSH
 * client with the access qvm prepared (its key, the VM's host key checked strictly, the loopback port).
 */
import { spawn } from 'node:child_process';
import { UsageError, VmStateError } from '../errors.js';
import { shellQuote, sshArgs, sshConfig, sshOptions } from '../guest/ssh.js';
import type { SshAccess } from '../model/access.js';
import { observeVm } from '../observe/observe.js';
import { type Context, findVm, loadContext } from './context.js';
import type { Output } from './output.js';

/** The VM's SSH access; a clear error when it has no `ssh:` or is not running. */
async function accessTo(context: Context, name: string, timeoutMs: number): Promise<SshAccess> {
  const spec = findVm(context, name);
  if (!spec.ssh?.access) {
    throw new VmStateError(
      `${name} has no \`ssh:\` in ${spec.source}: add ssh: { user: NAME } to log in with qvm`,
    );
  }
  const observed = await observeVm(name, context.namespace, spec, { timeoutMs });
  if (observed.state !== 'running' || observed.runstate === 'shutdown') {
    throw new VmStateError(`${name} is not running (\`qvm apply\` starts it)`);
  }
  return spec.ssh.access;
}

/** Runs a program with the terminal passed through; resolves with its exit status (128+n for a signal). */
function run(program: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: 'inherit' });
    child.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'ENOENT'
          ? new VmStateError(
              `${program} is not installed (the OpenSSH client); install it with: sudo apt-get install -y openssh-client`,
            )
          : error,
      ),
    );
    child.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? osSignal(signal) : 1)));
  });
}

function osSignal(signal: NodeJS.Signals): number {
  return { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 }[signal as string] ?? 1;
}

/** `qvm ssh VM [-- CMD ARGS...]`: a shell, or one command whose exit status is qvm's own. */
export async function sshCommand(
  vm: string,
  command: string[],
  flags: { file: string; timeout: number },
  _output: Output,
): Promise<number> {
  const context = await loadContext(flags.file);
  const access = await accessTo(context, vm, flags.timeout);
  const interactive = command.length === 0 && Boolean(process.stdin.isTTY);
  return run('ssh', sshArgs(access, command, { tty: interactive }));
}

/** A `VM:PATH` operand of `qvm cp`, or a local path. */
function parseOperand(operand: string): { vm?: string; path: string } {
  const m = /^([a-z][a-z0-9-]{0,39}):(.*)$/.exec(operand);
  return m ? { vm: m[1]!, path: m[2]! || '.' } : { path: operand };
}

/** `qvm cp [-r] SRC... DST`, with `VM:PATH` on either side (scp underneath). */
export async function cpCommand(
  operands: string[],
  flags: { file: string; timeout: number; recursive: boolean },
  _output: Output,
): Promise<number> {
  if (operands.length < 2)
    throw new UsageError('qvm cp needs a source and a destination: qvm cp [-r] SRC... DST');
  const parsed = operands.map(parseOperand);
  const vms = [...new Set(parsed.flatMap((p) => (p.vm ? [p.vm] : [])))];
  if (vms.length === 0) throw new UsageError('qvm cp: name a VM on one side, as VM:PATH');
  if (vms.length > 1)
    throw new UsageError(`qvm cp copies between this machine and one VM, got ${vms.join(' and ')}`);
  const context = await loadContext(flags.file);
  const access = await accessTo(context, vms[0]!, flags.timeout);
  // scp takes -P for the port and the same -o options as ssh; paths on the VM are quoted for its shell.
  const options = sshOptions(access).map((o, i, all) => (o === '-p' && all[i - 1] !== '-o' ? '-P' : o));
  const args = parsed.map((p) => (p.vm ? `${access.user}@${access.host}:${shellQuote(p.path)}` : p.path));
  return run('scp', ['-q', ...(flags.recursive ? ['-r'] : []), ...options, ...args]);
}

/** `qvm ssh-config [VM...]`: OpenSSH Host blocks for the VMs with `ssh:`. */
export async function sshConfigCommand(
  vms: string[],
  flags: { file: string },
  output: Output,
): Promise<number> {
  const context = await loadContext(flags.file);
  for (const name of vms) findVm(context, name);
  const chosen = context.manifest.vms.filter(
    (v) => (vms.length === 0 || vms.includes(v.name)) && v.ssh?.access,
  );
  if (chosen.length === 0)
    throw new VmStateError(
      `no VM of ${context.manifest.file}${vms.length ? ` named ${vms.join(', ')}` : ''} has \`ssh:\``,
    );
  for (const name of vms) {
    if (!chosen.some((v) => v.name === name))
      throw new VmStateError(`${name} has no \`ssh:\` in the manifest`);
  }
  output.out.write(sshConfig(chosen.map((v) => v.ssh!.access!)));
  return 0;
}
