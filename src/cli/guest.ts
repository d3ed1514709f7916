/**
 * The guest commands that need no network: `qvm exec` (through the guest agent), `qvm screenshot` (QMP
 * screendump) and `qvm vnc` (where the VM's screen is served, and a loopback tunnel to its unix socket).
 */
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { UsageError, VmStateError } from '../errors.js';
import { AgentUnavailableError, withAgent } from '../guest/agent.js';
import { agentExec } from '../guest/exec.js';
import type { VmSpec } from '../manifest/types.js';
import { observeVm } from '../observe/observe.js';
import { QmpClient } from '../qemu/qmp.js';
import { screendumpPng } from '../qemu/screendump.js';
import { vmPaths } from '../runtime/paths.js';
import { type Context, findVm, loadContext } from './context.js';
import { type Output, writeLine } from './output.js';

/** The VM, which must be running (and not powered off by its guest). */
async function runningVm(context: Context, name: string, timeoutMs: number): Promise<VmSpec> {
  const spec = findVm(context, name);
  const observed = await observeVm(name, context.namespace, spec, { timeoutMs });
  if (observed.state === 'unknown') throw new VmStateError(`${name}: ${observed.error}`);
  if (observed.state !== 'running' || observed.runstate === 'shutdown')
    throw new VmStateError(`${name} is not running (\`qvm apply\` starts it)`);
  return spec;
}

/** `qvm exec VM -- CMD ARGS...`: the command's output as it comes, and its exit status as qvm's. */
export async function execCommand(
  vm: string,
  command: string[],
  flags: { file: string; timeout: number },
  output: Output,
): Promise<number> {
  if (command.length === 0)
    throw new UsageError('qvm exec needs a command: qvm exec VM -- COMMAND [ARGS...]');
  const context = await loadContext(flags.file);
  const spec = await runningVm(context, vm, flags.timeout);
  if (!spec.agent)
    throw new VmStateError(
      `${vm} has no guest agent: add \`agent: true\` to it in ${spec.source} (and apply)`,
    );
  // Piped input is handed over whole; a terminal is not read (the agent takes no interactive input).
  const stdin = process.stdin.isTTY ? undefined : await readAll(process.stdin);
  try {
    return await withAgent(
      vmPaths(context.namespace, vm).agent,
      (agent) =>
        agentExec(agent, command, {
          ...(stdin?.length ? { stdin } : {}),
          onStdout: (chunk) => output.out.write(chunk),
          onStderr: (chunk) => output.err.write(chunk),
        }),
      { syncTimeoutMs: flags.timeout },
    );
  } catch (error) {
    if (error instanceof AgentUnavailableError) throw new VmStateError(`${vm}: ${error.message}`);
    throw error;
  }
}

function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

/** `qvm screenshot VM [-o FILE.png]`: the screen as PNG; `-o -` writes it to stdout. */
export async function screenshotCommand(
  vm: string,
  flags: { file: string; timeout: number; output?: string },
  output: Output,
): Promise<number> {
  const context = await loadContext(flags.file);
  await runningVm(context, vm, flags.timeout);
  const paths = vmPaths(context.namespace, vm);
  const qmp = await QmpClient.connect(paths.qmp, { timeoutMs: flags.timeout });
  let png: Buffer;
  try {
    png = await screendumpPng(qmp, paths.dir);
  } finally {
    await qmp.close();
  }
  if (flags.output === '-') {
    output.out.write(png);
    return 0;
  }
  const file =
    flags.output ?? `${vm}-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '')}.png`;
  writeFileSync(file, png);
  writeLine(output.out, file);
  return 0;
}

/** `qvm vnc VM [--tunnel PORT]`: how to reach the VM's screen; with --tunnel, a loopback port to its socket. */
export async function vncCommand(
  vm: string,
  flags: { file: string; timeout: number; tunnel?: string },
  output: Output,
): Promise<number> {
  const context = await loadContext(flags.file);
  const spec = await runningVm(context, vm, flags.timeout);
  const display = spec.display;
  if (!display)
    throw new VmStateError(
      `${vm} has no \`display:\`: add display: vnc to it in ${spec.source} (a restart), or take a picture with qvm screenshot ${vm}`,
    );
  const socket = vmPaths(context.namespace, vm).vnc;
  if (display.kind === 'vnc-tcp') {
    if (flags.tunnel)
      throw new UsageError(`${vm} serves VNC on ${display.address}:${display.port}: no tunnel needed`);
    writeLine(
      output.out,
      `vnc://${display.address === '0.0.0.0' ? '127.0.0.1' : display.address}:${display.port}`,
    );
    return 0;
  }
  if (!flags.tunnel) {
    writeLine(output.out, socket);
    writeLine(
      output.err,
      output.color.dim(
        `a unix socket: viewers that open one take the path (vncviewer ${socket}); others: qvm vnc ${vm} --tunnel 5901, then 127.0.0.1:5901`,
      ),
    );
    return 0;
  }
  const port = Number(flags.tunnel);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new UsageError(`--tunnel takes a port from 1 to 65535, got ${JSON.stringify(flags.tunnel)}`);
  await tunnel(socket, port, (line) => writeLine(output.err, line));
  return 0;
}

/**
 * Listens on 127.0.0.1:PORT and joins each connection to the VNC socket, until SIGINT or SIGTERM. Only
 * loopback: the screen (and keyboard) of the VM is not offered to the network.
 */
function tunnel(socket: string, port: number, say: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const open = new Set<net.Socket>();
    const server = net.createServer((client) => {
      const vnc = net.connect(socket);
      open.add(client).add(vnc);
      client.pipe(vnc).pipe(client);
      const end = () => {
        client.destroy();
        vnc.destroy();
        open.delete(client);
        open.delete(vnc);
      };
      client.once('error', end).once('close', end);
      vnc.once('error', end).once('close', end);
    });
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        new UsageError(
          error.code === 'EADDRINUSE'
            ? `127.0.0.1:${port} is in use; pick another --tunnel port`
            : error.message,
        ),
      ),
    );
    server.listen(port, '127.0.0.1', () => {
      say(`VNC of the VM on 127.0.0.1:${port} (Ctrl-C ends the tunnel; the VM keeps running)`);
    });
    const stop = () => {
      for (const s of open) s.destroy();
      server.close(() => resolve());
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
