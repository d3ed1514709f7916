/**
 * The guest's clock after a resume. A snapshot holds the guest's clock as it was when the snapshot was taken,
 * so a guest resumed from a snapshot saved an hour ago is an hour behind (and TLS and package managers
 * complain). With SSH access qvm sets it to the host's time through `sudo date`; with the guest agent,
 * `guest-set-time` does it (guest/agent.ts).
 */
import type { SshAccess } from '../model/access.js';
import { childProcess } from '../runtime/builtins.js';
import { sshArgs } from './ssh.js';

const CLOCK_TIMEOUT_MS = 15_000;

/**
 * The remote side: sudo first (it can take a second to start under TCG), then say so, then read the time the
 * host sends at that moment. Sending the time with the command would set the guest behind by however long the
 * login took.
 */
const SET_CLOCK = ['sudo', '-n', 'sh', '-c', 'echo ready; read t; date -u -s "@$t" >/dev/null'];

/** Sets the guest's clock to the host's over SSH; false when it could not (no sudo, no answer in time). */
export function syncGuestClock(access: SshAccess): Promise<boolean> {
  return new Promise((resolve) => {
    const child = childProcess().spawn(
      'ssh',
      sshArgs(access, SET_CLOCK, { batch: true, connectTimeoutS: 5 }),
      {
        stdio: ['pipe', 'pipe', 'ignore'],
      },
    );
    let said = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      said += chunk;
      if (said === 'ready\n') child.stdin.end(`${(Date.now() / 1000).toFixed(3)}\n`);
    });
    child.stdin.on('error', () => {}); // the guest may close first; the exit status says how it went
    const timer = setTimeout(() => child.kill('SIGKILL'), CLOCK_TIMEOUT_MS);
    child.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code === 0 && said === 'ready\n');
    });
  });
}
