/**
 * `qvm logs VM [-f]`: the serial console (serial.log, after its rotated part) and QEMU's own messages
 * (qemu.previous.log, the run before, then qemu.log), one after the other with tail-style headers; -f keeps
 * printing what is appended until interrupted. Files are streamed in chunks, whatever their size, and a log
 * truncated by its cap is followed from its new start.
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { UsageError } from '../errors.js';
import { listNamespaceVms } from '../observe/observe.js';
import { stripTerminalCodes } from '../qemu/hmp.js';
import { capSerialLog } from '../runtime/logs.js';
import { vmPaths } from '../runtime/paths.js';
import { loadContext } from './context.js';
import type { Output } from './output.js';

const CHUNK_BYTES = 64 * 1024;

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
  capSerialLog(paths);
  const both = flags.serial === flags.qemu;
  const files = [
    ...(both || flags.serial ? [paths.serialLogRotated, paths.serialLog] : []),
    // QEMU truncates its log when it starts; the previous run's (why it crashed, say) was kept beside it.
    ...(both || flags.qemu ? [paths.previousQemuLog, paths.qemuLog] : []),
  ];
  const offsets = new Map<string, number>();
  // One decoder per file: a character split between two reads is written whole.
  const decoders = new Map(files.map((f) => [f, new StringDecoder('utf8')]));
  let last: string | undefined;
  const pump = () => {
    for (const file of files) {
      if (!existsSync(file)) continue;
      const size = statSync(file).size;
      let from = offsets.get(file) ?? 0;
      if (size < from) from = 0; // truncated (rotated, or QEMU restarted): follow from its new start
      if (size <= from) continue;
      if (files.length > 1 && last !== file) output.out.write(`${last ? '\n' : ''}==> ${file} <==\n`);
      last = file;
      offsets.set(file, copyRange(file, from, size, decoders.get(file)!, output));
    }
  };
  pump();
  if (!files.some((f) => existsSync(f)) && !flags.follow) {
    output.err.write(`${name} has no logs yet (it has not been started)\n`);
  }
  if (!flags.follow) return 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      capSerialLog(paths);
      pump();
    }, 200);
    const stop = () => {
      clearInterval(timer);
      resolve();
    };
    process.once('SIGINT', stop);
    signal?.addEventListener('abort', stop);
  });
  return 0;
}

/** Writes bytes [from, to) of a file in chunks, as plain lines; returns where it stopped. */
function copyRange(file: string, from: number, to: number, decoder: StringDecoder, output: Output): number {
  const fd = openSync(file, 'r');
  const buffer = Buffer.alloc(CHUNK_BYTES);
  let at = from;
  try {
    while (at < to) {
      const n = readSync(fd, buffer, 0, Math.min(CHUNK_BYTES, to - at), at);
      if (n <= 0) break;
      at += n;
      // The guest writes CRLF and terminal queries to its console: show plain lines.
      output.out.write(stripTerminalCodes(decoder.write(buffer.subarray(0, n)).replace(/\r\n/g, '\n')));
    }
  } finally {
    closeSync(fd);
  }
  return at;
}
