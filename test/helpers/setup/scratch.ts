/**
 * Global setup of every tier: a safety net for a test that forgets its own roots. QVM_RUNTIME_DIR and
 * QVM_STATE_DIR point into a private scratch folder, so no test ever reads or writes the user's /run/qvm or
 * state folder. Needs nothing installed.
 */
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export default function setup(): void {
  const scratch = mkdtempSync(path.join(tmpdir(), 'qvm-test-'));
  chmodSync(scratch, 0o700);
  process.env.QVM_RUNTIME_DIR ??= path.join(scratch, 'run');
  process.env.QVM_STATE_DIR ??= path.join(scratch, 'state');
}
