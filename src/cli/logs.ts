/**
 * `qvm logs VM [-f]`: the serial console (serial.log) and QEMU's own messages (qemu.log), one after the
 * other with tail-style headers; -f keeps printing what is appended until interrupted.
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { UsageError } from '../errors.js';
import { listNamespaceVms } from '../observe/observe.js';
import { stripTerminalCodes } from '../qemu/hmp.js';
import { vmPaths } from '../runtime/paths.js';
import { loadContext } from './context.js';
import type { Output } from './output.js';

export async function logsCommand(
  name: string,
  flags: { file: string; follow: boolean; serial: boolean; qemu: boolean },
  output: Output,
  signal?: AbortSignal,
): Promise<number> {
  const { manifest, namespace } = await loadContext(flags.file);
  if (!manifest.vms.some((v) => v.name === name) && !listNamespaceVms(namespace).includes(name)) {
    throw new UsageError(`no VM named "${name}" in ${manifest.file}`);
  }
  const paths = vmPaths(namespace, name);
  const both = flags.serial === flags.qemu;
  const files = [
    ...(both || flags.serial ? [paths.serialLog] : []),
    ...(both || flags.qemu ? [paths.qemuLog] : []),
  ];
  const offsets = new Map<string, number>();
  let last: string | undefined;
  const pump = () => {
    for (const file of files) {
      if (!existsSync(file)) continue;
      const size = statSync(file).size;
      const from = offsets.get(file) ?? 0;
      if (size <= from) continue;
      const fd = openSync(file, 'r');
      const buffer = Buffer.alloc(size - from);
      readSync(fd, buffer, 0, buffer.length, from);
      closeSync(fd);
      offsets.set(file, size);
      if (files.length > 1 && last !== file) output.out.write(`${last ? '\n' : ''}==> ${file} <==\n`);
      last = file;
      // The guest writes CRLF and terminal queries to its console: show plain lines.
      output.out.write(stripTerminalCodes(buffer.toString('utf8').replace(/\r\n/g, '\n')));
    }
  };
  pump();
  if (!files.some((f) => existsSync(f)) && !flags.follow) {
    output.err.write(`${name} has no logs yet (it has not been started)\n`);
  }
  if (!flags.follow) return 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(pump, 200);
    const stop = () => {
      clearInterval(timer);
      resolve();
    };
    process.once('SIGINT', stop);
    signal?.addEventListener('abort', stop);
  });
  return 0;
}
