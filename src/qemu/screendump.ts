/**
 * The VM's screen as PNG, through QMP `screendump`. QEMU writes the file itself (as the QEMU process's user),
 * so it writes into the VM's private runtime folder and qvm hands the bytes on.
 *
 * QEMU 7.1+ writes PNG when asked (`format: png`); an older QEMU rejects the argument and only writes PPM
 * (P6), which qvm converts to PNG (8-bit RGB, no filtering: a screen compresses well enough with zlib alone).
 */
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import { MonitorCommandError } from '../errors.js';
import { crypto } from '../runtime/builtins.js';
import type { QmpClient } from './qmp.js';

/** The screen as PNG bytes. `dir` is a private folder QEMU may write into (the VM's runtime folder). */
export async function screendumpPng(qmp: QmpClient, dir: string): Promise<Buffer> {
  const file = path.join(dir, `screen-${crypto().randomBytes(4).toString('hex')}`);
  try {
    try {
      await qmp.execute('screendump', { filename: `${file}.png`, format: 'png' });
      return readFileSync(`${file}.png`);
    } catch (error) {
      // QEMU before 7.1: "Parameter 'format' is unexpected". Anything else is the VM's own problem.
      if (!(error instanceof MonitorCommandError) || !/format/i.test(error.qemuMessage)) throw error;
    }
    await qmp.execute('screendump', { filename: `${file}.ppm` });
    return ppmToPng(readFileSync(`${file}.ppm`));
  } finally {
    rmSync(`${file}.png`, { force: true });
    rmSync(`${file}.ppm`, { force: true });
  }
}

/** A binary PPM (P6, maxval 255), as QEMU writes it, converted to PNG. */
export function ppmToPng(ppm: Buffer): Buffer {
  // Header: "P6", whitespace, width, whitespace, height, whitespace, maxval, one whitespace, then pixels.
  const header = /^P6\s+(\d+)\s+(\d+)\s+(\d+)\s/.exec(ppm.subarray(0, 64).toString('latin1'));
  if (!header) throw new Error('screendump: QEMU wrote something that is not a binary PPM');
  const [all, w, h, max] = header;
  const width = Number(w);
  const height = Number(h);
  if (Number(max) !== 255) throw new Error(`screendump: PPM with maxval ${max} is not supported`);
  const pixels = ppm.subarray(Buffer.byteLength(all, 'latin1'));
  if (pixels.length < width * height * 3) throw new Error('screendump: the PPM is cut short');
  // Each PNG row starts with its filter type (0, none).
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    pixels.copy(raw, y * (width * 3 + 1) + 1, y * width * 3, (y + 1) * width * 3);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: RGB
  return Buffer.concat([
    PNG_SIGNATURE,
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

export const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function chunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}
