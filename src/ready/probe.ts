/**
 * Readiness probes: is the guest serving through one of its forwards?
 *
 * QEMU quirk that shapes the tcp probe: user networking (slirp) accepts a connection on the host side at
 * once, before the guest has answered. While the guest boots, the connection just stays open (slirp keeps
 * resending the SYN); a guest that is up but not listening closes it at once. So an open connection proves
 * nothing by itself: the probe asks QEMU (`info usernet`) whether a connection through that forward reached
 * the ESTABLISHED state inside slirp, which only happens when the guest accepted it.
 */
import net from 'node:net';
import { NotReadyError } from '../errors.js';
import { withAgent } from '../guest/agent.js';
import { sshArgs } from '../guest/ssh.js';
import type { ReadySpec } from '../manifest/types.js';
import { formatDuration } from '../model/units.js';
import { parseUsernetRows } from '../qemu/parse/usernet.js';
import { childProcess } from '../runtime/builtins.js';

export interface ProbeResult {
  ready: boolean;
  /** What was tried and what happened, for progress and errors. */
  detail: string;
}

export interface ProbeContext {
  /** `info usernet` of the VM, for the tcp probe. */
  usernet: () => Promise<string>;
  signal?: AbortSignal;
  /** False once the VM's QEMU has exited: waiting on it any longer is pointless. */
  alive?: () => boolean;
  /** The VM's guest agent socket, for the agent probe. */
  agentSocket?: string;
}

const ATTEMPT_TIMEOUT_MS = 1000;
/** How long an accepted connection is watched for the guest closing it, before asking slirp. */
const SETTLE_MS = 150;
const RETRY_DELAY_MS = 200;

/** What a probe tries, in words. */
export function describeProbe(ready: ReadySpec): string {
  switch (ready.kind) {
    case 'tcp':
      return `tcp ${ready.host}:${ready.port}`;
    case 'http':
      return `GET http://${ready.host}:${ready.port}${ready.path} answering ${ready.status}`;
    case 'ssh':
      return ready.access ? `ssh ${ready.access.user}@${ready.access.host}:${ready.access.port} true` : 'ssh';
    case 'agent':
      return 'guest agent answering guest-ping';
  }
}

/** One attempt of a probe. */
export function probeOnce(ready: ReadySpec, context: ProbeContext): Promise<ProbeResult> {
  switch (ready.kind) {
    case 'http':
      return probeHttp(ready);
    case 'tcp':
      return probeTcp(ready, context);
    case 'ssh':
      return probeSsh(ready);
    case 'agent':
      return probeAgent(context);
  }
}

/**
 * How long one SSH login attempt may take: a guest still booting accepts the TCP connection and says nothing,
 * and a guest that is up may still be running cloud-init, which the attempt waits for.
 */
const SSH_ATTEMPT_TIMEOUT_MS = 30_000;

/**
 * What the login runs: wait for cloud-init to finish, when the guest has it (SSH is up before cloud-init has
 * run the user's packages and runcmd), and say how it ended. `true` for a guest without cloud-init.
 * cloud-init writes /run/cloud-init/result.json when its last stage ends; reading it takes milliseconds, where
 * `cloud-init status` starts Python (seconds under TCG), so a guest resumed from a warm snapshot (its /run
 * is in the saved RAM) is ready as soon as it answers. `cloud-init status --wait` covers the rest (still
 * running, or disabled and never writing the file).
 */
const SSH_READY_COMMAND = [
  'sh',
  '-c',
  [
    'r=/run/cloud-init/result.json',
    `if [ -f $r ]; then if grep -q '"errors": \\[\\]' $r; then echo 'status: done'; else echo 'status: error'; fi`,
    'elif command -v cloud-init >/dev/null 2>&1; then cloud-init status --wait >/dev/null 2>&1; cloud-init status',
    'fi',
    'true',
  ].join('; '),
];

/**
 * Ready when an SSH login as the VM's user, with qvm's key and its host key checked strictly, succeeds and
 * cloud-init (when the guest has it) has finished: that needs the network, sshd, the user and the keys
 * cloud-init puts in place, and everything the user data asked for. cloud-init ending in an error is ready
 * too (the VM is up and can be inspected), and the detail says so.
 */
function probeSsh(ready: Extract<ReadySpec, { kind: 'ssh' }>): Promise<ProbeResult> {
  const access = ready.access;
  if (!access) return Promise.resolve({ ready: false, detail: 'ssh: the VM has no ssh access prepared' });
  const target = `ssh ${access.user}@${access.host}:${access.port}`;
  return new Promise((resolve) => {
    const child = childProcess().spawn(
      'ssh',
      sshArgs(access, SSH_READY_COMMAND, { batch: true, connectTimeoutS: 5 }),
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    let stdout = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), SSH_ATTEMPT_TIMEOUT_MS);
    child.once('error', (error) => {
      clearTimeout(timer);
      resolve({ ready: false, detail: `${target}: ${error.message}` });
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      const said = stderr.trim().split('\n').at(-1) ?? '';
      const cloudInit = /status: (\w+)/.exec(stdout)?.[1];
      resolve(
        code === 0
          ? {
              ready: true,
              detail: `${target}: logged in${cloudInit ? `, cloud-init ${cloudInit === 'done' ? 'done' : `finished: ${cloudInit} (qvm ssh ${access.vm} -- cloud-init status --long)`}` : ''}`,
            }
          : { ready: false, detail: `${target}: ${signal ? 'no answer in time' : said || `exit ${code}`}` },
      );
    });
  });
}

/** Ready when the guest agent answers a sync and `guest-ping`. */
async function probeAgent(context: ProbeContext): Promise<ProbeResult> {
  if (!context.agentSocket) return { ready: false, detail: 'agent: the VM has no agent channel' };
  try {
    await withAgent(context.agentSocket, (agent) => agent.call('guest-ping', undefined, 2000), {
      syncTimeoutMs: 2000,
    });
    return { ready: true, detail: 'guest agent answered' };
  } catch (error) {
    return { ready: false, detail: `agent: ${(error as Error).message}` };
  }
}

/** Node's http is loaded by the first http probe: loading it costs every apply 3-5 ms otherwise. */
async function probeHttp(ready: Extract<ReadySpec, { kind: 'http' }>): Promise<ProbeResult> {
  const url = `http://${ready.host}:${ready.port}${ready.path}`;
  const http = await import('node:http');
  return new Promise((resolve) => {
    const request = http.get(url, { agent: false, timeout: ATTEMPT_TIMEOUT_MS }, (response) => {
      response.resume();
      const status = response.statusCode ?? 0;
      resolve({ ready: status === ready.status, detail: `GET ${url} answered ${status}` });
    });
    request.on('timeout', () => {
      request.destroy();
      resolve({ ready: false, detail: `GET ${url}: no answer within ${formatDuration(ATTEMPT_TIMEOUT_MS)}` });
    });
    request.on('error', (error: NodeJS.ErrnoException) => {
      const why =
        error.code === 'ECONNRESET' ? 'connection closed before an answer' : (error.code ?? error.message);
      resolve({ ready: false, detail: `GET ${url}: ${why}` });
    });
  });
}

function probeTcp(ready: Extract<ReadySpec, { kind: 'tcp' }>, context: ProbeContext): Promise<ProbeResult> {
  const target = `tcp ${ready.host}:${ready.port}`;
  return new Promise((resolve) => {
    const socket = net.connect({ host: ready.host, port: ready.port });
    let settled = false;
    const finish = (result: ProbeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(
      () =>
        finish({
          ready: false,
          detail: `${target}: no connection within ${formatDuration(ATTEMPT_TIMEOUT_MS)}`,
        }),
      ATTEMPT_TIMEOUT_MS,
    );
    socket.on('error', (error: NodeJS.ErrnoException) =>
      finish({ ready: false, detail: `${target}: ${error.code ?? error.message}` }),
    );
    socket.on('end', () =>
      finish({ ready: false, detail: `${target}: the guest closed the connection (nothing listening yet)` }),
    );
    socket.on('data', () => finish({ ready: true, detail: `${target}: the guest answered` }));
    socket.on('connect', () => {
      setTimeout(async () => {
        if (settled) return;
        try {
          const rows = parseUsernetRows(await context.usernet());
          const established = rows.some(
            (r) => r.proto === 'tcp' && r.state === 'ESTABLISHED' && r.hostPort === ready.port,
          );
          finish(
            established
              ? { ready: true, detail: `${target}: the guest accepted a connection` }
              : { ready: false, detail: `${target}: the guest has not accepted the connection yet` },
          );
        } catch (error) {
          finish({ ready: false, detail: `${target}: cannot ask QEMU: ${(error as Error).message}` });
        }
      }, SETTLE_MS);
    });
  });
}

/**
 * Probes until ready or `ready.timeoutMs` has passed. Throws NotReadyError naming what was tried and the last
 * answer. `onAttempt` sees every result (for progress).
 */
export async function waitReady(
  ready: ReadySpec,
  context: ProbeContext & { onAttempt?: (result: ProbeResult, elapsedMs: number) => void },
): Promise<{ elapsedMs: number; attempts: number; detail: string }> {
  const started = Date.now();
  let attempts = 0;
  let last: ProbeResult = { ready: false, detail: 'not probed yet' };
  while (Date.now() - started < ready.timeoutMs) {
    if (context.signal?.aborted) throw new NotReadyError(`stopped waiting for ${describeProbe(ready)}`);
    if (context.alive && !context.alive()) {
      throw new NotReadyError(
        `QEMU exited while waiting for ${describeProbe(ready)}; see \`qvm logs\` for why`,
      );
    }
    attempts++;
    last = await probeOnce(ready, context);
    context.onAttempt?.(last, Date.now() - started);
    if (last.ready) return { elapsedMs: Date.now() - started, attempts, detail: last.detail };
    await new Promise((r) => setTimeout(r, RETRY_DELAY_MS));
  }
  throw new NotReadyError(
    `not ready within ${formatDuration(ready.timeoutMs)} (${attempts} attempts at ${describeProbe(ready)}; last: ${last.detail}); the VM was left running so it can be inspected`,
  );
}
